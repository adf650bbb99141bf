/**
 * Staff: the course policy of one group in two clicks — per feature on / hints /
 * off, always or in a time window (the policy's timezone, Europe/Paris by default),
 * optionally only for notebooks matching a path pattern, with the reason students
 * see. Saved to the service (applied within seconds, no restart) and shown with the
 * history of every change (who, when, what).
 */

import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import {
  Feature,
  FeatureMode,
  FEATURES,
  getHistory,
  getPolicy,
  IPolicyDescription,
  IPolicyRule,
  IPolicyVersion,
  putPolicy
} from './api';
import { el, labelled, select, table } from './dom';
import { localParts, nextMinutes } from './format';
import { featureLabels, modeLabels } from './labels';

type When = 'always' | 'hour' | 'period';

/** How restrictive a mode is (policy.py's RESTRICTION). */
const STRICTNESS: Record<FeatureMode, number> = { on: 0, hint: 1, off: 2 };

export class PolicyView extends Widget {
  constructor(private readonly trans: TranslationBundle) {
    super();
    this.addClass('jp-copilot-Console-policy');
    const modes = modeLabels(trans);
    const features = featureLabels(trans);
    for (const feature of FEATURES) {
      const allowed: FeatureMode[] =
        feature === 'completion' ? ['on', 'off'] : ['on', 'hint', 'off'];
      this._modes[feature] = select(
        allowed.map(m => ({ value: m, label: modes[m] })),
        'on',
        { 'data-feature': feature, 'aria-label': features[feature] }
      );
      this._modes[feature].onchange = () => {
        this._chosen[feature] = this._modes[feature].value as FeatureMode;
        this.followBounds();
      };
    }
    this._when = select(
      [
        { value: 'always', label: trans.__('always') },
        { value: 'hour', label: trans.__('for the next hour') },
        { value: 'period', label: trans.__('from … to …') }
      ],
      'always',
      { class: 'jp-copilot-Console-when', 'aria-label': trans.__('When') }
    );
    this._when.onchange = () => this.showPeriod();
    const add = el('button', {
      class: 'jp-mod-styled jp-mod-accept',
      text: trans.__('Apply to the course')
    });
    add.onclick = () => void this.addRule();
    this._group.onchange = () => this.drawRules();
    this.node.append(
      el(
        'div',
        { class: 'jp-copilot-Console-controls' },
        labelled(trans.__('Course'), this._group)
      ),
      el(
        'fieldset',
        { class: 'jp-copilot-Console-form' },
        el('legend', { text: trans.__('New rule') }),
        ...FEATURES.map(f => labelled(features[f], this._modes[f])),
        this._boundNote,
        labelled(trans.__('When'), this._when),
        this._period,
        labelled(trans.__('Only notebooks matching (optional)'), this._paths),
        labelled(trans.__('Reason shown to students'), this._reason),
        add
      ),
      this._message,
      el('h3', { text: trans.__('Rules of this course') }),
      this._rules,
      el('h3', { text: trans.__('History of changes') }),
      this._history
    );
    this._period.append(
      labelled(trans.__('Start'), this._start),
      labelled(trans.__('End'), this._end)
    );
    this.showPeriod();
  }

  /** The course groups the service knows (seen on tokens, in usage, in rules). */
  get groups(): string[] {
    return this._described?.groups ?? [];
  }

  get timeZone(): string {
    return this._described?.policy.timezone ?? this._described?.timezone ?? 'Europe/Paris';
  }

  async refresh(): Promise<void> {
    try {
      const [described, versions] = await Promise.all([getPolicy(), getHistory()]);
      this._described = described;
      this._versions = versions;
      const current = this._group.value;
      this._group.replaceChildren(
        ...described.groups.map(g => el('option', { value: g, text: g }))
      );
      this._group.value = described.groups.includes(current)
        ? current
        : (described.groups[0] ?? '');
      this._message.textContent = described.error
        ? this.trans.__('The policy has an error (every feature is off): %1', described.error)
        : '';
    } catch (error) {
      this._message.textContent = (error as Error).message;
    }
    this.drawRules();
    this.drawHistory();
    this.followBounds();
  }

  /**
   * A feature the service keeps no more open than another (`bounded_by` in its
   * description: "Explain this error" and "Explain this cell") shows the stricter of
   * the teacher's own choice and its bound, so that the rule reads as it will apply;
   * a note says why. Loosening the bound again gives the teacher's choice back.
   */
  private followBounds(): void {
    const features = featureLabels(this.trans);
    const notes: string[] = [];
    for (const [feature, bounds] of Object.entries(this._described?.bounded_by ?? {})) {
      const bounded = this._modes[feature as Feature];
      if (!bounded) {
        continue;
      }
      let mode: FeatureMode = this._chosen[feature as Feature] ?? 'on';
      for (const bound of bounds) {
        const by = this._modes[bound as Feature]?.value as FeatureMode | undefined;
        if (by && STRICTNESS[by] > STRICTNESS[mode]) {
          mode = by;
          notes.push(
            this.trans.__(
              '%1 is never more open than %2 (an invented error must not get around it).',
              features[feature as Feature],
              features[bound as Feature]
            )
          );
        }
      }
      bounded.value = mode;
    }
    this._boundNote.textContent = notes.join(' ');
    this._boundNote.hidden = notes.length === 0;
  }

  private showPeriod(): void {
    this._period.hidden = this._when.value !== 'period';
  }

