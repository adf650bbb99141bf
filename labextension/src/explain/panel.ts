/**
 * The explanation panel (right sidebar): the answer as rendered markdown while it
 * streams, Stop and Copy, which model wrote it, and a reminder that it may be wrong.
 *
 * One panel, reused: a new explanation replaces (and stops) the previous one.
 */

import { Clipboard } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IRenderMime, IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import type { TranslationBundle } from '@jupyterlab/translation';
import { copyIcon, LabIcon, stopIcon } from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import type { ISource } from '../api';
import { explainIcon } from '../icons';
import type { FeatureMode } from '../state';
import { Conversation } from './conversation';
import type { Explanation, IExplanationFailure } from './explanation';
import { MAX_QUESTION_CHARS } from './request';
import { hardenRendered, safeMarkdown } from './sanitize';

/**
 * Re-render the markdown at most every 100 ms while it streams: often enough to look
 * live, rarely enough that parsing and highlighting a long answer stays cheap.
 */
export const RENDER_INTERVAL_MS = 100;

/**
 * Follow the end of the answer while it grows, unless the student scrolled up to
 * read (then leave the view where it is).
 */
const STICK_TO_BOTTOM_PX = 24;

export const EXPLAIN_PANEL_ID = 'jp-copilot-explain-panel';

export class ExplainPanel extends Panel {
  constructor(options: ExplainPanel.IOptions) {
    super();
    this._trans = options.trans;
    this._describeModel = options.describeModel;
    const trans = this._trans;
    this.id = EXPLAIN_PANEL_ID;
    this.addClass('jp-copilot-ExplainPanel');
    this.title.icon = explainIcon;
    this.title.caption = trans.__('Copilot explanations');
    this.node.setAttribute('aria-label', trans.__('Copilot explanations'));
    // A named landmark (an aria-label needs a role), reachable by screen-reader users.
    this.node.setAttribute('role', 'region');

    const header = new Widget();
    header.addClass('jp-copilot-ExplainPanel-header');
    this._heading = document.createElement('h2');
    this._heading.className = 'jp-copilot-ExplainPanel-title';
    const actions = document.createElement('div');
    actions.className = 'jp-copilot-ExplainPanel-actions';
    this._stopButton = actionButton(stopIcon, trans.__('Stop'), trans.__('Stop writing'));
    this._stopButton.classList.add('jp-copilot-ExplainPanel-stop');
    this._copyButton = actionButton(
      copyIcon,
      trans.__('Copy'),
      trans.__('Copy the explanation (markdown)')
    );
    this._copyButton.classList.add('jp-copilot-ExplainPanel-copy');
    this._stopButton.addEventListener('click', () => this._explanation?.stop());
    this._copyButton.addEventListener('click', () => this._copy());
    actions.append(this._stopButton, this._copyButton);
    const titleRow = document.createElement('div');
    titleRow.className = 'jp-copilot-ExplainPanel-titleRow';
    titleRow.append(this._heading, actions);
    this._subject = document.createElement('p');
    this._subject.className = 'jp-copilot-ExplainPanel-subject';
    this._status = document.createElement('p');
    this._status.className = 'jp-copilot-ExplainPanel-status';
    this._status.setAttribute('role', 'status');
    header.node.append(titleRow, this._subject, this._status);

    // JupyterLab's own markdown renderer: the same look as markdown cells, code
    // highlighted by the editor's languages, HTML sanitized (the model's text is
    // never trusted).
    this._rendermime = options.rendermime;
    this._answer = options.rendermime.createRenderer('text/markdown');
    this._answer.addClass('jp-copilot-ExplainPanel-answer');
    this._answer.addClass('jp-RenderedHTMLCommon');

    // Earlier exchanges of the conversation, above the answer being written.
    this._thread = new Widget();
    this._thread.addClass('jp-copilot-ExplainPanel-thread');
    this._question = document.createElement('p');
    this._question.className = 'jp-copilot-ExplainPanel-question';
    this._thread.node.append(this._question);
    this._sources = new Widget();
    this._sources.addClass('jp-copilot-ExplainPanel-sources');
    this._askForm = this._buildAskForm();

    const footer = new Widget();
    footer.addClass('jp-copilot-ExplainPanel-footer');
    this._modelLine = document.createElement('p');
    this._modelLine.className = 'jp-copilot-ExplainPanel-model';
    this._hintLine = document.createElement('p');
    this._hintLine.className = 'jp-copilot-ExplainPanel-hintNote';
    const warning = document.createElement('p');
    warning.className = 'jp-copilot-ExplainPanel-warning';
    warning.textContent = trans.__(
      'AI-generated: it may be wrong. Check it before you rely on it.'
    );
    footer.node.append(this._modelLine, this._hintLine, warning);
    this._footer = footer;

    this._leftOutLine = document.createElement('p');
    this._leftOutLine.className = 'jp-copilot-ExplainPanel-leftOut';
    footer.node.prepend(this._leftOutLine);

    this.addWidget(header);
    this.addWidget(this._thread);
    this.addWidget(this._answer);
    this.addWidget(this._sources);
    this.addWidget(this._askForm);
    this.addWidget(footer);
    this._update();
  }

