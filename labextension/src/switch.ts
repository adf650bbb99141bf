/**
 * One switch for completions. JupyterLab has its own (Settings → Inline Completer →
 * our provider → "enabled"); ours is the Copilot `enabled` setting that the status
 * item and the model card flip. Each follows the other, so they never disagree:
 * turned off in either place, the provider is off in both.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { PartialJSONObject } from '@lumino/coreutils';

import { OnceDisposable } from './disposable';
import type { CopilotState } from './state';

/** The plugin whose `providers` setting holds JupyterLab's switch of each provider. */
export const INLINE_COMPLETER_PLUGIN = '@jupyterlab/completer-extension:inline-completer';

type ProvidersSetting = { [provider: string]: { enabled?: boolean; [key: string]: unknown } };

export class CompletionSwitch extends OnceDisposable {
  constructor(options: CompletionSwitch.IOptions) {
    super();
    this._state = options.state;
    this._inline = options.inlineSettings;
    this._provider = options.providerId;
    this._state.changed.connect(this._copilotToInline, this);
    this._inline.changed.connect(this._inlineToCopilot, this);
    // At start-up they may disagree (an older version, a hand-edited file): off wins,
    // so nothing is sent that the user turned off somewhere.
    if (this._inlineEnabled() === false && this._state.enabled) {
      this._inlineToCopilot();
    } else {
      this._copilotToInline();
    }
  }

  protected onDispose(): void {
    this._state.changed.disconnect(this._copilotToInline, this);
    this._inline.changed.disconnect(this._inlineToCopilot, this);
  }

  /** JupyterLab's switch of our provider (undefined when never set: its default, on). */
  private _inlineEnabled(): boolean | undefined {
    const providers = (this._inline.composite.providers ?? {}) as ProvidersSetting;
    const value = providers[this._provider]?.enabled;
    return typeof value === 'boolean' ? value : undefined;
  }

  private _copilotToInline(): void {
    const enabled = this._state.enabled;
    if ((this._inlineEnabled() ?? true) === enabled) {
      return;
    }
    const user = (this._inline.user.providers ?? {}) as ProvidersSetting;
    const composite = (this._inline.composite.providers ?? {}) as ProvidersSetting;
    const providers: ProvidersSetting = {
      ...user,
      [this._provider]: { ...composite[this._provider], ...user[this._provider], enabled }
    };
    this._inline.set('providers', providers as PartialJSONObject).catch(error => {
      console.warn('jupyter-copilot: could not update the Inline Completer setting', error);
    });
  }

  private _inlineToCopilot(): void {
    const enabled = this._inlineEnabled();
    if (enabled === undefined || enabled === this._state.enabled) {
      return;
    }
    this._state.setEnabled(enabled).catch(error => {
      console.warn('jupyter-copilot: could not update the Copilot setting', error);
    });
  }

  private _state: CopilotState;
  private _inline: ISettingRegistry.ISettings;
  private _provider: string;
}

export namespace CompletionSwitch {
  export interface IOptions {
    state: CopilotState;
    /** The loaded settings of `INLINE_COMPLETER_PLUGIN`. */
    inlineSettings: ISettingRegistry.ISettings;
    /** Our provider's identifier in `providers`. */
    providerId: string;
  }
}