  private rule(): IPolicyRule | string {
    const trans = this.trans;
    const group = this._group.value;
    if (!group) {
      return trans.__('Choose a course first.');
    }
    const features: IPolicyRule['features'] = {};
    for (const feature of FEATURES) {
      const mode = this._modes[feature].value as FeatureMode;
      if (mode !== 'on') {
        features[feature] = mode;
      }
    }
    if (!Object.keys(features).length) {
      return trans.__('Every feature is on: this rule would change nothing.');
    }
    const rule: IPolicyRule = {
      // Named by when it was made, in the policy's timezone (as its windows are).
      name: `${group} ${localParts(new Date(), this.timeZone).replace('T', ' ')}`,
      groups: [group],
      features,
      reason: this._reason.value.trim()
    };
    const when = this._when.value as When;
    if (when === 'hour') {
      rule.windows = [nextMinutes(60, this.timeZone)];
    } else if (when === 'period') {
      if (!this._start.value || !this._end.value) {
        return trans.__('Give the start and the end of the period.');
      }
      rule.windows = [{ start: this._start.value, end: this._end.value }];
    }
    const pattern = this._paths.value.trim();
    if (pattern) {
      rule.paths = [pattern];
    }
    return rule;
  }

  private async addRule(): Promise<void> {
    const rule = this.rule();
    if (typeof rule === 'string') {
      this._message.textContent = rule;
      return;
    }
    const policy = this._described?.policy;
    if (!policy) {
      return;
    }
    await this.save({ ...policy, rules: [...policy.rules, rule] }, this.trans.__('Rule applied.'));
  }

  private async removeRule(index: number): Promise<void> {
    const policy = this._described?.policy;
    if (!policy) {
      return;
    }
    const rules = policy.rules.filter((_, i) => i !== index);
    await this.save({ ...policy, rules }, this.trans.__('Rule removed.'));
  }

  private async save(policy: IPolicyDescription['policy'], done: string): Promise<void> {
    try {
      await putPolicy(policy);
      await this.refresh();
      this._message.textContent = done;
    } catch (error) {
      this._message.textContent = (error as Error).message;
    }
  }

  private drawRules(): void {
    const trans = this.trans;
    const features = featureLabels(trans);
    const modes = modeLabels(trans);
    const group = this._group.value;
    const rules = (this._described?.policy.rules ?? [])
      .map((rule, index) => ({ rule, index }))
      .filter(({ rule }) => !rule.groups?.length || rule.groups.includes(group));
    if (!rules.length) {
      this._rules.replaceChildren(el('p', { text: trans.__('No rule: every feature is on.') }));
      return;
    }
    this._rules.replaceChildren(
      table<{ rule: IPolicyRule; index: number }>(
        [
          {
            header: trans.__('Features'),
            cell: ({ rule }) =>
              Object.entries(rule.features)
                .map(([f, m]) => `${features[f as Feature] ?? f}: ${modes[m as FeatureMode] ?? m}`)
                .join(', ')
          },
          {
            header: trans.__('When'),
            cell: ({ rule }) =>
              rule.windows?.length
                ? rule.windows.map(w => `${w.start} → ${w.end}`).join('; ')
                : trans.__('always')
          },
          {
            header: trans.__('Notebooks'),
            cell: ({ rule }) => rule.paths?.join(', ') || trans.__('all')
          },
          { header: trans.__('Reason'), cell: ({ rule }) => rule.reason ?? '' },
          { header: '', cell: () => '' }
        ],
        rules,
        { 'aria-label': trans.__('Rules of this course') }
      )
    );
    // The last column holds a Remove button per rule.
    const lastCells = this._rules.querySelectorAll('tbody tr td:last-child');
    lastCells.forEach((cell, i) => {
      const button = el('button', { class: 'jp-mod-styled jp-mod-warn', text: trans.__('Remove') });
      button.onclick = () => void this.removeRule(rules[i].index);
      cell.append(button);
    });
  }

  private drawHistory(): void {
    const trans = this.trans;
    this._history.replaceChildren(
      table<IPolicyVersion>(
        [
          { header: trans.__('When'), cell: v => new Date(v.at).toLocaleString() },
          { header: trans.__('Who'), cell: v => v.author },
          { header: trans.__('What'), cell: v => v.summary }
        ],
        this._versions,
        { 'aria-label': trans.__('History of changes') }
      )
    );
  }

  private _described: IPolicyDescription | null = null;
  private _versions: IPolicyVersion[] = [];
  private _group = el('select', { class: 'jp-copilot-Console-group' });
  private _modes = {} as Record<Feature, HTMLSelectElement>;
  /** What the teacher chose in each select (a bound may show a stricter mode). */
  private _chosen: Partial<Record<Feature, FeatureMode>> = {};
  private _when: HTMLSelectElement;
  private _period = el('div', { class: 'jp-copilot-Console-period' });
  private _start = el('input', { type: 'datetime-local' });
  private _end = el('input', { type: 'datetime-local' });
  private _paths = el('input', { type: 'text', placeholder: 'tp-noté/**' });
  private _reason = el('input', { type: 'text', class: 'jp-copilot-Console-reason' });
  private _message = el('p', { class: 'jp-copilot-Console-message', role: 'status' });
  private _boundNote = el('p', { class: 'jp-copilot-Console-boundNote', hidden: '' });
  private _rules = el('div', { class: 'jp-copilot-Console-rules' });
  private _history = el('div', { class: 'jp-copilot-Console-history' });
}
