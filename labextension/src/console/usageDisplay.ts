/**
 * What the staff report and "my usage" both show: bars of one metric per day and
 * feature, and the table of the rows (day, feature, then the chosen sums).
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { IUsageRow, Metric } from './api';
import { chartWidth, renderSpec, usageSpec } from './chart';
import { table } from './dom';
import { formatNumber } from './format';
import { featureLabels, metricLabels } from './labels';

/** Decimals shown per metric (whole numbers for the others). */
const DIGITS: Partial<Record<Metric, number>> = { engine_seconds: 1, wh: 3, gco2e: 3 };

/** The rows as a table: day, feature, then one column per metric of `columns`. */
export function usageTable(
  rows: IUsageRow[],
  columns: Metric[],
  trans: TranslationBundle,
  label: string
): HTMLTableElement {
  const features = featureLabels(trans);
  const metrics = metricLabels(trans);
  return table<IUsageRow>(
    [
      { header: trans.__('Day'), cell: r => r.day ?? '' },
      {
        header: trans.__('Feature'),
        cell: r => features[r.feature as keyof typeof features] ?? r.feature ?? ''
      },
      ...columns.map(key => ({
        header: metrics[key],
        cell: (r: IUsageRow) => formatNumber(r[key], DIGITS[key] ?? 0),
        numeric: true
      }))
    ],
    rows,
    { 'aria-label': label }
  );
}

/**
 * Bars of `metric` per day, stacked by feature, drawn into `host`; the renderer
 * (null when JupyterLab has no Vega-Lite renderer).
 */
export function usageChart(
  rendermime: IRenderMimeRegistry,
  host: HTMLElement,
  rows: IUsageRow[],
  metric: Metric,
  trans: TranslationBundle
): Promise<Widget | null> {
  const labels = {
    day: trans.__('Day'),
    feature: trans.__('Feature'),
    metric: metricLabels(trans)[metric],
    features: featureLabels(trans)
  };
  return renderSpec(rendermime, host, usageSpec(rows, metric, labels, chartWidth(host)));
}
