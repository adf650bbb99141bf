/**
 * Pre-warming: when the student opens a notebook, moves to another cell or runs
 * one, send the cells above and the active cell around its cursor to
 * `POST /copilot/warm`, so the engine evaluates that part of the prompt while the
 * student is still reading. The next completion then only pays for the line being
 * typed (~0.3 s instead of ~8 s for a cold prompt on two CPU cores); the server
 * decides what of the cell to evaluate (up to the cursor's line).
 *
 * When the student settles in a cell's editor and the server says it pays (a CPU
 * engine: `features.warm_while_typing`), the suggestion at the cursor is asked ahead
 * instead of the warm-up (`ISuggestionsAhead.askOnEntry`, the `askAhead` setting):
 * the first keystroke, in a new cell after a run or on the line after the one the
 * cursor ends, is served from it when it is what the suggestion starts with.
 *
 * And while the student types, when the server says it pays, at most every
 * `TYPING_WARM_MS`: the suggestion at the cursor asked ahead (`ISuggestionsAhead`,
 * the `askAhead` setting), which the next pause is served from when the student
 * typed what it starts with; or else the same warm-up with `through_cursor`, so
 * that the line is evaluated up to the word being typed and the completion asked at
 * the next pause pays for that word alone.
 */

import type { ICellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { Debouncer, Throttler } from '@lumino/polling';
import { Signal } from '@lumino/signaling';

import { OnceDisposable } from './disposable';
import { CopilotAPIError, warm } from './api';
import { activeCellAroundCursor, cellsAbove, notebookLanguage } from './context';
import { kernelNamespace } from './kernel/namespace';
import type { CopilotState } from './state';
import type { ISuggestionsAhead } from './tokens';

/**
 * Wait for the student to settle in a cell before warming.
 */
export const WARM_DELAY_MS = 1_500;

/**
 * While typing: at most one warm-up this often (the newest text when it fires).
 */
export const TYPING_WARM_MS = 600;

export class NotebookWarmer extends OnceDisposable {
  constructor(options: NotebookWarmer.IOptions) {
    super();
    this._tracker = options.tracker;
    this._state = options.state;
    this._ahead = options.ahead ?? null;
    this._debouncer = new Debouncer(() => this._settled(), WARM_DELAY_MS);
    this._typing = new Throttler(() => this._whileTyping(), {
      limit: TYPING_WARM_MS,
      edge: 'trailing'
    });
    this._tracker.currentChanged.connect(this._schedule, this);
    this._tracker.activeCellChanged.connect(this._schedule, this);
    this._tracker.currentChanged.connect(this._followTyping, this);
    this._tracker.activeCellChanged.connect(this._followTyping, this);
    NotebookActions.executed.connect(this._schedule, this);
    this._followTyping();
  }

  protected onDispose(): void {
    this._debouncer.dispose();
    this._typing.dispose();
    Signal.disconnectReceiver(this);
  }

  /** Listen to the active cell's source (and only its: not its outputs). */
  private _followTyping(): void {
    this._typedSource?.changed.disconnect(this._onTyped, this);
    this._typedSource = this._tracker.activeCell?.model.sharedModel ?? null;
    this._typedSource?.changed.connect(this._onTyped, this);
  }

  private _onTyped(_: unknown, change: { sourceChange?: unknown }): void {
    if (change.sourceChange && !this._unsupported && this._state.warmWhileTyping) {
      void this._typing.invoke();
    }
  }

  /**
   * The student is typing: a suggestion asked ahead, or else the line's warm-up
   * (both are the `prewarm` setting's work "while you type").
   */
  private _whileTyping(): Promise<void> {
    if (!this._state.settings.prewarm) {
      return Promise.resolve();
    }
    const panel = this._tracker.currentWidget;
    const editor = this._tracker.activeCell?.editor;
    if (panel && editor && this._ahead?.askWhileTyping(panel, editor)) {
      return Promise.resolve(); // it evaluates the line too
    }
    return this._warm(true);
  }

  /**
   * The student settled in a cell: in its editor, the suggestion at the cursor asked
   * ahead (it evaluates the cell too); or else the cell's warm-up.
   */
  private _settled(): Promise<void> {
    if (this._state.settings.prewarm) {
      const panel = this._tracker.currentWidget;
      const editor = this._tracker.activeCell?.editor;
      if (panel && editor && this._ahead?.askOnEntry(panel, editor)) {
        // It overwrites what the engine holds: the next cell's warm-up is not skipped.
        this._lastWarmed.delete(panel.context.path);
        return Promise.resolve();
      }
    }
    return this._warm(false);
  }

  private _schedule(): void {
    if (!this._unsupported) {
      void this._debouncer.invoke();
    }
  }

  private async _warm(throughCursor: boolean): Promise<void> {
    const panel = this._tracker.currentWidget;
    const state = this._state;
    if (
      !panel ||
      !state.enabled ||
      !state.settings.prewarm ||
      state.engine?.state !== 'ready' ||
      // A completion is running: it is already filling the cache.
      state.pendingRequests > 0
    ) {
      return;
    }
    const cells = cellsAbove(panel, panel.content.activeCellIndex);
    const cell = activeCellAroundCursor(panel);
    if (cells.length === 0 && !cell.prefix.trim()) {
      return;
    }
    if (throughCursor && !cell.prefix.slice(cell.prefix.lastIndexOf('\n') + 1).trim()) {
      return; // nothing typed on the cursor's line (or a markdown cell): the cell's warm-up
    }
    const path = panel.context.path;
    const names = kernelNamespace(panel);
    const key = JSON.stringify([cells, names, cell, throughCursor]);
    if (this._lastWarmed.get(path) === key) {
      return;
    }
    this._lastWarmed.set(path, key);
    try {
      await warm({
        path,
        language: notebookLanguage(panel),
        context_cells: cells,
        kernel_namespace: names,
        prefix: cell.prefix,
        suffix: cell.suffix,
        ...(throughCursor ? { through_cursor: true } : {})
      });
    } catch (error) {
      if (error instanceof CopilotAPIError && [403, 404, 405].includes(error.status)) {
        // An older server, or a policy without warming: stop asking.
        this._unsupported = true;
      }
      this._lastWarmed.delete(path);
    }
  }

  private _tracker: INotebookTracker;
  private _state: CopilotState;
  private _ahead: ISuggestionsAhead | null;
  private _debouncer: Debouncer;
  private _typing: Throttler;
  private _typedSource: ICellModel['sharedModel'] | null = null;
  private _lastWarmed = new Map<string, string>();
  private _unsupported = false;
}

export namespace NotebookWarmer {
  export interface IOptions {
    tracker: INotebookTracker;
    state: CopilotState;
    /** Asks for the suggestion at the cursor while the student types (the provider). */
    ahead?: ISuggestionsAhead | null;
  }
}
