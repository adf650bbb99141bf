/**
 * The status bar item (engine state and model name) and the model card it opens,
 * with the switch that turns completions on or off.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import type { IModelCard } from './api';
import { copilotIcon } from './icons';
import { POLICY_FEATURES } from './state';
import type { CopilotState, DisplayState, IQuota, PolicyFeature } from './state';

/**
 * The words for each state. A function so that every string goes through the
 * translation bundle where the extractor (scripts/i18n.mjs) can see it.
 */
export function stateLabel(state: DisplayState, trans: TranslationBundle): string {
  switch (state) {
    case 'starting':
      return trans.__('starting…');
    case 'ready':
      return trans.__('ready');
    case 'busy':
      return trans.__('busy');
    case 'error':
      return trans.__('error');
    case 'disabled':
      return trans.__('disabled');
    case 'off':
      return trans.__('off');
    case 'unreachable':
      return trans.__('unreachable');
  }
}

export function featureLabel(feature: PolicyFeature, trans: TranslationBundle): string {
  switch (feature) {
    case 'completion':
      return trans.__('Completions');
    case 'explain_cell':
      return trans.__('Explain this cell');
    case 'explain_error':
      return trans.__('Explain this error');
  }
}

/**
 * One line per feature that the server's policy limits for this user (an exam, hints
 * only during practical work), with the reason the teacher gave. Empty when all is on.
 */
export function policyLines(state: CopilotState, trans: TranslationBundle): string[] {
  const lines: string[] = [];
  for (const feature of POLICY_FEATURES) {
    const { mode, reason } = state.featureDecision(feature);
    if (mode === 'on') {
      continue;
    }
    const label = featureLabel(feature, trans);
    const what =
      mode === 'off'
        ? trans.__('%1: turned off for you by the server', label)
        : trans.__('%1: hints only', label);
    lines.push(reason ? `${what} (${reason})` : what);
  }
  return lines;
}

/**
 * Today's token allowance in words, or null when there is none (a local engine,
 * staff, no quota configured).
 */
export function quotaLine(quota: IQuota | null, trans: TranslationBundle): string | null {
  if (!quota || quota.daily_tokens === null || quota.tokens_left_today === null) {
    return null;
  }
  const hours = Math.max(1, Math.round(quota.resets_in_seconds / 3600));
  return trans.__(
    'Today: %1 of %2 tokens left (renewed in %3 h)',
    quota.tokens_left_today.toLocaleString(),
    quota.daily_tokens.toLocaleString(),
    hours
  );
}

/**
 * The status bar item: `Copilot: ready · SmolLM2 135M`. Click (or Enter) opens the
 * model card.
 */
export class CopilotStatusItem extends Widget {
  constructor(options: CopilotStatusItem.IOptions) {
    super();
    this._state = options.state;
    this._trans = options.trans;
    this._onOpen = options.onOpen;
    this.addClass('jp-copilot-StatusItem');
    this.node.setAttribute('role', 'button');
    // Enter or Space opens the model card, a dialog.
    this.node.setAttribute('aria-haspopup', 'dialog');
    this.node.tabIndex = 0;
    const icon = document.createElement('span');
    icon.className = 'jp-copilot-StatusItem-icon';
    icon.setAttribute('aria-hidden', 'true');
    copilotIcon.element({ container: icon, tag: 'span' });
    this._label = document.createElement('span');
    this._label.className = 'jp-copilot-StatusItem-label';
    this.node.append(icon, this._label);
    this._state.changed.connect(this._render, this);
    this._render();
  }

  handleEvent(event: Event): void {
    if (
      event.type === 'click' ||
      (event.type === 'keydown' && ['Enter', ' '].includes((event as KeyboardEvent).key))
    ) {
      event.preventDefault();
      this._onOpen();
    }
  }

  protected onAfterAttach(): void {
    this.node.addEventListener('click', this);
    this.node.addEventListener('keydown', this);
  }

  protected onBeforeDetach(): void {
    this.node.removeEventListener('click', this);
    this.node.removeEventListener('keydown', this);
  }

  dispose(): void {
    this._state.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    const trans = this._trans;
    const state = this._state.displayState;
    const model = this._state.model;
    const text = trans.__('Copilot: %1', stateLabel(state, trans));
    this._label.textContent = model && state !== 'unreachable' ? `${text} · ${model.name}` : text;
    this.node.dataset.state = state;
    const lines = [
      model ? trans.__('Model: %1', model.name) : trans.__('No model information yet'),
      ...policyLines(this._state, trans),
      quotaLine(this._state.quota, trans) ?? '',
      this._state.lastError ?? '',
      trans.__('Click for the model card and to turn completions on or off.')
    ];
    this.node.title = lines.filter(Boolean).join('\n');
  }

  private _state: CopilotState;
  private _trans: TranslationBundle;
  private _label: HTMLElement;
  private _onOpen: () => void;
}

export namespace CopilotStatusItem {
  export interface IOptions {
    state: CopilotState;
    trans: TranslationBundle;
    onOpen: () => void;
  }
}

/**
 * What the model card shows: what runs, under which licence, how open it is, and
 * the switch for completions. Updated live while open (state, toggle).
 */
