/**
 * Everyone: "my usage" — the student's own requests, tokens and energy, by day.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { getOwnUsage, IUsageRow } from './api';
import { el } from './dom';
import { formatNumber } from './format';
import { usageChart, usageTable } from './usageDisplay';

export class OwnUsageView extends Widget {
  constructor(
    private readonly rendermime: IRenderMimeRegistry,
    private readonly trans: TranslationBundle
  ) {
    super();
    this.addClass('jp-copilot-Console-own');
    this.node.append(this._summary, this._quota, this._chart, this._table);
  }

  async refresh(): Promise<void> {
    const trans = this.trans;
    let rows: IUsageRow[] = [];
    try {
      const usage = await getOwnUsage();
      rows = usage.rows;
      const t = usage.total;
      this._summary.textContent = trans.__(
        'You made %1 requests (%2 tokens): about %3 Wh and %4 gCO2e.',
        formatNumber(t.requests),
        formatNumber(t.prompt_tokens + t.generated_tokens),
        formatNumber(t.wh, 3),
        formatNumber(t.gco2e, 3)
      );
      const quota = usage.quota;
      this._quota.textContent =
        quota && quota.daily_tokens
          ? trans.__(
              'Today: %1 of your %2 tokens used.',
              formatNumber(quota.tokens_used_today),
              formatNumber(quota.daily_tokens)
            )
          : '';
    } catch (error) {
      this._summary.textContent = (error as Error).message;
    }
    this._renderer?.dispose();
    this._renderer = null;
    this._chart.replaceChildren();
    if (rows.some(r => r.day)) {
      this._renderer = await usageChart(this.rendermime, this._chart, rows, 'requests', trans);
    }
    this._table.replaceChildren(
      usageTable(rows, ['requests', 'generated_tokens', 'wh', 'gco2e'], trans, trans.__('My usage'))
    );
  }

  dispose(): void {
    this._renderer?.dispose();
    super.dispose();
  }

  private _summary = el('p', { class: 'jp-copilot-Console-summary' });
  private _quota = el('p', { class: 'jp-copilot-Console-quota' });
  private _chart = el('div', { class: 'jp-copilot-Console-chart' });
  private _table = el('div', { class: 'jp-copilot-Console-tableHost' });
  private _renderer: Widget | null = null;
}
