/**
 * Which language the explanation is written in.
 */

import type { ExplainLanguageSetting } from '../tokens';

export type ExplainLanguage = 'fr' | 'en';

/**
 * The user's `explainLanguage` setting wins; 'auto' follows JupyterLab's own
 * language (the translator's code: `fr`, `fr-FR`, `fr-CA`… → French). Anything else
 * gets English: the server's prompts exist in these two languages only.
 */
export function explainLanguage(
  setting: ExplainLanguageSetting,
  jupyterLabLanguage: string
): ExplainLanguage {
  if (setting === 'fr' || setting === 'en') {
    return setting;
  }
  return /^fr\b/i.test(jupyterLabLanguage.replace('_', '-')) ? 'fr' : 'en';
}
