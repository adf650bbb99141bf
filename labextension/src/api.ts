/**
 * The jupyter-copilot server API, defined once.
 *
 * The interfaces mirror `jupyter_copilot/schema.py` field for field: that file is
 * the contract, and a field renamed here would silently be ignored by the server
 * (it drops unknown fields so that newer frontends work with older servers).
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * Every route lives under `<base_url>/copilot/`.
 */
export const API_NAMESPACE = 'copilot';

/* ------------------------------------------------------------------ requests */

export type CellType = 'code' | 'markdown' | 'raw';

/**
 * A cell the server may use as context (earlier cells, in notebook order).
 */
export interface IContextCell {
  cell_type: CellType;
  source: string;
}

export type CompletionMode = 'line' | 'block';

/**
 * One live name of the notebook's kernel (issue 14; `kernel/namespace.ts`).
 */
export interface INamespaceEntry {
  name: string;
  summary: string;
}

/**
 * `POST /copilot/complete` (and `?stream=1`).
 */
export interface ICompleteRequest {
  /** Cell (or file) text before the cursor. */
  prefix: string;
  /** Cell (or file) text after the cursor. */
  suffix: string;
  language: string;
  path?: string | null;
  cell_id?: string | null;
  context_cells?: IContextCell[];
  /** `null` lets the server decide from the code around the cursor. */
  mode?: CompletionMode | null;
  max_tokens?: number | null;
  /**
   * One editor in one browser tab: a newer request with the same id cancels the
   * older one on the server, so generation really stops.
   */
  editor_id?: string | null;
  /** Echoed back as `id` in every chunk. */
  request_id?: string | null;
  /** The kernel's live names after the last execution, newest first. */
  kernel_namespace?: INamespaceEntry[];
  /**
   * The user's line limit for a suggestion; the server applies the smaller of it
   * and its own (the rule lives in the server's post-processing only).
   */
  max_lines?: number | null;
  /**
   * Asked ahead: right after a suggestion was accepted, for the line after it. The
   * server remembers the answer for the editor's next request; it is not shown.
   */
  ahead?: boolean;
}

/**
 * `POST /copilot/warm`: pre-fills the engine's prompt cache with what the next
 * completion starts with (the earlier cells, then the active cell up to the
 * cursor's line), so that the first completion is fast.
 */
export interface IWarmRequest {
  path?: string | null;
  language: string;
  context_cells: IContextCell[];
  kernel_namespace?: INamespaceEntry[];
  /** The active cell around its cursor (the server warms up to the cursor's line). */
  prefix?: string;
  suffix?: string;
  /** While typing: on to the word being typed (`features.warm_while_typing`). */
  through_cursor?: boolean;
}

export interface IErrorInfo {
  ename: string;
  evalue: string;
  traceback: string[];
}

/**
 * `POST /copilot/explain` (streamed markdown; `?stream=0` gives one reply).
 */
export interface IExplainRequest {
  kind: 'cell' | 'error' | 'question';
  source: string;
  error?: IErrorInfo | null;
  context_cells?: IContextCell[];
  language?: 'fr' | 'en' | null;
  path?: string | null;
  editor_id?: string | null;
  request_id?: string | null;
  /** kind 'question': the student's question (a follow-up or a free question). */
  question?: string | null;
  /** Earlier turns of the panel's conversation; answers carry their signature. */
  history?: IHistoryTurn[];
  /**
   * The kernel's live names, as completions send them: a cell's explanation is
   * written after the notebook as their prompts show it, and finds it cached.
   */
  kernel_namespace?: INamespaceEntry[];
}

/**
 * One earlier turn of a conversation. The server keeps an `assistant` turn only
 * with the `signature` it gave that answer.
 */
export interface IHistoryTurn {
  role: 'user' | 'assistant';
  content: string;
  signature?: string | null;
}

/**
 * A passage of the course material an answer relies on (cited in the panel).
 */
export interface ISource {
  path: string;
  cell_index?: number | null;
  title?: string | null;
  excerpt?: string | null;
}

/* ------------------------------------------------------------------- replies */

/**
 * Where the time went, in milliseconds, plus token counts.
 */
