/**
 * The console's API, defined once: `/copilot/console/<route>` on the user's own
 * Jupyter server, relayed to the campus service (`jupyter_copilot/hub/admin.py`),
 * which answers 403 to anyone who is not staff.
 */

import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../api';

export type Feature = 'completion' | 'explain_cell' | 'explain_error';
export const FEATURES: Feature[] = ['completion', 'explain_cell', 'explain_error'];
export type FeatureMode = 'on' | 'hint' | 'off';

/** One row of a report: the keys it is split on, then the sums. */
export interface IUsageRow {
  day?: string;
  group?: string;
  feature?: string;
  user?: string;
  requests: number;
  prompt_tokens: number;
  cached_tokens: number;
  generated_tokens: number;
  engine_seconds: number;
  wh: number;
  gco2e: number;
}

/** The sums a report may plot, in the order the console offers them. */
export const METRICS = [
  'requests',
  'prompt_tokens',
  'generated_tokens',
  'engine_seconds',
  'wh',
  'gco2e'
] as const;
export type Metric = (typeof METRICS)[number];

export interface IUsageReport {
  rows: IUsageRow[];
  groups?: string[];
  pseudonymised?: boolean;
  factors?: { watts: number; grams_co2e_per_kwh: number };
}

export interface IOwnUsage extends IUsageReport {
  user: string;
  total: IUsageRow;
  quota?: { daily_tokens: number | null; tokens_used_today: number };
  local?: boolean;
}

export interface IUsageQuery {
  group?: string;
  from?: string;
  to?: string;
  by?: string;
}

export interface ITimeWindow {
  start: string;
  end: string;
  days?: string[];
}

export interface IPolicyRule {
  name?: string;
  groups?: string[];
  users?: string[];
  except_groups?: string[];
  features: Partial<Record<Feature, FeatureMode>>;
  reason?: string;
  windows?: ITimeWindow[];
  paths?: string[];
}

export interface IPolicyDocument {
  timezone: string;
  default: Partial<Record<Feature, FeatureMode>>;
  default_reason?: string;
  rules: IPolicyRule[];
}

export interface IPolicyDescription {
  policy: IPolicyDocument;
  source: string;
  error: string | null;
  groups: string[];
  timezone: string;
  /** Features the service keeps no more open than others (policy.BOUNDED_BY). */
  bounded_by?: Partial<Record<Feature, Feature[]>>;
}

export interface IPolicyVersion {
  version: number;
  at: string;
  author: string;
  summary: string;
}

function query(params: object): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      search.set(key, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export function getUsage(q: IUsageQuery): Promise<IUsageReport> {
  return requestAPI<IUsageReport>(`console/admin/usage${query(q)}`, { cache: 'no-store' });
}

export function getOwnUsage(q: IUsageQuery = {}): Promise<IOwnUsage> {
  return requestAPI<IOwnUsage>(`console/usage${query(q)}`, { cache: 'no-store' });
}

export function getPolicy(): Promise<IPolicyDescription> {
  return requestAPI<IPolicyDescription>('console/admin/policy', { cache: 'no-store' });
}

export function putPolicy(policy: IPolicyDocument): Promise<IPolicyDescription> {
  return requestAPI<IPolicyDescription>('console/admin/policy', {
    method: 'PUT',
    body: JSON.stringify(policy)
  });
}

export async function getHistory(): Promise<IPolicyVersion[]> {
  const reply = await requestAPI<{ versions: IPolicyVersion[] }>('console/admin/policy/history', {
    cache: 'no-store'
  });
  return reply.versions;
}

/**
 * The same report as CSV, saved by the browser (a download, not a new tab: the
 * request needs the server's XSRF/token headers, which a plain link lacks).
 */
export async function downloadCsv(route: string, filename: string): Promise<void> {
  const settings = ServerConnection.makeSettings();
  const url = `${settings.baseUrl.replace(/\/$/, '')}/copilot/${route}`;
  const response = await ServerConnection.makeRequest(url, { cache: 'no-store' }, settings);
  if (!response.ok) {
    throw new Error(`HTTP ${response.status}`);
  }
  const blob = new Blob([await response.text()], { type: 'text/csv' });
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

export function usageCsvRoute(q: IUsageQuery): string {
  return `console/admin/usage${query({ ...q, format: 'csv' })}`;
}
