/**
 * Ask for a block on the empty line where students most want one: the body of a
 * `for`, `def`, `if`… right after Enter, and the empty last line of a cell.
 *
 * Why JupyterLab shows nothing there by itself (@jupyterlab/completer 4.x,
 * `CompletionHandler._makeInlineRequest`): on typing, it never asks the providers
 * when the text before the cursor on its line is only whitespace ("auto-trigger on
 * the end of line, not on the beginning"). After `for nom in notes:` + Enter the new
 * line is `    `, so no request is made for it. The request that was seen is the
 * one for the `:` keystroke, debounced and sent anyway; its reply is then thrown
 * away, because the handler counts the skipped keystroke as newer and the cursor
 * has left the line the reply was for.
 *
 * The fix keeps JupyterLab in charge: when a change leaves the cursor on such a
 * line, we wait for the provider's debouncer delay and invoke the inline completer,
 * as Alt+\ would. The provider is told that this invoke is "typing" (no error
 * message in the editor). The server decides what to suggest, as for any request.
 */

import type { ICompletionProviderManager } from '@jupyterlab/completer';
import type { INotebookTracker } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { OnceDisposable } from './disposable';

type SourceSignal = ISignal<unknown, { sourceChange?: unknown }>;

/**
 * The Python lines that open an indented block: `for … :`, `def f():`, `else:`…
 * (a trailing comment allowed).
 */
const BLOCK_HEADER =
  /^\s*(?:async\s+)?(?:for|while|if|elif|else|def|class|with|try|except|finally|match|case)\b.*:\s*(?:#.*)?$/;

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

/**
 * Whether the cursor at `cursor` (a JavaScript string index into `text`) sits on an
 * empty line where a block should be suggested although JupyterLab asks for
 * nothing: the line holds only whitespace, and either the nearest non-blank line
 * above is a block header (`for nom in notes:`), or nothing but whitespace follows
 * in the cell (its empty last line, after some code).
 */
export function wantsBlockSuggestion(text: string, cursor: number): boolean {
  const lineStart = text.lastIndexOf('\n', cursor - 1) + 1;
  const nextNewline = text.indexOf('\n', cursor);
  const lineEnd = nextNewline < 0 ? text.length : nextNewline;
  const line = text.slice(lineStart, lineEnd);
  if (line.trim() !== '' || lineStart === 0) {
    // Text on the line: JupyterLab asks by itself. First line: nothing to continue.
    return false;
  }
  const above = text.slice(0, lineStart).split('\n');
  let previous = '';
  for (let i = above.length - 1; i >= 0 && !previous; i--) {
    previous = above[i].trim() ? above[i] : '';
  }
  if (!previous) {
    return false;
  }
  if (
    BLOCK_HEADER.test(previous) &&
    indentOf(line.slice(0, cursor - lineStart)) > indentOf(previous)
  ) {
    return true;
  }
  return text.slice(lineEnd).trim() === '';
}

/**
 * Watches the active notebook cell and invokes the inline completer where
 * `wantsBlockSuggestion` says so.
 */
export class BlockTrigger extends OnceDisposable {
  constructor(options: BlockTrigger.IOptions) {
    super();
    this._tracker = options.tracker;
    this._manager = options.manager;
    this._options = options;
    this._tracker.activeCellChanged.connect(this._watchActiveCell, this);
    this._watchActiveCell();
  }

  protected onDispose(): void {
    window.clearTimeout(this._timer);
    this._watched?.disconnect(this._onSourceChanged, this);
    Signal.disconnectReceiver(this);
  }

  private _watchActiveCell(): void {
    this._watched?.disconnect(this._onSourceChanged, this);
    const cell = this._tracker.activeCell;
    this._watched = cell ? (cell.model.sharedModel.changed as SourceSignal) : null;
    this._watched?.connect(this._onSourceChanged, this);
  }

  private _onSourceChanged(_sender: unknown, change: { sourceChange?: unknown }): void {
    if (!change.sourceChange) {
      return;
    }
    window.clearTimeout(this._timer);
    // After the debouncer delay, as for any typing: CodeMirror has moved the
    // cursor by then, and a fast typist has gone on typing.
    this._timer = window.setTimeout(() => this._maybeInvoke(), this._options.delayMs());
  }

  private _maybeInvoke(): void {
    const panel = this._tracker.currentWidget;
    const editor = this._tracker.activeCell?.editor;
    if (!panel || !editor || !editor.hasFocus() || !this._options.isEnabled()) {
      return;
    }
    // `isActive` is newer than JupyterLab 4.1 (which has `invoke` only): feature-
    // detect it, typed as optional so that the code compiles against 4.1 too.
    const inline = this._manager.inline as
      | (Omit<NonNullable<ICompletionProviderManager['inline']>, 'isActive'> & {
          isActive?: (widgetId: string) => boolean;
        })
      | undefined;
    if (!inline || (typeof inline.isActive === 'function' && inline.isActive(panel.id))) {
      // No inline completer (turned off in JupyterLab), or a suggestion is shown.
      return;
    }
    const { start, end } = editor.getSelection();
    if (start.line !== end.line || start.column !== end.column) {
      return;
    }
    const text = editor.model.sharedModel.getSource();
    // CodeMirror offsets are JavaScript string indices, as `wantsBlockSuggestion` expects.
    if (wantsBlockSuggestion(text, editor.getOffsetAt(end))) {
      this._options.beforeInvoke();
      inline.invoke(panel.id);
    }
  }

  private _tracker: INotebookTracker;
  private _manager: ICompletionProviderManager;
  private _options: BlockTrigger.IOptions;
  private _watched: SourceSignal | null = null;
  private _timer = 0;
}

export namespace BlockTrigger {
  export interface IOptions {
    tracker: INotebookTracker;
    manager: ICompletionProviderManager;
    /** Whether completions are on for this user (setting, course policy). */
    isEnabled: () => boolean;
    /** The provider's debouncer delay, in ms. */
    delayMs: () => number;
    /** Called just before invoking (the provider then treats the request as typing). */
    beforeInvoke: () => void;
  }
}
