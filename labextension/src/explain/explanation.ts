/**
 * One explanation streaming from `POST /copilot/explain`: the markdown so far,
 * where it stands, and Stop.
 */

import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import {
  CopilotAPIError,
  IExplainRequest,
  ISource,
  isAbortError,
  isCancellation,
  IStreamChunk,
  ITiming,
  streamAPI
} from '../api';
import type { FeatureMode } from '../state';
import type { ExplainKind } from './request';

/**
 * - `waiting`: sent, no words yet (the prompt is being read: seconds on a CPU);
 * - `streaming`: words are coming;
 * - `done`, `stopped` (by the student), `failed`: over.
 */
export type ExplanationStatus = 'waiting' | 'streaming' | 'done' | 'stopped' | 'failed';

/**
 * What is being explained, for the panel's heading.
 */
export interface IExplanationSubject {
  kind: ExplainKind;
  /** The policy's mode when it was asked: 'hint' labels the answer as a hint. */
  mode: Exclude<FeatureMode, 'off'>;
  /** 1-based, as a student counts cells. */
  cellNumber: number;
  path: string;
  /** For an error: `KeyError`, `'x'`. */
  ename?: string;
  evalue?: string;
  /** For a question: what the student asked. */
  question?: string;
}

/**
 * Why an explanation failed: the HTTP status (null for a network failure or an
 * error reported inside the stream) and the server's message.
 */
export interface IExplanationFailure {
  status: number | null;
  message: string;
}

export class Explanation implements IDisposable {
  constructor(
    readonly request: IExplainRequest,
    readonly subject: IExplanationSubject
  ) {}

  /** Emitted on every new chunk and status change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The whole markdown so far (every chunk carries all of it). */
  get text(): string {
    return this._text;
  }

  /** The model's id, as the stream reports it (null until the first chunk). */
  get model(): string | null {
    return this._model;
  }

  get status(): ExplanationStatus {
    return this._status;
  }

  get isOver(): boolean {
    return this._status === 'done' || this._status === 'stopped' || this._status === 'failed';
  }

  get failure(): IExplanationFailure | null {
    return this._failure;
  }

  get timing(): ITiming | null {
    return this._timing;
  }

  /** The course passages the answer relies on (empty if none was used). */
  get sources(): readonly ISource[] {
    return this._sources;
  }

  /** The server's signature of the final text (to send it back as history). */
  get signature(): string | null {
    return this._signature;
  }

  /** Older turns the server's history budget left out of this answer's prompt. */
  get historyDropped(): number {
    return this._historyDropped;
  }

  /**
   * Send the request and follow the stream to its end. Never rejects: a failure
   * ends in the `failed` status.
   */
  async start(): Promise<void> {
    if (this._started) {
      return;
    }
    this._started = true;
    try {
      const last = await streamAPI(
        'explain',
        this.request,
        chunk => this._onChunk(chunk),
        this._controller.signal
      );
      if (this.isOver) {
        return;
      }
      if (last?.error && isCancellation(last)) {
        // Replaced on the server (same notebook, same tab): not a failure.
        this._setStatus('stopped');
      } else if (last?.error) {
        this._fail(null, last.error);
      } else {
        this._setStatus('done');
      }
    } catch (error) {
      if (this.isOver || isAbortError(error)) {
        if (!this.isOver) {
          this._setStatus('stopped');
        }
        return;
      }
      if (error instanceof CopilotAPIError) {
        this._fail(error.status, error.message);
      } else {
        this._fail(null, error instanceof Error ? error.message : String(error));
      }
    }
  }

  /**
   * Stop generating. Aborting the fetch closes the connection, which the server
   * takes as "cancel": the engine is free for the next student at once.
   */
  stop(): void {
    if (this.isOver) {
      return;
    }
    this._setStatus('stopped');
    this._controller.abort();
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this.stop();
    this._isDisposed = true;
    Signal.clearData(this);
  }

  private _onChunk(chunk: IStreamChunk): void {
    if (this.isOver) {
      return;
    }
    this._model = chunk.model ?? this._model;
    this._timing = chunk.timing ?? this._timing;
    this._sources = chunk.sources ?? this._sources;
    this._signature = chunk.signature ?? this._signature;
    this._historyDropped = chunk.history_dropped ?? this._historyDropped;
    this._text = chunk.text;
    if (this._status === 'waiting' && chunk.text) {
      this._status = 'streaming';
    }
    // The final chunk's status is decided in start(), from the whole stream.
    this._changed.emit();
  }

  private _fail(status: number | null, message: string): void {
    this._failure = { status, message };
    this._setStatus('failed');
  }

  private _setStatus(status: ExplanationStatus): void {
    if (this._status !== status) {
      this._status = status;
      this._changed.emit();
    }
  }

  private _controller = new AbortController();
  private _text = '';
  private _model: string | null = null;
  private _timing: ITiming | null = null;
  private _sources: readonly ISource[] = [];
  private _signature: string | null = null;
  private _historyDropped = 0;
  private _status: ExplanationStatus = 'waiting';
  private _failure: IExplanationFailure | null = null;
  private _started = false;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}
