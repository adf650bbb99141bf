/**
 * The inline (ghost-text) completion provider: asks the Jupyter server's copilot
 * for a completion of the code around the cursor and streams it into the editor.
 */

import {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider,
  InlineCompletionTriggerKind
} from '@jupyterlab/completer';
import type { CodeEditor } from '@jupyterlab/codeeditor';
import { Text } from '@jupyterlab/coreutils';
import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import type { LabIcon } from '@jupyterlab/ui-components';
import { PromiseDelegate } from '@lumino/coreutils';
import type { Widget } from '@lumino/widgets';

import {
  CopilotAPIError,
  ICompleteRequest,
  isAbortError,
  isCancellation,
  IStreamChunk,
  requestAPI,
  streamAPI
} from './api';
import { buildCompletionRequest, EditorRequest } from './context';
import { copilotIcon } from './icons';
import type { CopilotState } from './state';
import { ISuggestionsAhead, TRANSLATION_DOMAIN } from './tokens';

/**
 * Defaults of the provider's settings in Settings → Inline Completer.
 *
 * - debouncerDelay 250 ms: on a CPU model each request costs, so wait for a pause
 *   in typing (JupyterLab's own providers use 0).
 * - timeout 20 s: how long to wait for the FIRST words of a suggestion. A cold
 *   prompt takes ~8 s on two cores; a warm one a third of a second.
 * - autoFillInMiddle: closing brackets are inserted automatically, so the cursor
 *   is "in the middle of a line" right after `print(`: suggest there too.
 */
export const PROVIDER_DEFAULTS = {
  enabled: true,
  debouncerDelay: 250,
  timeout: 20_000,
  autoFillInMiddle: true
};

let requestCounter = 0;

/**
 * A suggestion that says why it failed. `error` is a field of inline completion items
 * newer than JupyterLab 4.1: 4.1 (the oldest we support) ignores it and shows the
 * (empty) item only, so the type is widened here for both to compile.
 */
function withError(item: IInlineCompletionItem, message: string): IInlineCompletionItem {
  return { ...item, error: { message } } as IInlineCompletionItem;
}

/** How soon after `expectAutomaticInvoke` the invoked request must come to count as typing. */
const AUTOMATIC_INVOKE_WINDOW_MS = 1_000;

/**
 * What may be inserted of a suggestion that is still streaming: its complete lines
 * (up to the last newline, which is not included). A cut last line (`print(f`) would
 * be broken code once accepted. Empty while not even the first line is complete.
 */
export function completeLines(text: string): string {
  const newline = text.lastIndexOf('\n');
  return newline < 0 ? '' : text.slice(0, newline).replace(/\s+$/, '');
}

export class CopilotInlineProvider implements IInlineCompletionProvider, ISuggestionsAhead {
  readonly identifier = '@jupyter-copilot:inline';

