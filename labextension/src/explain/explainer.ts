/**
 * The explain feature's glue: which kinds the server's policy allows, the language,
 * and "explain this cell / this error" from a request to the panel.
 */

import type { Cell } from '@jupyterlab/cells';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import type { CopilotState, IFeatureDecision } from '../state';
import { Explanation } from './explanation';
import { ExplainLanguage, explainLanguage } from './language';
import type { ExplainPanel } from './panel';
import { buildExplainRequest, ExplainKind, ExplainProblem, FEATURE_OF_KIND } from './request';

export class Explainer implements IDisposable {
  constructor(options: Explainer.IOptions) {
    this._state = options.state;
    this._panel = options.panel;
    this._translator = options.translator;
    this._trans = options.trans;
    this._openPanel = options.openPanel;
    this._policyKey = this._currentPolicyKey();
    this._state.changed.connect(this._onStateChanged, this);
  }

  /**
   * Emitted when the server's policy for explanations changes (an exam starts, a
   * course switches to hints): buttons and commands then show, hide or relabel.
   */
  get policyChanged(): ISignal<this, void> {
    return this._policyChanged;
  }

  /** What the server's policy says of this kind of explanation, for this user. */
  decision(kind: ExplainKind): IFeatureDecision {
    return this._state.featureDecision(FEATURE_OF_KIND[kind]);
  }

  /** Whether to offer this kind at all (hidden when the policy turns it off). */
  isAllowed(kind: ExplainKind): boolean {
    return this.decision(kind).mode !== 'off';
  }

  /** The language to ask for: the user's setting, else JupyterLab's language. */
  get language(): ExplainLanguage {
    return explainLanguage(this._state.settings.explainLanguage, this._translator.languageCode);
  }

  /**
   * Explain `cell` of `notebook` (its code, or its error) in the panel, which opens.
   * Resolves when the answer is complete, stopped or failed; null when nothing was
   * sent (the panel says why).
   */
  async explain(
    kind: ExplainKind,
    notebook: NotebookPanel,
    cell: Cell
  ): Promise<Explanation | null> {
    const trans = this._trans;
    this._openPanel();
    const decision = this.decision(kind);
    if (decision.mode === 'off') {
      // Reached only through a stale button: the commands are disabled then.
      this._panel.showNotice(
        trans.__('Not available to you right now: %1', decision.reason || trans.__('server policy'))
      );
      return null;
    }
    const built = buildExplainRequest(kind, notebook, cell, this.language);
    if ('problem' in built) {
      this._panel.showNotice(this._problemText(built.problem));
      return null;
    }
    const { request } = built;
    const explanation = new Explanation(request, {
      kind,
      mode: decision.mode,
      cellNumber: notebook.content.widgets.indexOf(cell) + 1,
      path: notebook.context.path,
      ename: request.error?.ename,
      evalue: request.error?.evalue
    });
    this._panel.showExplanation(explanation);
    await explanation.start();
    const status = explanation.failure?.status;
    if (status === 403 || status === 503) {
      // The policy or the engine changed since the last status poll: ask now, so
      // that the buttons and the status bar tell the truth.
      void this._state.refresh().catch(() => undefined);
    }
    return explanation;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._state.changed.disconnect(this._onStateChanged, this);
    Signal.clearData(this);
  }

  private _problemText(problem: ExplainProblem): string {
    const trans = this._trans;
    switch (problem) {
      case 'not-code':
        return trans.__('Only code cells can be explained.');
      case 'empty':
        return trans.__('This cell is empty: there is nothing to explain.');
      case 'too-long':
        return trans.__('This cell is too long to be explained.');
      case 'no-error':
        return trans.__('This cell shows no error.');
    }
  }

  private _onStateChanged(): void {
    const key = this._currentPolicyKey();
    if (key !== this._policyKey) {
      this._policyKey = key;
      this._policyChanged.emit();
    }
  }

  private _currentPolicyKey(): string {
    return JSON.stringify([this.decision('cell'), this.decision('error')]);
  }

  private _state: CopilotState;
  private _panel: ExplainPanel;
  private _translator: ITranslator;
  private _trans: TranslationBundle;
  private _openPanel: () => void;
  private _policyKey: string;
  private _isDisposed = false;
  private _policyChanged = new Signal<this, void>(this);
}

export namespace Explainer {
  export interface IOptions {
    state: CopilotState;
    panel: ExplainPanel;
    translator: ITranslator;
    trans: TranslationBundle;
    /** Show the panel (it lives in the right sidebar). */
    openPanel: () => void;
  }
}
