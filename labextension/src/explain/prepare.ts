/**
 * Explanations prepared ahead (issue 14, item 5): when the student shows they are
 * about to ask, the server evaluates the explanation's prompt while they read, and
 * its first words come at once when they do ask. Two signals, cheap and strong:
 *
 * - the explanation panel is open and the student settles in a code cell (going
 *   through a notebook with explanations): that cell's explanation, or its error's
 *   if it shows one;
 * - a cell's run ends in an error: that error's explanation.
 *
 * Each preparation costs the server one explanation's prompt (~100-250 tokens past
 * the notebook it already holds), counted apart in the usage; it runs only while
 * the engine is idle, after the cell's warm-up, and any request someone waits for
 * stops it. Typing in the cell pushes it back; a run asks again (the kernel's names
 * are part of the request). The request is built exactly as the click will build it
 * (`buildExplainRequest`): the same body is the same prompt. Off with the
 * `prepareExplanations` setting, and with completions (nothing is sent then).
 */

import type { Cell } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { NotebookActions } from '@jupyterlab/notebook';
import { Debouncer } from '@lumino/polling';
import { Signal } from '@lumino/signaling';
import type { Widget } from '@lumino/widgets';

import { CopilotAPIError, prepareExplanation } from '../api';
import { OnceDisposable } from '../disposable';
import type { CopilotState } from '../state';
import type { Explainer } from './explainer';
import { buildExplainRequest, ExplainKind, hasError } from './request';

/**
 * After the cell's warm-up is asked for (`WARM_DELAY_MS`, 1.5 s): the completions'
 * context first, the explanation written after it.
 */
export const PREPARE_DELAY_MS = 2_500;

export class ExplanationPreparer extends OnceDisposable {
  constructor(options: ExplanationPreparer.IOptions) {
    super();
    this._tracker = options.tracker;
    this._state = options.state;
    this._explainer = options.explainer;
    this._panel = options.panel;
    this._debouncer = new Debouncer(() => this._prepare(), PREPARE_DELAY_MS);
    this._tracker.activeCellChanged.connect(this._onActiveCell, this);
    NotebookActions.executed.connect(this._onExecuted, this);
  }

  protected onDispose(): void {
    this._debouncer.dispose();
    this._watchEdits(null);
    Signal.disconnectReceiver(this);
  }

  /**
   * The student settled in a cell, or it ran (the kernel's names then change, and
   * the request with them): its explanation, if the panel is open.
   */
  private _onActiveCell(): void {
    const notebook = this._tracker.currentWidget;
    const cell = notebook?.content.activeCell ?? null;
    this._watchEdits(cell);
    if (notebook && cell && this._panel.isVisible) {
      this._schedule({ notebook, cell, kind: hasError(cell) ? 'error' : 'cell', needsPanel: true });
    }
  }

  private _onExecuted(_: unknown, args: { notebook: unknown; cell: Cell; success: boolean }): void {
    const notebook = this._tracker.find(panel => panel.content === args.notebook);
    if (notebook && !args.success && hasError(args.cell)) {
      this._schedule({ notebook, cell: args.cell, kind: 'error', needsPanel: false });
    } else {
      this._onActiveCell();
    }
  }

  /**
   * Typing in the cell is not settling in it: each edit pushes the preparation back
   * (a half-written cell is not worth preparing, and it would hold up completions).
   */
  private _watchEdits(cell: Cell | null): void {
    if (this._watched === cell) {
      return;
    }
    if (this._watched && !this._watched.isDisposed) {
      this._watched.model.contentChanged.disconnect(this._onEdit, this);
    }
    this._watched = cell;
    cell?.model.contentChanged.connect(this._onEdit, this);
  }

  private _onEdit(): void {
    if (this._next?.cell === this._watched) {
      void this._debouncer.invoke();
    }
  }

  private _schedule(intent: ExplanationPreparer.IIntent): void {
    if (this._unsupported || !this._wanted(intent)) {
      return;
    }
    // The newest intent wins: the student moved on, or the failed cell is the one.
    this._next = intent;
    void this._debouncer.invoke();
  }

  /**
   * Whether to prepare it at all: the setting, the master switch (off: nothing is
   * sent), the panel where it is the signal, and the server's policy (its status
   * already bounds an error's explanation by "explain this cell").
   */
  private _wanted(intent: ExplanationPreparer.IIntent): boolean {
    const settings = this._state.settings;
    return (
      settings.prepareExplanations &&
      settings.enabled &&
      !intent.cell.isDisposed &&
      (!intent.needsPanel || this._panel.isVisible) &&
      this._explainer.isAllowed(intent.kind)
    );
  }

  private async _prepare(): Promise<void> {
    const next = this._next;
    this._next = null;
    if (
      !next ||
      !this._wanted(next) ||
      this._state.engine?.state !== 'ready' ||
      // A completion is running: the student is typing, not about to ask.
      this._state.pendingRequests > 0
    ) {
      return;
    }
    const built = buildExplainRequest(
      next.kind,
      next.notebook,
      next.cell,
      this._explainer.language
    );
    if ('problem' in built) {
      return;
    }
    // No memory of what was prepared: the server may have dropped it (busy, or
    // stopped by a request), and preparing again what its cache still holds costs
    // it one token.
    try {
      await prepareExplanation(built.request);
    } catch (error) {
      if (error instanceof CopilotAPIError && [404, 405].includes(error.status)) {
        this._unsupported = true; // an older server
      }
    }
  }

  private _tracker: INotebookTracker;
  private _state: CopilotState;
  private _explainer: Explainer;
  private _panel: Widget;
  private _debouncer: Debouncer;
  private _next: ExplanationPreparer.IIntent | null = null;
  private _watched: Cell | null = null;
  private _unsupported = false;
}

export namespace ExplanationPreparer {
  export interface IOptions {
    tracker: INotebookTracker;
    state: CopilotState;
    explainer: Explainer;
    /** The explanation panel: while it is open, settling in a cell is intent. */
    panel: Widget;
  }

  /** What the student seems about to ask for. */
  export interface IIntent {
    notebook: NotebookPanel;
    cell: Cell;
    kind: ExplainKind;
    /** Settling in a cell is intent only while the panel is open; a failure always. */
    needsPanel: boolean;
  }
}