  /** The panel's conversation (what a follow-up sends back as history). */
  readonly conversation = new Conversation();

  /** Called with the student's question (set by the Explainer). */
  onAsk: ((question: string) => void) | null = null;

  /**
   * Open a cited course file at its cell; false when the student's server cannot
   * reach it (the passage is then shown inline). Set by the Explainer.
   */
  openSource: ((source: ISource) => Promise<boolean>) | null = null;

  /** Show what changed in the conversation (older turns left out by the server). */
  refreshConversation(): void {
    this._update();
  }

  /** The policy's mode for questions: the form hides when it is `off`. */
  setAskMode(mode: FeatureMode): void {
    this._askForm.setHidden(mode === 'off');
    this._askInput.placeholder =
      mode === 'hint'
        ? this._trans.__('Ask a question (hint mode: no solution code)…')
        : this._trans.__('Ask a question about this notebook…');
    this._askForm.node.dataset.mode = mode;
  }

  /** Put the keyboard focus in the question box. */
  focusQuestion(): void {
    this._askInput.focus();
  }

  /** The explanation on display (null before the first one). */
  get explanation(): Explanation | null {
    return this._explanation;
  }

  /**
   * Show `explanation` as it streams. The previous one, if still running, is stopped:
   * nobody reads two answers at once, and the engine serves one request at a time.
   */
  showExplanation(explanation: Explanation, options: { followUp?: boolean } = {}): void {
    const previous = this._explanation;
    if (options.followUp && previous?.isOver && previous.text.trim()) {
      this._archive(previous);
    } else if (!options.followUp) {
      this._clearThread();
    }
    this._release();
    this._explanation = explanation;
    this._notice = null;
    explanation.changed.connect(this._onChanged, this);
    this._update();
    void this._renderAnswer();
  }

  /**
   * Say something instead of an explanation ("this cell is empty"…).
   */
  showNotice(message: string): void {
    this._clearThread();
    this._release();
    this._notice = message;
    this._update();
    void this._renderAnswer();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._release();
    window.clearTimeout(this._renderTimer);
    super.dispose();
  }

  private _release(): void {
    const previous = this._explanation;
    if (previous) {
      previous.changed.disconnect(this._onChanged, this);
      previous.dispose();
      this._explanation = null;
    }
  }

  private _onChanged(): void {
    this._update();
    const explanation = this._explanation;
    if (explanation?.isOver) {
      // The final text at once (it may differ from the last chunk: trimmed).
      window.clearTimeout(this._renderTimer);
      this._renderTimer = 0;
      void this._renderAnswer();
    } else if (!this._renderTimer) {
      this._renderTimer = window.setTimeout(() => {
        this._renderTimer = 0;
        void this._renderAnswer();
      }, RENDER_INTERVAL_MS);
    }
  }