export class ModelCardBody extends Widget {
  constructor(options: ModelCardBody.IOptions) {
    super();
    this._state = options.state;
    this._trans = options.trans;
    this.addClass('jp-copilot-ModelCard');
    this._state.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    this._state.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    const trans = this._trans;
    const state = this._state;
    const model = state.model;
    const node = this.node;
    // Re-rendered at every status change: keep the keyboard focus on the switch if
    // it was there (a lost focus sends keyboard users back to the page's start).
    const switchHadFocus = !!this._checkbox && document.activeElement === this._checkbox;
    node.replaceChildren();

    const status = document.createElement('p');
    status.className = 'jp-copilot-ModelCard-state';
    status.dataset.state = state.displayState;
    status.textContent = trans.__('State: %1', stateLabel(state.displayState, trans));
    node.append(status);
    // What the course policy limits, and why: students must not wonder whether
    // the assistant is broken when a teacher turned it off for an exam.
    const limits = policyLines(state, trans);
    if (limits.length) {
      const list = document.createElement('ul');
      list.className = 'jp-copilot-ModelCard-policy';
      for (const line of limits) {
        const item = document.createElement('li');
        item.textContent = line;
        list.append(item);
      }
      node.append(list);
    }
    const quota = quotaLine(state.quota, trans);
    if (quota) {
      const p = document.createElement('p');
      p.className = 'jp-copilot-ModelCard-quota';
      p.textContent = quota;
      node.append(p);
    }
    const detail = state.lastError ?? state.engine?.detail;
    if (detail) {
      const p = document.createElement('p');
      p.className = 'jp-copilot-ModelCard-detail';
      p.textContent = detail;
      node.append(p);
    }

    // The switch first: it is what most people open this card for.
    const toggle = document.createElement('label');
    toggle.className = 'jp-copilot-ModelCard-toggle';
    const checkbox = document.createElement('input');
    checkbox.type = 'checkbox';
    checkbox.checked = state.enabled;
    checkbox.addEventListener('change', () => {
      void state.setEnabled(checkbox.checked).catch(error => {
        console.error('jupyter-copilot: could not save the setting', error);
        checkbox.checked = state.enabled;
      });
    });
    toggle.append(checkbox, document.createTextNode(' ' + trans.__('Enable completions')));
    node.append(toggle);
    this._checkbox = checkbox;
    if (switchHadFocus) {
      checkbox.focus();
    }

    if (model) {
      // Where the code goes, before the details (the dialog may scroll).
      node.append(this._privacyNote(model));
      node.append(this._table(model));
    } else {
      const p = document.createElement('p');
      p.textContent = trans.__('The server has not described its model yet.');
      node.append(p);
    }
  }

  private _table(model: IModelCard): HTMLTableElement {
    const trans = this._trans;
    const table = document.createElement('table');
    table.className = 'jp-copilot-ModelCard-table';
    const row = (label: string, value: string | Node | null | undefined) => {
      if (value === null || value === undefined || value === '') {
        return;
      }
      const tr = table.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = label;
      const td = tr.insertCell();
      td.append(value);
      tr.prepend(th);
    };
    const openness = (value: boolean | null | undefined) =>
      value === true ? trans.__('yes') : value === false ? trans.__('no') : trans.__('unknown');

    row(trans.__('Model'), model.name);
    row(trans.__('Identifier'), model.id);
    row(trans.__('Family'), model.family);
    row(trans.__('Parameters'), model.parameters);
    row(trans.__('Quantization'), model.quantization);
    row(trans.__('Engine'), model.engine);
    let licence: string | Node | null | undefined = model.licence;
    if (model.licence_url) {
      const link = document.createElement('a');
      link.href = model.licence_url;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      link.textContent = model.licence || model.licence_url;
      licence = link;
    }
    row(trans.__('Licence'), licence);
    row(trans.__('Open weights'), openness(model.open_weights));
    row(trans.__('Open training code'), openness(model.open_code));
    row(trans.__('Open training data'), openness(model.open_data));
    row(trans.__('File'), model.path);
    row(trans.__('Size'), model.size_bytes ? formatBytes(model.size_bytes) : null);
    row(trans.__('Notes'), model.notes);
    return table;
  }

  private _privacyNote(model: IModelCard): HTMLElement {
    const trans = this._trans;
    const p = document.createElement('p');
    p.className = 'jp-copilot-ModelCard-privacy';
    const local = !model.engine || ['llama_cpp', 'ctransformers'].includes(model.engine);
    p.textContent = local
      ? trans.__('Suggestions are computed on this Jupyter server: your code is sent nowhere else.')
      : trans.__(
          'Suggestions are computed by the model server that your administrators configured; your code is sent to it and nowhere else.'
        );
    return p;
  }

  private _state: CopilotState;
  private _trans: TranslationBundle;
  private _checkbox: HTMLInputElement | null = null;
}

export namespace ModelCardBody {
  export interface IOptions {
    state: CopilotState;
    trans: TranslationBundle;
  }
}

/**
 * Open the model card as a dialog.
 */
export async function showModelCard(state: CopilotState, trans: TranslationBundle): Promise<void> {
  void state.refresh().catch(() => undefined);
  const body = new ModelCardBody({ state, trans });
  await showDialog({
    title: trans.__('Copilot model'),
    body,
    buttons: [Dialog.okButton({ label: trans.__('Close') })],
    hasClose: true
  });
  body.dispose();
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}
