/**
 * The copilot's shared state: the user's settings, the engine's status (polled
 * gently from `GET /copilot/status`) and the completion requests in flight.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  CopilotAPIError,
  EngineState,
  getStatus,
  IModelCard,
  isAbortError,
  IStatusReply
} from './api';
import { DEFAULT_SETTINGS, ICopilotSettings } from './tokens';

/**
 * What the status bar shows. Beyond the server's states: `busy` while a
 * completion streams, `off` when the user turned completions off, `unreachable`
 * when the server extension does not answer (not installed, server down).
 */
export type DisplayState =
  'starting' | 'ready' | 'busy' | 'error' | 'disabled' | 'off' | 'unreachable';

/**
 * A feature's mode in the server's policy (`jupyter_copilot/policy.py`).
 */
export type FeatureMode = 'on' | 'hint' | 'off';

/**
 * What the student has left today, as a shared JupyterHub service reports it
 * (`features.quota` of `GET /copilot/status`; `jupyter_copilot/hub/quotas.py`).
 */
export interface IQuota {
  /** The daily token allowance; null when unlimited (staff, no quota set). */
  daily_tokens: number | null;
  tokens_used_today: number;
  tokens_left_today: number | null;
  resets_in_seconds: number;
}

/** The features a policy decides on, in the order the UI lists them. */
export const POLICY_FEATURES = ['completion', 'explain_cell', 'explain_error'] as const;
export type PolicyFeature = (typeof POLICY_FEATURES)[number];

export interface IFeatureDecision {
  mode: FeatureMode;
  /** Why it is not 'on' (the server's words; '' when it gave none), null when 'on'. */
  reason: string | null;
}

/**
 * Polling intervals. Gentle: a status request is cheap, but hundreds of students
 * polling a shared JupyterHub every second are not.
 */
export const POLL_STARTING_MS = 2_000;
export const POLL_READY_MS = 30_000;

export class CopilotState implements IDisposable {
  constructor(options: CopilotState.IOptions = {}) {
    this._settings = options.settings ?? null;
    this._settings?.changed.connect(this._onSettingsChanged, this);
    this._readSettings();
    this._poll = new Poll<void, Error, 'status'>({
      factory: () => this._fetchStatus(),
      frequency: { interval: POLL_STARTING_MS, backoff: true, max: POLL_READY_MS },
      // Stop polling in a hidden browser tab: nobody looks at the status bar there.
      standby: 'when-hidden',
      name: 'jupyter-copilot:status',
      auto: options.autoPoll ?? true
    });
  }

  /** Emitted when anything shown to the user changes (settings, engine, busy). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The current user settings (defaults filled in). */
  get settings(): Readonly<ICopilotSettings> {
    return this._values;
  }

  /** Whether completions are on (the user's master switch). */
  get enabled(): boolean {
    return this._values.enabled;
  }

  /**
   * Flip the user's `enabled` setting. It is saved in the settings registry, so it
   * survives a reload and follows the user to other browsers.
   */
  async setEnabled(enabled: boolean): Promise<void> {
    if (this._settings) {
      await this._settings.set('enabled', enabled);
    } else {
      this._values = { ...this._values, enabled };
      this._changed.emit();
    }
  }

  /** The last status reply of the server (null until the first one). */
  get engine(): IStatusReply | null {
    return this._engine;
  }

  get model(): IModelCard | null {
    return this._engine?.model ?? null;
  }

  /** Why the last status request or completion failed (null when all is well). */
  get lastError(): string | null {
    return this._lastError;
  }

  /** Completion requests currently in flight. */
  get pendingRequests(): number {
    return this._pending;
  }

  /**
   * Whether the server's policy lets this user have completions (an exam, a course
   * that turns them off). The server enforces it anyway (403); asking first spares
   * the request. Unknown (no status yet) counts as allowed.
   */
  get completionAllowed(): boolean {
    return this._engine?.state !== 'disabled' && this.policyReason === null;
  }

  /**
   * Whether the server asks for warm-ups while the student types (its engine
   * evaluates prompts slowly and keeps their cache: a CPU model).
   */
  get warmWhileTyping(): boolean {
    return this._engine?.features?.warm_while_typing === true;
  }

  /** Why the server's policy turns completions off, if it does. */
  get policyReason(): string | null {
    const completion = this._engine?.features?.completion as
      { mode?: string; reason?: string } | undefined;
    if (completion?.mode === 'off') {
      return completion.reason ?? '';
    }
    return null;
  }

  /**
   * What the server's policy says of a feature (`explain_cell`, `explain_error`…) for
   * this user: 'on', 'hint' (guide without giving the answer) or 'off', with the
   * reason to show. The server decides and enforces it; the browser only adapts its
   * buttons. Unknown (no status yet, an older server) counts as 'on': the server
   * still refuses with a 403 if it must.
   */
  featureDecision(feature: string): IFeatureDecision {
    if (this._engine?.state === 'disabled') {
      return { mode: 'off', reason: this._engine.detail ?? '' };
    }
    const raw = this._engine?.features?.[feature] as { mode?: string; reason?: string } | undefined;
    const mode: FeatureMode = raw?.mode === 'off' || raw?.mode === 'hint' ? raw.mode : 'on';
    return { mode, reason: mode === 'on' ? null : (raw?.reason ?? '') };
  }