  /**
   * Render the latest text. Renders are asynchronous (markdown parsing, code
   * highlighting): never run two at once, or an older text could land last.
   */
  private async _renderAnswer(): Promise<void> {
    if (this._rendering) {
      this._renderAgain = true;
      return;
    }
    this._rendering = true;
    try {
      do {
        this._renderAgain = false;
        const text = this._explanation?.text ?? '';
        if (text === this._renderedText) {
          continue;
        }
        const node = this._answer.node;
        const atBottom =
          node.scrollHeight - node.scrollTop - node.clientHeight < STICK_TO_BOTTOM_PX;
        await renderSafely(this._answer, text);
        this._renderedText = text;
        this._answer.node.dataset.length = String(text.length);
        if (atBottom) {
          node.scrollTop = node.scrollHeight;
        }
      } while (this._renderAgain && !this.isDisposed);
    } catch (error) {
      console.error('jupyter-copilot: could not render the explanation', error);
    } finally {
      this._rendering = false;
    }
  }

  /**
   * Everything but the answer itself: heading, subject, status, buttons, model.
   */
  private _update(): void {
    const trans = this._trans;
    const explanation = this._explanation;
    const subject = explanation?.subject;
    const state = explanation?.status ?? (this._notice !== null ? 'notice' : 'idle');
    this.node.dataset.state = state;
    this.node.dataset.mode = subject?.mode ?? 'on';

    const hint = subject?.mode === 'hint';
    this._heading.textContent = hint ? trans.__('Hint') : trans.__('Explanation');

    if (subject?.kind === 'question') {
      const notebook = PathExt.basename(subject.path);
      this._subject.textContent = notebook
        ? trans.__('Question about %1', notebook)
        : trans.__('Question');
    } else if (subject) {
      const notebook = PathExt.basename(subject.path);
      this._subject.textContent =
        subject.kind === 'error'
          ? trans.__(
              '%1 in cell %2 of %3',
              errorSummary(subject.ename ?? '', subject.evalue ?? ''),
              subject.cellNumber,
              notebook
            )
          : trans.__('Cell %1 of %2', subject.cellNumber, notebook);
    } else {
      this._subject.textContent = '';
    }
    this._status.textContent = this._statusText();

    const over = !explanation || explanation.isOver;
    this._stopButton.disabled = over;
    this._copyButton.disabled = !explanation?.text;
    this._answer.node.setAttribute('aria-busy', over ? 'false' : 'true');
    this._answer.setHidden(!explanation);

    const model = explanation?.model ? this._describeModel(explanation.model) : null;
    this._modelLine.textContent = model ? trans.__('Written by %1', model) : '';
    this._modelLine.dataset.model = explanation?.model ?? '';
    this._hintLine.textContent = hint
      ? trans.__('Hint mode is on for this course: the copilot guides you without the solution.')
      : '';
    this._footer.setHidden(!explanation);

    this._question.textContent = subject?.question ?? '';
    this._question.hidden = !subject?.question;
    this._renderSources(this._sources.node, explanation?.sources ?? []);
    const leftOut = this.conversation.leftOut;
    this._leftOutLine.textContent =
      subject?.kind === 'question' && leftOut > 0
        ? trans._n(
            'The oldest message of this conversation was left out (length limit).',
            'The %1 oldest messages of this conversation were left out (length limit).',
            leftOut
          )
        : '';
    this._askButton.disabled = !(explanation?.isOver ?? true);
  }

