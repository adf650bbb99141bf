/**
 * The explain feature's glue: which kinds the server's policy allows, the language,
 * and "explain this cell / this error" from a request to the panel.
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { Cell } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import { ISignal, Signal } from '@lumino/signaling';

import { OnceDisposable } from '../disposable';
import type { ISource } from '../api';
import type { CopilotState, IFeatureDecision } from '../state';
import { Explanation } from './explanation';
import { ExplainLanguage, explainLanguage } from './language';
import type { ExplainPanel } from './panel';
import {
  buildExplainRequest,
  buildQuestionRequest,
  ExplainKind,
  ExplainProblem,
  FEATURE_OF_KIND
} from './request';

export class Explainer extends OnceDisposable {
  constructor(options: Explainer.IOptions) {
    super();
    this._state = options.state;
    this._panel = options.panel;
    this._translator = options.translator;
    this._trans = options.trans;
    this._openPanel = options.openPanel;
    this._app = options.app ?? null;
    this._tracker = options.tracker ?? null;
    this._policyKey = this._currentPolicyKey();
    this._state.changed.connect(this._onStateChanged, this);
    this._panel.onAsk = question => void this.ask(question);
    this._panel.openSource = source => this.openSource(source);
    this._panel.setAskMode(this.decision('question').mode);
  }

  /**
   * Open the panel for a free question (no explanation needed first), the focus in
   * its question box.
   */
  openForQuestion(): void {
    this._openPanel();
    this._panel.focusQuestion();
  }

  /**
   * Ask a question in the panel: a follow-up of what it shows (its conversation is
   * sent as history), about the current notebook and its active cell.
   */
  async ask(question: string): Promise<Explanation | null> {
    this._openPanel();
    const decision = this.decision('question');
    if (decision.mode === 'off') {
      this._panel.showNotice(
        this._trans.__(
          'Not available to you right now: %1',
          decision.reason || this._trans.__('server policy')
        )
      );
      return null;
    }
    this._remember(this._panel.explanation);
    const notebook = this._tracker?.currentWidget ?? null;
    const cell = notebook?.content.activeCell ?? null;
    const conversation = this._panel.conversation;
    const request = buildQuestionRequest(
      question,
      notebook,
      cell,
      this.language,
      conversation.turns
    );
    const explanation = new Explanation(request, {
      kind: 'question',
      mode: decision.mode,
      cellNumber: notebook && cell ? notebook.content.widgets.indexOf(cell) + 1 : 0,
      path: notebook?.context.path ?? '',
      question
    });
    this._panel.showExplanation(explanation, { followUp: true });
    await explanation.start();
    conversation.noteServerDropped(explanation.historyDropped);
    this._panel.refreshConversation();
    return explanation;
  }

  /**
   * Open a cited course file at its cell, if the student's server has it; false
   * otherwise (the panel then shows the passage inline).
   */
  async openSource(source: ISource): Promise<boolean> {
    const app = this._app;
    if (!app || !source.path) {
      return false;
    }
    try {
      await app.serviceManager.contents.get(source.path, { content: false });
    } catch {
      return false;
    }
    const widget = (await app.commands.execute('docmanager:open', {
      path: source.path
    })) as NotebookPanel | undefined;
    const index = source.cell_index;
    if (widget && index !== null && index !== undefined && 'content' in widget) {
      await widget.context?.ready;
      const notebook = widget.content;
      if (notebook?.widgets && index < notebook.widgets.length) {
        notebook.activeCellIndex = index;
        await notebook.scrollToItem(index, 'start');
      }
    }
    return true;
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
    this._panel.conversation.clear(); // a new explanation starts a new conversation
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

  protected onDispose(): void {
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

  /**
   * Put the exchange the panel shows into its conversation, once: an explanation
   * ("Explain this error") or an answered question, with the server's signature.
   */
  private _remember(explanation: Explanation | null): void {
    if (!explanation || !explanation.isOver || this._remembered.has(explanation)) {
      return;
    }
    this._remembered.add(explanation);
    const subject = explanation.subject;
    const trans = this._trans;
    const asked =
      subject.question ??
      (subject.kind === 'error'
        ? trans.__('Explain this error: %1: %2', subject.ename ?? '', subject.evalue ?? '')
        : trans.__('Explain this cell'));
    this._panel.conversation.add(asked, explanation.text, explanation.signature);
  }

  private _onStateChanged(): void {
    const key = this._currentPolicyKey();
    if (key !== this._policyKey) {
      this._policyKey = key;
      this._panel.setAskMode(this.decision('question').mode);
      this._policyChanged.emit();
    }
  }

  private _currentPolicyKey(): string {
    return JSON.stringify([
      this.decision('cell'),
      this.decision('error'),
      this.decision('question')
    ]);
  }

  private _app: JupyterFrontEnd | null;
  private _tracker: INotebookTracker | null;
  private _remembered = new WeakSet<Explanation>();
  private _state: CopilotState;
  private _panel: ExplainPanel;
  private _translator: ITranslator;
  private _trans: TranslationBundle;
  private _openPanel: () => void;
  private _policyKey: string;
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
    /** To open cited course notebooks (optional: without it, passages show inline). */
    app?: JupyterFrontEnd;
    /** The current notebook, for free questions. */
    tracker?: INotebookTracker;
  }
}
