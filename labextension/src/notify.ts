/**
 * JupyterLab notifications (toasts) for what the student must know even when not
 * looking at the status bar: the model is missing (and the command that fixes it),
 * the engine stopped for good, today's quota is used up (and when it comes back), a
 * course rule starts or ends.
 *
 * One toast per event, never a storm: each event has a key, shown once while it
 * lasts; the key is forgotten when the situation ends, so it can be told again
 * when it comes back. Everything is derived from the status reply already polled.
 */

import { Notification } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';

import type { IStatusReply } from './api';
import { OnceDisposable } from './disposable';
import { POLICY_FEATURES } from './state';
import type { CopilotState, FeatureMode, IQuota, PolicyFeature } from './state';
import { featureLabel } from './status';

/** What one toast says; `copy` adds a button that copies a command. */
export interface INotice {
  key: string;
  type: 'info' | 'warning' | 'error';
  message: string;
  copy?: string;
}

/**
 * The command the server says fixes the engine's error, if any: its detail ends with
 * `Run: jupyter copilot models pull <id>` (engines/__init__.py).
 */
export function fixCommand(detail: string | null | undefined): string | null {
  const match = /\bRun:\s*(.+?)\s*$/.exec(detail ?? '');
  return match ? match[1] : null;
}

/** Whether an engine error is a missing model file (rather than a crash). */
function isModelMissing(detail: string): boolean {
  return /model file not found|not downloaded/i.test(detail);
}

/** The local time at which the quota comes back, `resets_in_seconds` from now. */
function resetTime(quota: IQuota, now: Date): string {
  const at = new Date(now.getTime() + quota.resets_in_seconds * 1000);
  return at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * The notices that a status reply calls for, given the modes of the previous reply
 * (null for the first one: a rule already in force is told once too).
 */
export function noticesFor(
  engine: IStatusReply | null,
  quota: IQuota | null,
  modes: Map<PolicyFeature, FeatureMode>,
  previousModes: Map<PolicyFeature, FeatureMode> | null,
  trans: TranslationBundle,
  now = new Date()
): INotice[] {
  const notices: INotice[] = [];
  if (engine?.state === 'error') {
    const detail = engine.detail ?? '';
    const command = fixCommand(detail);
    if (isModelMissing(detail)) {
      notices.push({
        key: `model-missing:${detail}`,
        type: 'error',
        message: command
          ? trans.__(
              'Copilot: the model file is missing. An administrator can fix it with: %1',
              command
            )
          : trans.__('Copilot: the model file is missing (%1).', detail),
        copy: command ?? undefined
      });
    } else {
      notices.push({
        key: `engine-stopped:${detail}`,
        type: 'error',
        message: trans.__(
          'Copilot has stopped and will not restart by itself: %1. Suggestions and explanations are unavailable until the Jupyter server restarts.',
          detail || trans.__('unknown error')
        )
      });
    }
  }
  if (quota && quota.daily_tokens !== null && quota.tokens_left_today === 0) {
    notices.push({
      key: 'quota-reached',
      type: 'warning',
      message: trans.__(
        "Copilot: today's quota of %1 tokens is used up. It renews at %2.",
        quota.daily_tokens.toLocaleString(),
        resetTime(quota, now)
      )
    });
  }
  for (const feature of POLICY_FEATURES) {
    const mode = modes.get(feature) ?? 'on';
    const before = previousModes?.get(feature) ?? 'on';
    if (mode === before && (previousModes !== null || mode === 'on')) {
      continue;
    }
    const label = featureLabel(feature, trans);
    const reason = mode === 'on' ? '' : ruleReason(engine, feature);
    const what =
      mode === 'on'
        ? trans.__('%1: available again (the course rule has ended).', label)
        : mode === 'hint'
          ? trans.__('%1: hints only (course rule).', label)
          : trans.__('%1: turned off (course rule).', label);
    notices.push({
      key: `rule:${feature}:${mode}`,
      type: mode === 'on' ? 'info' : 'warning',
      message: reason ? `${what} ${reason}` : what
    });
  }
  return notices;
}

function ruleReason(engine: IStatusReply | null, feature: PolicyFeature): string {
  const raw = engine?.features?.[feature] as { reason?: unknown } | undefined;
  return typeof raw?.reason === 'string' ? raw.reason : '';
}

/**
 * Shows the notices of each new status reply, one toast per event.
 */
export class CopilotNotifier extends OnceDisposable {
  constructor(options: CopilotNotifier.IOptions) {
    super();
    this._state = options.state;
    this._trans = options.trans;
    this._state.changed.connect(this._onChanged, this);
  }

  protected onDispose(): void {
    this._state.changed.disconnect(this._onChanged, this);
  }

  private _onChanged(): void {
    const engine = this._state.engine;
    if (!engine || engine === this._lastReply) {
      // `changed` also fires for settings and requests in flight: only new replies count.
      return;
    }
    this._lastReply = engine;
    const modes = new Map<PolicyFeature, FeatureMode>(
      POLICY_FEATURES.map(feature => [feature, this._state.featureDecision(feature).mode])
    );
    // A disabled engine (the server turned everything off) is not a course rule
    // starting for each feature: the status item says it; compare rules without it.
    const disabled = engine.state === 'disabled';
    const notices = noticesFor(
      engine,
      this._state.quota,
      disabled ? (this._modes ?? modes) : modes,
      disabled ? (this._modes ?? modes) : this._modes,
      this._trans
    );
    if (!disabled) {
      this._modes = modes;
    }
    for (const notice of notices) {
      // A rule's notice is an event (its start or end), told once by construction;
      // the others are situations, told once while they last.
      if (notice.key.startsWith('rule:') || !this._shown.has(notice.key)) {
        this._show(notice);
      }
    }
    // Forget situations that are over, so they are told again if they come back.
    this._shown = new Set(
      notices.map(notice => notice.key).filter(key => !key.startsWith('rule:'))
    );
  }

  private _show(notice: INotice): void {
    const command = notice.copy;
    const actions = command
      ? [
          {
            label: this._trans.__('Copy the command'),
            caption: command,
            callback: () => void navigator.clipboard?.writeText(command)
          }
        ]
      : [];
    Notification.emit(notice.message, notice.type, {
      autoClose: notice.type === 'error' ? false : 10_000,
      actions
    });
  }

  private _state: CopilotState;
  private _trans: TranslationBundle;
  private _lastReply: IStatusReply | null = null;
  private _modes: Map<PolicyFeature, FeatureMode> | null = null;
  private _shown = new Set<string>();
}

export namespace CopilotNotifier {
  export interface IOptions {
    state: CopilotState;
    trans: TranslationBundle;
  }
}