  private _buildAskForm(): Widget {
    const trans = this._trans;
    const form = new Widget({ node: document.createElement('form') });
    form.addClass('jp-copilot-ExplainPanel-ask');
    this._askInput = document.createElement('textarea');
    this._askInput.className = 'jp-copilot-ExplainPanel-askInput';
    this._askInput.rows = 2;
    this._askInput.maxLength = MAX_QUESTION_CHARS;
    this._askInput.setAttribute('aria-label', trans.__('Your question'));
    this._askButton = document.createElement('button');
    this._askButton.type = 'submit';
    this._askButton.className =
      'jp-Button jp-mod-styled jp-mod-accept jp-copilot-ExplainPanel-askButton';
    this._askButton.textContent = trans.__('Ask');
    form.node.append(this._askInput, this._askButton);
    const submit = () => {
      const question = this._askInput.value.trim();
      if (question && this.onAsk) {
        this._askInput.value = '';
        this.onAsk(question);
      }
    };
    form.node.addEventListener('submit', event => {
      event.preventDefault();
      submit();
    });
    this._askInput.addEventListener('keydown', event => {
      // Enter asks; Shift+Enter is a new line (as in chat boxes).
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        event.stopPropagation();
        submit();
      }
    });
    return form;
  }

  /**
   * Keep a finished exchange above the next one: the question, the answer (rendered
   * again, safely) and its sources.
   */
  private _archive(explanation: Explanation): void {
    const turn = document.createElement('section');
    turn.className = 'jp-copilot-ExplainPanel-turn';
    const question = explanation.subject.question;
    if (question) {
      const asked = document.createElement('p');
      asked.className = 'jp-copilot-ExplainPanel-question';
      asked.textContent = question;
      turn.append(asked);
    }
    const answer = this._rendermime.createRenderer('text/markdown');
    answer.addClass('jp-RenderedHTMLCommon');
    answer.addClass('jp-copilot-ExplainPanel-pastAnswer');
    void renderSafely(answer, explanation.text);
    turn.append(answer.node);
    const sources = document.createElement('div');
    sources.className = 'jp-copilot-ExplainPanel-sources';
    this._renderSources(sources, explanation.sources);
    turn.append(sources);
    this._thread.node.insertBefore(turn, this._question);
  }

  private _clearThread(): void {
    this._thread.node
      .querySelectorAll('.jp-copilot-ExplainPanel-turn')
      .forEach(turn => turn.remove());
  }

  private _renderSources(container: HTMLElement, sources: readonly ISource[]): void {
    const key = JSON.stringify(sources);
    if (container.dataset.key === key) {
      return;
    }
    container.dataset.key = key;
    container.replaceChildren();
    if (!sources.length) {
      return;
    }
    const trans = this._trans;
    const heading = document.createElement('h3');
    heading.className = 'jp-copilot-ExplainPanel-sourcesTitle';
    heading.textContent = trans.__('From your course');
    const list = document.createElement('ol');
    sources.forEach(source => {
      const item = document.createElement('li');
      item.className = 'jp-copilot-ExplainPanel-source';
      const link = document.createElement('button');
      link.type = 'button';
      link.className = 'jp-copilot-ExplainPanel-sourceLink';
      link.dataset.path = source.path;
      link.dataset.cell = String(source.cell_index ?? '');
      const name = PathExt.basename(source.path);
      const where =
        source.cell_index !== null && source.cell_index !== undefined
          ? trans.__('%1, cell %2', name, source.cell_index + 1)
          : name;
      link.textContent = source.title ? `${source.title} (${where})` : where;
      link.title = trans.__('Open %1 in the course', source.path);
      const excerpt = document.createElement('blockquote');
      excerpt.className = 'jp-copilot-ExplainPanel-excerpt';
      excerpt.textContent = source.excerpt ?? '';
      excerpt.hidden = true;
      link.addEventListener('click', async () => {
        const opened = this.openSource ? await this.openSource(source).catch(() => false) : false;
        if (!opened) {
          // Not reachable from this server: show the passage here instead.
          excerpt.hidden = !excerpt.hidden;
        }
      });
      item.append(link, excerpt);
      list.append(item);
    });
    container.append(heading, list);
  }

  private _statusText(): string {
    const trans = this._trans;
    const explanation = this._explanation;
    if (!explanation) {
      return (
        this._notice ??
        trans.__(
          'Select a code cell and choose "Explain This Cell" (cell toolbar, right-click menu or E, E), or click "Explain this error" under an error.'
        )
      );
    }
    switch (explanation.status) {
      case 'waiting':
        return trans.__('Reading the code… (a few seconds)');
      case 'streaming':
        return trans.__('Writing…');
      case 'done': {
        if (!explanation.text.trim()) {
          return trans.__('The model gave no answer. Try again.');
        }
        const ms = explanation.timing?.total_ms;
        return ms ? trans.__('Done in %1 s.', (ms / 1000).toFixed(1)) : trans.__('Done.');
      }
      case 'stopped':
        return trans.__('Stopped.');
      case 'failed':
        return this._failureText(explanation.failure);
    }
  }

  private _failureText(failure: IExplanationFailure | null): string {
    const trans = this._trans;
    const message = failure?.message ?? '';
    switch (failure?.status) {
      case 403:
        return trans.__('Not available to you right now: %1', message);
      case 413:
        return trans.__('This cell is too long to be explained.');
      case 429:
        return trans.__('The copilot is busy with other requests. Try again in a moment.');
      case 503:
        return trans.__('The model is still loading. Try again in a few seconds.');
      default:
        return trans.__('The explanation failed: %1', message);
    }
  }

  private _copy(): void {
    const text = this._explanation?.text;
    if (!text) {
      return;
    }
    Clipboard.copyToSystem(text);
    const label = this._copyButton.querySelector('.jp-copilot-ExplainPanel-buttonLabel');
    if (label) {
      label.textContent = this._trans.__('Copied');
      window.setTimeout(() => {
        label.textContent = this._trans.__('Copy');
      }, 1500);
    }
  }

  private _rendermime: IRenderMimeRegistry;
  private _thread: Widget;
  private _question: HTMLElement;
  private _sources: Widget;
  private _askForm: Widget;
  private _askInput!: HTMLTextAreaElement;
  private _askButton!: HTMLButtonElement;
  private _leftOutLine: HTMLElement;
  private _trans: TranslationBundle;
  private _describeModel: (id: string) => string;
  private _heading: HTMLElement;
  private _subject: HTMLElement;
  private _status: HTMLElement;
  private _stopButton: HTMLButtonElement;
  private _copyButton: HTMLButtonElement;
  private _answer: IRenderMime.IRenderer;
  private _footer: Widget;
  private _modelLine: HTMLElement;
  private _hintLine: HTMLElement;
  private _explanation: Explanation | null = null;
  private _notice: string | null = null;
  private _renderTimer = 0;
  private _rendering = false;
  private _renderAgain = false;
  private _renderedText: string | null = null;
}

