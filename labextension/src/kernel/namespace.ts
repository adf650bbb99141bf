/**
 * The kernel's live names (issue 14): after each cell execution, a compact summary
 * of the notebook kernel's namespace (DataFrame columns and dtypes, dict keys,
 * function parameters, module aliases...) that completion requests carry as
 * `kernel_namespace`, so that `df["` can suggest a column the code never spells.
 *
 * Why here, in the frontend: JupyterLab already holds the notebook's session and
 * knows when a cell finished and whether the kernel is idle; the server would have
 * to map a notebook to a kernel and listen to its channels itself. The same request
 * then works for the local engine and through the campus service.
 *
 * How, safely: one silent execute request (`silent`, no history, no execution
 * count, no output) whose only work is a `user_expressions` entry, the probe of
 * `jupyter_copilot/context/kernel_probe.py` (it never calls the student's code).
 * Never per keystroke, never queued behind the student's code (skipped while the
 * kernel is busy), time-boxed, and only for Python kernels.
 */

import type { INotebookTracker, Notebook, NotebookPanel } from '@jupyterlab/notebook';
import { NotebookActions } from '@jupyterlab/notebook';
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';

import { OnceDisposable } from '../disposable';
import type { INamespaceEntry } from '../api';
import type { CopilotState } from '../state';
import { PROBE_EXPRESSION_BASE64 } from './probeSource';

/** The probe, as the kernel evaluates it (Python source, ASCII). */
const PROBE_EXPRESSION = atob(PROBE_EXPRESSION_BASE64);

/** Wait this long after a cell ends: "Run All" ends many cells in a row. */
export const PROBE_DELAY_MS = 300;
/** Give up on the kernel's answer after this long (the probe itself is time-boxed). */
export const PROBE_TIMEOUT_MS = 2_000;
/** The server's bounds (schema.py): more would be refused, not cut. */
export const MAX_ENTRIES = 64;
const MAX_NAME_CHARS = 128;
const MAX_SUMMARY_CHARS = 600;

interface ISnapshot {
  kernelId: string;
  entries: INamespaceEntry[];
}

const snapshots = new WeakMap<NotebookPanel, ISnapshot>();

/**
 * The names of the notebook's kernel after its last execution ([] when unknown,
 * off, or the kernel changed since).
 */
export function kernelNamespace(panel: NotebookPanel): INamespaceEntry[] {
  const snapshot = snapshots.get(panel);
  const kernel = panel.sessionContext?.session?.kernel;
  if (!snapshot || !kernel || kernel.id !== snapshot.kernelId) {
    return [];
  }
  return snapshot.entries;
}

/**
 * Decode the probe's `text/plain` result: a Python string literal of base64 JSON.
 * Anything else gives null (a kernel that answered something unexpected).
 */
export function decodeProbeResult(textPlain: string): INamespaceEntry[] | null {
  const literal = textPlain.trim().replace(/^['"]|['"]$/g, '');
  if (!/^[A-Za-z0-9+/=]+$/.test(literal)) {
    return null;
  }
  let payload: unknown;
  try {
    payload = JSON.parse(atob(literal));
  } catch {
    return null;
  }
  const entries = (payload as { entries?: unknown })?.entries;
  if (!Array.isArray(entries)) {
    return null;
  }
  const kept: INamespaceEntry[] = [];
  for (const entry of entries.slice(0, MAX_ENTRIES)) {
    const { name, summary } = (entry ?? {}) as Partial<INamespaceEntry>;
    if (typeof name === 'string' && typeof summary === 'string' && name) {
      kept.push({
        name: name.slice(0, MAX_NAME_CHARS),
        summary: summary.slice(0, MAX_SUMMARY_CHARS)
      });
    }
  }
  return kept;
}

/**
 * Ask `kernel` for its names, unless it is busy or does not speak Python.
 */
export async function probeKernel(
  kernel: Kernel.IKernelConnection,
  timeoutMs = PROBE_TIMEOUT_MS
): Promise<INamespaceEntry[] | null> {
  if (kernel.status !== 'idle') {
    return null; // the student's code comes first; the next execution asks again
  }
  const info = await Promise.race([kernel.info, delay(timeoutMs)]);
  if (!info || info.language_info?.name?.toLowerCase() !== 'python') {
    return null;
  }
  const content: KernelMessage.IExecuteRequestMsg['content'] = {
    code: '',
    silent: true,
    store_history: false,
    allow_stdin: false,
    stop_on_error: false,
    user_expressions: { copilot: PROBE_EXPRESSION }
  };
  const future = kernel.requestExecute(content, true);
  const reply = await Promise.race([future.done, delay(timeoutMs)]);
  if (!reply) {
    future.dispose();
    return null;
  }
  const replyContent = reply.content as KernelMessage.IExecuteReply;
  if (replyContent.status !== 'ok') {
    return null;
  }
  const result = replyContent.user_expressions?.copilot as
    { status?: string; data?: { 'text/plain'?: unknown } } | undefined;
  const text = result?.status === 'ok' ? result.data?.['text/plain'] : undefined;
  return typeof text === 'string' ? decodeProbeResult(text) : null;
}

function delay(ms: number): Promise<undefined> {
  return new Promise(resolve => setTimeout(() => resolve(undefined), ms));
}

/**
 * Collects the summary after each execution in the notebooks of `tracker`.
 */
export class KernelNamespaceCollector extends OnceDisposable {
  constructor(options: KernelNamespaceCollector.IOptions) {
    super();
    this._tracker = options.tracker;
    this._state = options.state;
    NotebookActions.executed.connect(this._onExecuted, this);
    this._state.changed.connect(this._onStateChanged, this);
  }

  protected onDispose(): void {
    for (const timer of this._timers.values()) {
      clearTimeout(timer);
    }
    Signal.disconnectReceiver(this);
  }

  private get _on(): boolean {
    return this._state.enabled && this._state.settings.kernelContext;
  }

  private _onStateChanged(): void {
    if (!this._on) {
      // Switched off: forget what was collected, so that nothing more is sent.
      this._tracker.forEach(panel => snapshots.delete(panel));
    }
  }

  private _onExecuted(_: unknown, args: { notebook: Notebook }): void {
    if (!this._on) {
      return;
    }
    const panel = this._tracker.find(candidate => candidate.content === args.notebook);
    if (!panel) {
      return;
    }
    clearTimeout(this._timers.get(panel));
    this._timers.set(
      panel,
      setTimeout(() => {
        this._timers.delete(panel);
        void this._collect(panel);
      }, PROBE_DELAY_MS)
    );
  }

  private async _collect(panel: NotebookPanel): Promise<void> {
    const kernel = panel.sessionContext?.session?.kernel;
    if (!kernel || panel.isDisposed || !this._on) {
      return;
    }
    try {
      const entries = await probeKernel(kernel);
      if (entries !== null && this._on) {
        snapshots.set(panel, { kernelId: kernel.id, entries });
      }
    } catch (error) {
      // A kernel that went away mid-request: keep the last summary, say why once.
      console.debug('jupyter-copilot: kernel summary skipped', error);
    }
  }

  private _tracker: INotebookTracker;
  private _state: CopilotState;
  private _timers = new Map<NotebookPanel, ReturnType<typeof setTimeout>>();
}

export namespace KernelNamespaceCollector {
  export interface IOptions {
    tracker: INotebookTracker;
    state: CopilotState;
  }
}