  constructor(options: CopilotInlineProvider.IOptions) {
    this._state = options.state;
    this._trans = (options.translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
  }

  get name(): string {
    return this._trans.__('Copilot (local model)');
  }

  get icon(): LabIcon.ILabIcon {
    return copilotIcon;
  }

  /**
   * Settings shown under this provider in Settings → Inline Completer. JupyterLab
   * adds (and applies) `enabled`, `debouncerDelay`, `timeout` and
   * `autoFillInMiddle`; we only choose their defaults. What the suggestion looks
   * like (mode, lines, markdown cells) is in the Copilot settings.
   */
  get schema(): ISettingRegistry.IProperty {
    return {
      properties: {},
      default: { ...PROVIDER_DEFAULTS }
    };
  }

  configure(settings: { [property: string]: unknown }): void {
    const timeout = Number(settings.timeout);
    if (Number.isFinite(timeout) && timeout > 0) {
      this._timeoutMs = timeout;
    }
    const delay = Number(settings.debouncerDelay);
    if (Number.isFinite(delay) && delay >= 0) {
      this._debouncerDelay = delay;
    }
  }

  /** The debouncer delay JupyterLab applies to this provider (ms). */
  get debouncerDelay(): number {
    return this._debouncerDelay;
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    const settings = this._state.settings;
    if (!settings.enabled || !this._state.completionAllowed) {
      // Turned off by the user (or by the course): nothing leaves the browser.
      return { items: [] };
    }
    const invoked =
      context.triggerKind === InlineCompletionTriggerKind.Invoke &&
      Date.now() > this._automaticInvokeUntil;
    this._automaticInvokeUntil = 0;
    if (!invoked && Date.now() < this._pausedUntil) {
      // The server said "busy" or "limit reached, retry after N s": asking again at
      // every keystroke would only add to the overload (a campus engine shared by a
      // class). Alt+\ still asks.
      return { items: [] };
    }
    const editorRequest = buildCompletionRequest(context.widget, request.text, request.offset, {
      markdownCells: settings.markdownCells,
      invoked
    });
    if (!editorRequest) {
      return { items: [] };
    }
    this._covered = {
      editorId: editorRequest.editor_id ?? '',
      prefix: request.text.slice(0, Text.charIndexToJsIndex(request.offset, request.text))
    };
    if (this._ahead && this._ahead.editorId !== this._covered.editorId) {
      // Asked ahead for a cell the student left (on entry, or while typing there):
      // this keystroke must not wait behind it on the engine.
      this._ahead.controller.abort();
      this._ahead = null;
    }
    const body = this._body(editorRequest);

    // Only the newest keystroke matters: stop the previous suggestion's stream
    // (wherever it was) so the engine works on one request at a time.
    this._current?.abort();
    const completion = new StreamingCompletion(body);
    this._current = completion;
    const release = this._state.beginRequest();
    completion.finished.then(release, release);
    completion.finished.catch(error => this._onError(error, invoked));

    // Wait for the first complete line before answering: answering at once with an
    // empty suggestion would replace the one on screen with nothing at every
    // keystroke, and a cut line is what Tab would insert.
    const firstLine = await completion.firstText(this._timeoutMs);
    if (!firstLine) {
      completion.abort();
      return { items: this._errorItems(completion, invoked) };
    }
    this._state.clearError();
    if (completion.done) {
      return { items: [{ insertText: completion.acceptable }] };
    }
    const token = `${body.request_id}`;
    this._streams.set(token, completion);
    return { items: [{ insertText: completion.acceptable, isIncomplete: true, token }] };
  }

  /**
   * A suggestion was just accepted: if it ended its line, ask for the next line now,
   * before the student presses Enter and starts it (issue 14, item 4). The server
   * remembers the answer for this editor; the request that comes after Enter and the
   * first characters follows it (or drops it as soon as it disagrees with what was
   * typed) and is answered without asking the model again. Nothing is shown here.
   */
  askAhead(widget: Widget, editor: CodeEditor.IEditor): void {
    if (!this._mayAskAhead()) {
      return;
    }
    const text = editor.model.sharedModel.getSource();
    const cursor = editor.getOffsetAt(editor.getCursorPosition());
    const lineEnd = text.indexOf('\n', cursor);
    if (text.slice(cursor, lineEnd < 0 ? text.length : lineEnd) !== '') {
      // Accepted in the middle of a line: the next line is not what comes next.
      return;
    }
    // The cell as it will be after Enter, the cursor at the start of the new line
    // (the editor's indentation is typed through: the server compares texts).
    const next = this._editorRequest(
      widget,
      text.slice(0, cursor) + '\n' + text.slice(cursor),
      cursor + 1
    );
    if (next) {
      // The accepted text is an edit too, not the student typing: askWhileTyping
      // asks nothing for it (this request covers it).
      this._sendAhead(next, text.slice(0, cursor));
    }
  }

  /**
   * The student is typing on a line (warm.ts calls this at most every
   * `TYPING_WARM_MS`): ask now for the suggestion at the cursor, as the next pause
   * would, when the server says such work pays (a model on this computer). Its answer
   * is remembered like the one asked after an accept: the pause's request is served
   * from it if what was typed since is what it starts with, and otherwise finds the
   * line evaluated. Whether the line is taken care of (asked now, or by a request
   * already made); if not, warm.ts warms it instead.
   */
  askWhileTyping(widget: Widget, editor: CodeEditor.IEditor): boolean {
    return this._askAtCursor(widget, editor, true);
  }

  /**
   * The student settled in a cell, in its editor (warm.ts calls this instead of the
   * cell's warm-up, `WARM_DELAY_MS` after they stop moving): ask now for the
   * suggestion where the cursor rests, when the server says such work pays. The
   * keystroke that follows is served from it when it is what the suggestion starts
   * with (a new cell after a run, the line after the one the cursor ends); otherwise
   * it finds the cell evaluated, as after the warm-up this replaces.
   */
  askOnEntry(widget: Widget, editor: CodeEditor.IEditor): boolean {
    return this._askAtCursor(widget, editor, false);
  }

  /**
   * `askWhileTyping` and `askOnEntry`: whether the suggestion at the cursor is taken
   * care of; `typing`: only where something is typed on the cursor's line (at a line
   * start the cell's warm-up, or its suggestion asked on entry, covers it).
   */
  private _askAtCursor(widget: Widget, editor: CodeEditor.IEditor, typing: boolean): boolean {
    if (
      !this._mayAskAhead() ||
      !this._state.warmWhileTyping ||
      // A request in flight is already remembered for the next keystrokes.
      this._state.pendingRequests > 0 ||
      // Not the student here (a collaborator, a program, a cell selected by keys).
      !editor.hasFocus()
    ) {
      return false;
    }
    const text = editor.model.sharedModel.getSource();
    const cursor = editor.getOffsetAt(editor.getCursorPosition());
    if (typing && !text.slice(text.lastIndexOf('\n', cursor - 1) + 1, cursor).trim()) {
      return false; // nothing typed on the cursor's line: the cell's warm-up covers it
    }
    // On entry, an empty cell too (a new one after a run): its first line is asked.
    const request = this._editorRequest(widget, text, cursor, !typing);
    if (!request) {
      return false;
    }
    const editorId = request.editor_id ?? '';
    const covered = this._covered;
    if (typing && covered?.editorId === editorId && covered.prefix === text.slice(0, cursor)) {
      return true; // nothing typed since the last suggestion or accept: nothing to ask
    }
    if (this._ahead?.editorId === editorId) {
      // One is being written here: the pause follows it while the student types what
      // it says, and drops it otherwise (a new one each tick would start it over).
      return true;
    }
    this._sendAhead(request, text.slice(0, cursor));
    return true;
  }

  private _mayAskAhead(): boolean {
    const state = this._state;
    return (
      state.settings.enabled &&
      state.settings.askAhead &&
      state.completionAllowed &&
      state.engine?.state === 'ready' &&
      Date.now() >= this._pausedUntil
    );
  }

  /**
   * The request of the cursor at `cursor` (a JavaScript index) of `text`; `emptyCell`:
   * also for a cell with nothing typed yet (as Alt+\ asks there).
   */
  private _editorRequest(
    widget: Widget,
    text: string,
    cursor: number,
    emptyCell = false
  ): EditorRequest | null {
    return buildCompletionRequest(widget, text, Text.jsIndexToCharIndex(cursor, text), {
      markdownCells: this._state.settings.markdownCells,
      invoked: emptyCell
    });
  }

  /**
   * Ask for `editorRequest`'s suggestion, not shown (one at a time: it replaces an
   * older one, of another cell or an earlier accept); `covered`: the editor's text up
   * to the cursor it takes care of.
   */
  private _sendAhead(editorRequest: EditorRequest, covered: string): void {
    this._ahead?.controller.abort();
    const ahead = { controller: new AbortController(), editorId: editorRequest.editor_id ?? '' };
    this._ahead = ahead;
    this._covered = { editorId: ahead.editorId, prefix: covered };
    // Never waited for by anyone: a hung one must not stop the next ones for good.
    const timer = window.setTimeout(() => ahead.controller.abort(), this._timeoutMs);
    const body: ICompleteRequest = { ...this._body(editorRequest), ahead: true };
    requestAPI<IStreamChunk>('complete', {
      method: 'POST',
      body: JSON.stringify(body),
      signal: ahead.controller.signal
    })
      .catch(error => {
        // Best effort: the next request asks the model itself (unless told to wait:
        // a campus service's 429 holds for every request made by itself).
        this._pauseIfRefused(error);
      })
      .finally(() => {
        window.clearTimeout(timer);
        if (this._ahead === ahead) {
          this._ahead = null;
        }
      });
  }

  /** What every request of this provider sends besides the editor's text. */
  private _body(editorRequest: EditorRequest): ICompleteRequest {
    const settings = this._state.settings;
    return {
      ...editorRequest,
      mode: settings.mode === 'auto' ? null : settings.mode,
      // The server cuts (and stops generating) at this many lines.
      max_lines: settings.maxLines > 0 ? settings.maxLines : null,
      request_id: `${editorRequest.editor_id}#${++requestCounter}`
    };
  }

  /**
   * The block trigger (blockTrigger.ts) is about to invoke the inline completer on an
   * empty line, where JupyterLab never asks by itself: treat that request as typing
   * (silent on errors), not as the user's Alt+\.
   */
  expectAutomaticInvoke(): void {
    this._automaticInvokeUntil = Date.now() + AUTOMATIC_INVOKE_WINDOW_MS;
  }

  /**
   * Stream the rest of a suggestion that `fetch` answered with `isIncomplete`.
   * Each reply carries the whole acceptable text so far (complete lines only), as the
   * inline completer expects: Tab mid-stream then inserts valid lines, never `print(f`.
   */
  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const completion = this._streams.get(token);
    this._streams.delete(token);
    if (!completion) {
      return;
    }
    let shown = completion.acceptable;
    for (;;) {
      if (completion.acceptable !== shown) {
        shown = completion.acceptable;
        yield { response: { insertText: shown, isIncomplete: !completion.done } };
      }
      if (completion.done) {
        break;
      }
      await completion.changed();
    }
    const error = completion.errorMessage;
    if (error) {
      yield { response: withError({ insertText: shown, isIncomplete: false }, error) };
    }
  }

