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
 * stops it. The request is built exactly as the click will build it
 * (`buildExplainRequest`): the same body is the same prompt. Off with the
 * `prepareExplanations` setting.
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
    Signal.disconnectReceiver(this);
  }

  private _onActiveCell(): void {
    const notebook = this._tracker.currentWidget;
    const cell = notebook?.content.activeCell;
    if (notebook && cell && this._panel.isVisible) {
      this._schedule(notebook, cell, hasError(cell) ? 'error' : 'cell');
    }
  }

  private _onExecuted(_: unknown, args: { notebook: unknown; cell: Cell; success: boolean }): void {
    const notebook = this._tracker.find(panel => panel.content === args.notebook);
    if (notebook && !args.success && hasError(args.cell)) {
      this._schedule(notebook, args.cell, 'error');
    }
  }

  private _schedule(notebook: NotebookPanel, cell: Cell, kind: ExplainKind): void {
    if (this._unsupported || !this._state.settings.prepareExplanations) {
      return;
    }
    // The newest intent wins: the student moved on, or the failed cell is the one.
    this._next = { notebook, cell, kind };
    void this._debouncer.invoke();
  }

  private async _prepare(): Promise<void> {
    const next = this._next;
    this._next = null;
    if (
      !next ||
      next.cell.isDisposed ||
      this._state.engine?.state !== 'ready' ||
      !this._explainer.isAllowed(next.kind) ||
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
    // The same explanation (same cell, cells above, names, language) once: its
    // prompt is still in the server's cache unless something else came since, and
    // a second bet on it would cost as much as the first.
    const { request_id: _id, editor_id: _editor, ...content } = built.request;
    const key = JSON.stringify(content);
    if (key === this._lastPrepared) {
      return;
    }
    this._lastPrepared = key;
    try {
      await prepareExplanation(built.request);
    } catch (error) {
      if (error instanceof CopilotAPIError && [404, 405].includes(error.status)) {
        this._unsupported = true; // an older server
      }
      this._lastPrepared = '';
    }
  }

  private _tracker: INotebookTracker;
  private _state: CopilotState;
  private _explainer: Explainer;
  private _panel: Widget;
  private _debouncer: Debouncer;
  private _next: { notebook: NotebookPanel; cell: Cell; kind: ExplainKind } | null = null;
  private _lastPrepared = '';
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
}