export namespace ExplainPanel {
  export interface IOptions {
    rendermime: IRenderMimeRegistry;
    trans: TranslationBundle;
    /** The model's name for the id a stream reports (the id itself if unknown). */
    describeModel: (id: string) => string;
  }
}

/**
 * Render the model's markdown without anything that loads by itself (sanitize.ts).
 */
async function renderSafely(renderer: IRenderMime.IRenderer, text: string): Promise<void> {
  const model = new MimeModel({ data: { 'text/markdown': safeMarkdown(text) }, trusted: false });
  await renderer.renderModel(model);
  hardenRendered(renderer.node);
}

function actionButton(icon: LabIcon, label: string, title: string): HTMLButtonElement {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'jp-Button jp-mod-minimal jp-mod-small jp-copilot-ExplainPanel-button';
  button.title = title;
  const iconNode = document.createElement('span');
  iconNode.className = 'jp-copilot-ExplainPanel-buttonIcon';
  // Decorative: the label says what the button does.
  iconNode.setAttribute('aria-hidden', 'true');
  icon.element({ container: iconNode, tag: 'span' });
  const text = document.createElement('span');
  text.className = 'jp-copilot-ExplainPanel-buttonLabel';
  text.textContent = label;
  button.append(iconNode, text);
  return button;
}

/**
 * `KeyError: 'x'`, shortened: an evalue can be a whole data frame's repr.
 */
function errorSummary(ename: string, evalue: string): string {
  const value = evalue.split('\n')[0];
  const short = value.length > 80 ? value.slice(0, 79) + '…' : value;
  return short ? `${ename}: ${short}` : ename;
}