  /** Stop the suggestion in flight, if any (completions were turned off…). */
  abortAll(): void {
    this._current?.abort();
    this._current = null;
    this._ahead?.controller.abort();
    this._ahead = null;
    this._streams.clear();
  }

  private _errorItems(completion: StreamingCompletion, invoked: boolean): IInlineCompletionItem[] {
    // On typing, fail silently (the status bar tells); when the user asked
    // explicitly (Alt+\), say why nothing comes.
    const message = completion.errorMessage;
    if (invoked && message) {
      return [withError({ insertText: '' }, message)];
    }
    return [];
  }

  private _onError(error: unknown, invoked: boolean): void {
    if (isAbortError(error)) {
      return;
    }
    this._pauseIfRefused(error);
    this._state.reportError(error);
    if (invoked) {
      console.warn('jupyter-copilot: completion failed', error);
    }
  }

  /** A 429 with Retry-After: nothing asked by itself (typing, ahead) before it passes. */
  private _pauseIfRefused(error: unknown): void {
    if (error instanceof CopilotAPIError && error.status === 429 && error.retryAfterSeconds) {
      this._pausedUntil = Date.now() + error.retryAfterSeconds * 1000;
    }
  }

  private _state: CopilotState;
  private _trans: TranslationBundle;
  private _timeoutMs = PROVIDER_DEFAULTS.timeout;
  private _automaticInvokeUntil = 0;
  private _pausedUntil = 0; // no automatic request before (a 429's Retry-After)
  private _debouncerDelay = PROVIDER_DEFAULTS.debouncerDelay;
  private _current: StreamingCompletion | null = null;
  /** The suggestion asked ahead in flight, and its editor's id. */
  private _ahead: { controller: AbortController; editorId: string } | null = null;
  /**
   * The editor and its text up to the cursor that the last suggestion asked (shown,
   * or ahead) was for: while the student has typed nothing since, nothing is asked.
   */
  private _covered: { editorId: string; prefix: string } | null = null;
  private _streams = new Map<string, StreamingCompletion>();
}