export interface ITiming {
  queued_ms: number;
  first_token_ms?: number | null;
  total_ms: number;
  prompt_tokens: number;
  cached_tokens: number;
  generated_tokens: number;
}

export interface ICompleteReply {
  id?: string | null;
  text: string;
  model: string;
  mode: CompletionMode;
  timing: ITiming;
  stop_reason?: string | null;
}

export interface IExplainReply {
  id?: string | null;
  text: string;
  model: string;
  timing: ITiming;
  sources?: ISource[] | null;
  signature?: string | null;
  history_dropped?: number | null;
}

/**
 * One NDJSON line of a stream. `text` is the WHOLE cleaned text so far, not a
 * delta: JupyterLab's inline completer wants the full suggestion each time.
 */
export interface IStreamChunk {
  id?: string | null;
  text: string;
  done: boolean;
  error?: string | null;
  model?: string | null;
  timing?: ITiming | null;
  // core: typed outcomes, on the final chunk (`done: true`)
  /** Why the stream ended: the one field to branch on (never parse `error`). */
  stop_reason?: StopReason | null;
  /** Completions: the mode the server decided for this request. */
  mode?: 'line' | 'block' | null;
  /** Stable code of a stream that ended in error (see `ErrorCode`). */
  code?: ErrorCode | null;
  /** Explanations and questions: course citations (first and last chunk). */
  sources?: ISource[] | null;
  /** Last chunk: send it back with this answer as an `assistant` history turn. */
  signature?: string | null;
  /** Last chunk: older turns the server's history budget left out. */
  history_dropped?: number | null;
}

/** Why a stream ended (the server's `StopReason`). */
export type StopReason = 'done' | 'cancelled' | 'stopped_by_filter' | 'max_tokens' | 'error';

/** Stable error codes (jupyter_copilot/errors.py); `error` is only the message. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'policy_off'
  | 'not_found'
  | 'too_large'
  | 'busy'
  | 'rate_limited'
  | 'quota'
  | 'engine_error'
  | 'engine_crashed'
  | 'unavailable'
  | 'internal';

/**
 * What a student or teacher should know about the model that answers them.
 */
export interface IModelCard {
  id: string;
  name: string;
  family: string;
  parameters?: string | null;
  quantization?: string | null;
  licence?: string | null;
  licence_url?: string | null;
  open_weights?: boolean | null;
  open_code?: boolean | null;
  open_data?: boolean | null;
  path?: string | null;
  size_bytes?: number | null;
  sha256?: string | null;
  engine?: string | null;
  notes?: string | null;
}

/** `restarting` and `unresponsive` (a hung engine being restarted) read as `starting`. */
export type EngineState =
  'starting' | 'ready' | 'error' | 'disabled' | 'restarting' | 'unresponsive';

/**
 * `GET /copilot/status`.
 */
export interface IStatusReply {
  state: EngineState;
  model?: IModelCard | null;
  features: { [feature: string]: unknown };
  detail?: string | null;
  version?: string | null;
}

/**
 * Every error reply of the server: `{error, field?, status}`.
 */
export interface IErrorReply {
  error: string;
  field?: string | null;
  status: number;
  // core: stable code beside the message; the policy's own reason for `policy_off`
  code?: ErrorCode;
  reason?: string | null;
}

/* ------------------------------------------------------------------- errors */

/**
 * A non-2xx reply, with the server's own message (and the offending field for 400/413).
 */
export class CopilotAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null = null,
    readonly retryAfterSeconds: number | null = null,
    readonly code: ErrorCode | null = null
  ) {
    super(message);
    this.name = 'CopilotAPIError';
  }

  /** 503: the engine is still loading the model; retrying later will work. */
  get isStarting(): boolean {
    return this.status === 503;
  }
}

/**
 * Whether an error only says that the request was aborted (by us or by a newer one).
 */
export function isAbortError(error: unknown): boolean {
  if (error instanceof DOMException && error.name === 'AbortError') {
    return true;
  }
  // ServerConnection wraps fetch failures (including aborts) in a NetworkError.
  if (error instanceof ServerConnection.NetworkError) {
    return /abort/i.test(String(error.message));
  }
  return false;
}

/* ---------------------------------------------------------------- transport */

