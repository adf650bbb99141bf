/**
 * The console's plot: a Vega-Lite spec drawn by JupyterLab's own renderer
 * (rendermime, `@jupyterlab/vega5-extension`); no chart library of our own.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { IUsageRow, Metric } from './api';

/** The Vega-Lite MIME types JupyterLab renders, newest first. */
export const VEGALITE_TYPES = [
  'application/vnd.vegalite.v5+json',
  'application/vnd.vegalite.v4+json'
];

/**
 * Bars per day, stacked by feature, of one metric (pure: a test may check it).
 */
export function usageSpec(
  rows: IUsageRow[],
  metric: Metric,
  labels: { day: string; feature: string; metric: string; features: Record<string, string> },
  width = 480
): object {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    description: labels.metric,
    // A number: Vega-Lite's 'container' needs a sized parent, which a fresh widget lacks.
    width,
    height: 220,
    data: {
      values: rows.map(r => ({
        day: r.day,
        feature: labels.features[r.feature ?? ''] ?? r.feature,
        value: r[metric]
      }))
    },
    mark: { type: 'bar', tooltip: true },
    encoding: {
      x: { field: 'day', type: 'ordinal', title: labels.day },
      y: { field: 'value', type: 'quantitative', title: labels.metric, aggregate: 'sum' },
      color: { field: 'feature', type: 'nominal', title: labels.feature }
    }
  };
}

/**
 * Render `spec` into `host` with the registry's Vega-Lite renderer; returns the
 * renderer widget (or null when JupyterLab has no Vega-Lite renderer).
 */
export async function renderSpec(
  rendermime: IRenderMimeRegistry,
  host: HTMLElement,
  spec: object
): Promise<Widget | null> {
  const bundle: Record<string, unknown> = {};
  for (const type of VEGALITE_TYPES) {
    bundle[type] = spec;
  }
  const mimeType = rendermime.preferredMimeType(bundle as ReadonlyPartialJSONObject, 'any');
  if (!mimeType) {
    return null;
  }
  const renderer = rendermime.createRenderer(mimeType);
  const data = { [mimeType]: spec } as unknown as ReadonlyPartialJSONObject;
  const model = rendermime.createModel({ data, trusted: true });
  await renderer.renderModel(model);
  Widget.attach(renderer, host);
  return renderer;
}

/** The plot's width for `host`: its own width less the legend's room. */
export function chartWidth(host: HTMLElement): number {
  const width = host.getBoundingClientRect().width || host.parentElement?.clientWidth || 0;
  return Math.max(240, Math.round(width) - 160);
}