export namespace CopilotInlineProvider {
  export interface IOptions {
    state: CopilotState;
    translator?: ITranslator | null;
  }
}

/**
 * One completion request streaming from the server: the latest text, whether it is
 * done, and a way to wait for the next change.
 */
export class StreamingCompletion {
  constructor(body: ICompleteRequest) {
    this.finished = streamAPI(
      'complete?stream=1',
      body,
      chunk => this._onChunk(chunk),
      this._controller.signal
    ).then(
      last => {
        if (last?.error && !isCancellation(last)) {
          this.errorMessage = last.error;
        }
        this._finish();
      },
      error => {
        if (!isAbortError(error) && !this._controller.signal.aborted) {
          this.errorMessage = error instanceof Error ? error.message : String(error);
        }
        this._finish();
        if (!this._controller.signal.aborted) {
          throw error;
        }
      }
    );
  }

  /** Settles when the request is over (rejects on a failure other than an abort). */
  readonly finished: Promise<void>;

  /** The whole suggestion so far. */
  text = '';

  /**
   * What can be shown and accepted now: the whole text once done, only its complete
   * lines while it streams.
   */
  get acceptable(): string {
    return this._whole ? this.text : completeLines(this.text);
  }

  /** No more text will come. */
  done = false;

  /** Why the stream failed, for the user (null if it did not). */
  errorMessage: string | null = null;