  /** Today's quota, when the server has one for this user (a JupyterHub service). */
  get quota(): IQuota | null {
    const raw = this._engine?.features?.quota as Partial<IQuota> | undefined;
    if (!raw || typeof raw.tokens_used_today !== 'number') {
      return null;
    }
    return {
      daily_tokens: raw.daily_tokens ?? null,
      tokens_used_today: raw.tokens_used_today,
      tokens_left_today: raw.tokens_left_today ?? null,
      resets_in_seconds: raw.resets_in_seconds ?? 0
    };
  }

  get displayState(): DisplayState {
    if (!this._values.enabled) {
      return 'off';
    }
    if (!this._engine) {
      return this._unreachable ? 'unreachable' : 'starting';
    }
    if (this.policyReason !== null) {
      return 'disabled';
    }
    if (this._engine.state === 'ready' && this._pending > 0) {
      return 'busy';
    }
    return isTransient(this._engine.state) ? 'starting' : this._engine.state;
  }

  /**
   * Count a completion request in flight; call the returned function when it ends.
   */
  beginRequest(): () => void {
    this._pending += 1;
    this._changed.emit();
    let ended = false;
    return () => {
      if (!ended) {
        ended = true;
        this._pending -= 1;
        this._changed.emit();
      }
    };
  }

  /**
   * Let a failed completion inform the status: a 503 means the engine is
   * (re)starting, so check again soon instead of in 30 seconds.
   */
  reportError(error: unknown): void {
    if (isAbortError(error)) {
      return;
    }
    this._lastError = error instanceof Error ? error.message : String(error);
    // 503: the engine restarts; 403: the policy may have changed; 5xx: it crashed;
    // 429: today's quota may be used up (the notification says until when).
    if (
      error instanceof CopilotAPIError &&
      (error.isStarting || error.status === 403 || error.status === 429 || error.status >= 500)
    ) {
      void this.refresh();
    }
    this._changed.emit();
  }

  /** Forget a previous completion error (the next request worked). */
  clearError(): void {
    if (this._lastError !== null && this._engine?.state === 'ready') {
      this._lastError = this._engine.detail ?? null;
      this._changed.emit();
    }
  }

  /** Ask the server for its status now. */
  async refresh(): Promise<void> {
    await this._poll.refresh();
    await this._poll.tick;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    this._settings?.changed.disconnect(this._onSettingsChanged, this);
    Signal.clearData(this);
  }

  private async _fetchStatus(): Promise<void> {
    try {
      const reply = await getStatus();
      this._engine = reply;
      this._unreachable = false;
      this._lastError = reply.state === 'ready' ? null : (reply.detail ?? null);
      // Poll often while the model loads, rarely once it is there.
      const interval = isTransient(reply.state) ? POLL_STARTING_MS : POLL_READY_MS;
      this._poll.frequency = { interval, backoff: true, max: POLL_READY_MS };
      this._changed.emit();
    } catch (error) {
      this._unreachable = true;
      this._engine = null;
      this._lastError = error instanceof Error ? error.message : String(error);
      this._changed.emit();
      // Rejecting makes the poll back off (2 s, 4 s … up to 30 s).
      throw error;
    }
  }

  private _onSettingsChanged(): void {
    const wasEnabled = this._values.enabled;
    this._readSettings();
    this._changed.emit();
    if (!wasEnabled && this._values.enabled) {
      void this.refresh();
    }
  }

  private _readSettings(): void {
    const composite = (this._settings?.composite ?? {}) as Partial<ICopilotSettings>;
    this._values = { ...DEFAULT_SETTINGS, ...composite };
  }

  private _settings: ISettingRegistry.ISettings | null;
  private _values: ICopilotSettings = { ...DEFAULT_SETTINGS };
  private _engine: IStatusReply | null = null;
  private _unreachable = false;
  private _lastError: string | null = null;
  private _pending = 0;
  private _poll: Poll<void, Error, 'status'>;
  private _changed = new Signal<this, void>(this);
}

export namespace CopilotState {
  export interface IOptions {
    /** The plugin's settings; without them, defaults apply and nothing is saved. */
    settings?: ISettingRegistry.ISettings | null;
    /** Start polling at once (default true). */
    autoPoll?: boolean;
  }
}

/** Loading, or being restarted after a crash or a hang: shown as "starting…". */
function isTransient(state: EngineState): state is 'starting' | 'restarting' | 'unresponsive' {
  return state === 'starting' || state === 'restarting' || state === 'unresponsive';
}
