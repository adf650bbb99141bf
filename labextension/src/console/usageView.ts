/**
 * Staff: per course and day, requests, tokens, engine time, Wh and gCO2e, split by
 * feature; a Vega-Lite plot (JupyterLab's renderer), a table and CSV export.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import {
  downloadCsv,
  getUsage,
  IUsageQuery,
  IUsageRow,
  Metric,
  METRICS,
  usageCsvRoute
} from './api';
import { el, labelled, select } from './dom';
import { daysBefore, dayIn, formatNumber } from './format';
import { metricLabels } from './labels';
import { usageChart, usageTable } from './usageDisplay';

export class UsageView extends Widget {
  constructor(
    private readonly rendermime: IRenderMimeRegistry,
    private readonly trans: TranslationBundle,
    timeZone: () => string
  ) {
    super();
    this.addClass('jp-copilot-Console-usage');
    const today = dayIn(new Date(), timeZone());
    this._group = select([], '', {
      'aria-label': trans.__('Course'),
      class: 'jp-copilot-Console-group'
    });
    this._from = el('input', {
      type: 'date',
      value: daysBefore(today, 6),
      'aria-label': trans.__('From')
    });
    this._to = el('input', { type: 'date', value: today, 'aria-label': trans.__('To') });
    const metrics = metricLabels(trans);
    this._metric = select(
      METRICS.map(m => ({ value: m, label: metrics[m] })),
      'requests',
      { 'aria-label': trans.__('Plotted value') }
    );
    const refresh = el('button', { class: 'jp-mod-styled jp-mod-accept', text: trans.__('Show') });
    const csv = el('button', { class: 'jp-mod-styled', text: trans.__('Export CSV') });
    refresh.onclick = () => void this.refresh();
    this._metric.onchange = () => void this.draw();
    this._group.onchange = () => void this.refresh();
    csv.onclick = () =>
      void downloadCsv(usageCsvRoute(this.query()), `copilot-usage-${this._group.value}.csv`).catch(
        error => this.showError(String(error))
      );
    this.node.append(
      el(
        'div',
        { class: 'jp-copilot-Console-controls' },
        labelled(trans.__('Course'), this._group),
        labelled(trans.__('From'), this._from),
        labelled(trans.__('To'), this._to),
        labelled(trans.__('Plotted value'), this._metric),
        refresh,
        csv
      ),
      this._message,
      this._summary,
      this._chart,
      this._table
    );
  }

  setGroups(groups: string[]): void {
    const current = this._group.value;
    this._group.replaceChildren(...groups.map(g => el('option', { value: g, text: g })));
    this._group.value = groups.includes(current) ? current : (groups[0] ?? '');
  }

  query(): IUsageQuery {
    return {
      group: this._group.value,
      from: this._from.value,
      to: this._to.value,
      by: 'day,feature'
    };
  }

  async refresh(): Promise<void> {
    if (!this._group.value) {
      this.showError(this.trans.__('No course has used the copilot yet.'));
      this._rows = [];
      await this.draw();
      return;
    }
    try {
      const report = await getUsage(this.query());
      this._message.textContent = '';
      this._rows = report.rows;
    } catch (error) {
      this.showError((error as Error).message);
      this._rows = [];
    }
    await this.draw();
  }

  private showError(message: string): void {
    this._message.textContent = message;
  }

  private async draw(): Promise<void> {
    const trans = this.trans;
    const metric = this._metric.value as Metric;
    const rows = this._rows;
    const sum = (key: Metric) => rows.reduce((total, r) => total + r[key], 0);
    this._summary.textContent = trans.__(
      '%1 requests, %2 tokens, %3 s of engine time, %4 Wh, %5 gCO2e',
      formatNumber(sum('requests')),
      formatNumber(sum('prompt_tokens') + sum('generated_tokens')),
      formatNumber(sum('engine_seconds'), 1),
      formatNumber(sum('wh'), 3),
      formatNumber(sum('gco2e'), 3)
    );
    this._renderer?.dispose();
    this._renderer = null;
    this._chart.replaceChildren();
    if (rows.length) {
      this._renderer = await usageChart(this.rendermime, this._chart, rows, metric, trans);
      if (!this._renderer) {
        this._chart.textContent = trans.__('JupyterLab has no Vega-Lite renderer: see the table.');
      }
    }
    this._table.replaceChildren(
      usageTable(rows, [...METRICS], trans, trans.__('Usage per day and feature'))
    );
  }

  dispose(): void {
    this._renderer?.dispose();
    super.dispose();
  }

  private _group: HTMLSelectElement;
  private _from: HTMLInputElement;
  private _to: HTMLInputElement;
  private _metric: HTMLSelectElement;
  private _message = el('p', { class: 'jp-copilot-Console-message', role: 'status' });
  private _summary = el('p', { class: 'jp-copilot-Console-summary' });
  private _chart = el('div', { class: 'jp-copilot-Console-chart' });
  private _table = el('div', { class: 'jp-copilot-Console-tableHost' });
  private _rows: IUsageRow[] = [];
  private _renderer: Widget | null = null;
}