  /** Resolves at the next change of `text` or `done`. */
  changed(): Promise<void> {
    return this._changed.promise;
  }

  /**
   * Resolves true once a complete first line has come (or the whole, shorter,
   * suggestion), false if the stream ended empty, failed, or nothing came within
   * `timeoutMs`.
   */
  async firstText(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.acceptable && !this.done) {
      const left = deadline - Date.now();
      if (left <= 0) {
        return false;
      }
      let timer = 0;
      const timedOut = new Promise<void>(resolve => {
        timer = window.setTimeout(resolve, left);
      });
      await Promise.race([this.changed(), timedOut]);
      window.clearTimeout(timer);
    }
    return !!this.acceptable;
  }

  /** Stop generating: closes the connection, which the server takes as a cancel. */
  abort(): void {
    if (!this.done) {
      this._controller.abort();
      this._finish();
    }
  }

  private _onChunk(chunk: IStreamChunk): void {
    if (this.done) {
      return;
    }
    if (chunk.error && !isCancellation(chunk)) {
      this.errorMessage = chunk.error;
    }
    this.text = chunk.text;
    // Said done by the server: all of it is whole. A stream cut short (network, a
    // crash) or still streaming shows only its complete lines (the server applies the
    // line limit in its post-processing and stops the engine there).
    this._whole = chunk.done && !chunk.error;
    if (chunk.done) {
      this._finish();
    } else {
      this._notify();
    }
  }

  private _finish(): void {
    this.done = true;
    this._notify();
  }

  private _notify(): void {
    const previous = this._changed;
    this._changed = new PromiseDelegate<void>();
    previous.resolve();
  }

  private _controller = new AbortController();
  private _changed = new PromiseDelegate<void>();
  private _whole = false;
}
