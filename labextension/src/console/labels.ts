/**
 * The console's words, translated once (French in jupyter_copilot/locale/fr).
 */

import { TranslationBundle } from '@jupyterlab/translation';

import { Feature, FeatureMode, Metric } from './api';

export function featureLabels(trans: TranslationBundle): Record<Feature, string> {
  return {
    completion: trans.__('Completions'),
    explain_cell: trans.__('Explain this cell'),
    explain_error: trans.__('Explain this error')
  };
}

export function modeLabels(trans: TranslationBundle): Record<FeatureMode, string> {
  return {
    on: trans.__('on'),
    hint: trans.__('hints only'),
    off: trans.__('off')
  };
}

export function metricLabels(trans: TranslationBundle): Record<Metric, string> {
  return {
    requests: trans.__('Requests'),
    prompt_tokens: trans.__('Prompt tokens'),
    generated_tokens: trans.__('Generated tokens'),
    engine_seconds: trans.__('Engine time (s)'),
    wh: trans.__('Energy (Wh)'),
    gco2e: trans.__('Emissions (gCO2e)')
  };
}