function apiUrl(settings: ServerConnection.ISettings, endpoint: string): string {
  return URLExt.join(settings.baseUrl, API_NAMESPACE, endpoint);
}

/**
 * Turn a non-2xx reply into a `CopilotAPIError` carrying the server's message.
 */
async function errorFromResponse(response: Response): Promise<CopilotAPIError> {
  let message = response.statusText || `HTTP ${response.status}`;
  let field: string | null = null;
  let code: ErrorCode | null = null;
  const text = await response.text().catch(() => '');
  if (text) {
    try {
      const body = JSON.parse(text) as Partial<IErrorReply> & { message?: string };
      message = body.error ?? body.message ?? message;
      field = body.field ?? null;
      code = body.code ?? null;
    } catch {
      // Not JSON (a proxy's HTML error page, for instance): keep the status text.
    }
  }
  const retryAfter = Number(response.headers.get('Retry-After'));
  return new CopilotAPIError(
    message,
    response.status,
    field,
    Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    code
  );
}

/**
 * Call a copilot route and parse its JSON reply.
 *
 * @param endpoint - the route under `/copilot/` (e.g. `status`, `complete?stream=0`)
 * @param init - fetch options (method, body, signal…)
 * @param settings - the server connection (the default one of the page if omitted)
 */
export async function requestAPI<T>(
  endpoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const response = await ServerConnection.makeRequest(apiUrl(settings, endpoint), init, settings);
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  const text = await response.text();
  return (text ? JSON.parse(text) : {}) as T;
}

/**
 * POST a JSON body to a streaming route and call `onChunk` for every NDJSON line.
 *
 * Resolves when the server closes the stream. Aborting `signal` closes the
 * connection, which the server takes as "stop generating" (it also cancels an
 * older request that carries the same `editor_id`).
 *
 * @returns the last chunk received (or null if the stream was empty)
 */
export async function streamAPI(
  endpoint: string,
  body: unknown,
  onChunk: (chunk: IStreamChunk) => void,
  signal?: AbortSignal,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<IStreamChunk | null> {
  const response = await ServerConnection.makeRequest(
    apiUrl(settings, endpoint),
    {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { Accept: 'application/x-ndjson' },
      signal,
      // Streams must never be served from a cache.
      cache: 'no-store'
    },
    settings
  );
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  if (!response.body) {
    // Very old browsers: no streaming body; read it whole.
    return parseLines(await response.text(), onChunk);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  let last: IStreamChunk | null = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      pending += decoder.decode(value, { stream: true });
      const newline = pending.lastIndexOf('\n');
      if (newline >= 0) {
        last = parseLines(pending.slice(0, newline), onChunk) ?? last;
        pending = pending.slice(newline + 1);
      }
    }
    pending += decoder.decode();
    return parseLines(pending, onChunk) ?? last;
  } finally {
    reader.releaseLock();
  }
}

function parseLines(text: string, onChunk: (chunk: IStreamChunk) => void): IStreamChunk | null {
  let last: IStreamChunk | null = null;
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      continue;
    }
    const parsed = JSON.parse(line) as Partial<IStreamChunk>;
    last = { ...parsed, text: parsed.text ?? '', done: parsed.done ?? false };
    onChunk(last);
  }
  return last;
}

/* ---------------------------------------------------------------- endpoints */

export function getStatus(init: RequestInit = {}): Promise<IStatusReply> {
  return requestAPI<IStatusReply>('status', { ...init, cache: 'no-store' });
}

export function warm(request: IWarmRequest): Promise<unknown> {
  return requestAPI<unknown>('warm', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}

/**
 * `POST /copilot/explain/prepare` (202): the server evaluates ahead the prompt of
 * the explanation `request` asks for, so that asking for it later starts at once.
 */
export function prepareExplanation(request: IExplainRequest): Promise<unknown> {
  return requestAPI<unknown>('explain/prepare', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}

/**
 * Whether a stream's final error only reports a cancellation (a newer request from
 * the same editor replaced it): that is normal typing, not a failure.
 */
export function isCancellation(chunk: IStreamChunk | null): boolean {
  return chunk?.stop_reason === 'cancelled';
}
