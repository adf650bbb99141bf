/**
 * The conversation of the explain panel: the turns a follow-up sends back.
 *
 * The server is the judge of what a turn may do (it keeps answers only with their
 * signature and cuts the history to its token budget); here the turns are only kept
 * within the request's limits (schema.py), oldest dropped first.
 */

import type { IHistoryTurn } from '../api';

/** schema.py: MAX_HISTORY_TURNS, MAX_TURN_CHARS. */
export const MAX_HISTORY_TURNS = 24;
export const MAX_TURN_CHARS = 8_000;

export class Conversation {
  /** The turns so far, oldest first. */
  get turns(): readonly IHistoryTurn[] {
    return this._turns;
  }

  /** Turns dropped here (request limits) or by the server (its history budget). */
  get dropped(): number {
    return this._dropped;
  }

  /** Start over (a new explanation of a cell or an error). */
  clear(): void {
    this._turns = [];
    this._dropped = 0;
  }

  /**
   * Add an exchange: what the student asked and the signed answer. An answer
   * without a signature (stopped, failed) is kept out: the server would drop it.
   */
  add(question: string, answer: string, signature: string | null | undefined): void {
    if (!answer.trim() || !signature) {
      return;
    }
    this._turns.push(
      { role: 'user', content: question.slice(0, MAX_TURN_CHARS) },
      // Never cut an answer: its signature covers the whole text.
      ...(answer.length <= MAX_TURN_CHARS
        ? [{ role: 'assistant' as const, content: answer, signature }]
        : [])
    );
    while (this._turns.length > MAX_HISTORY_TURNS) {
      this._turns.shift();
      this._dropped++;
    }
  }

  /** The server left out `count` older turns of the last request. */
  noteServerDropped(count: number | null | undefined): void {
    this._serverDropped = count ?? 0;
  }

  /** Older turns the model did not see in the last answer. */
  get leftOut(): number {
    return this._dropped + this._serverDropped;
  }

  private _turns: IHistoryTurn[] = [];
  private _dropped = 0;
  private _serverDropped = 0;
}
