/**
 * Which language the explanation is written in.
 */

import type { ExplainLanguageSetting } from '../tokens';

export type ExplainLanguage = 'fr' | 'en';

/**
 * The user's `explainLanguage` setting wins; 'auto' follows JupyterLab's own
 * language (the translator's code: `fr`, `fr-FR`, `fr-CA`… → French). Anything else
 * gets English: the server's prompts exist in these two languages only.
 *
 * The translator's code can be missing: JupyterLab 4.1's `TranslationManager` leaves
 * `languageCode` undefined when the locale is "default" and the server sends no
 * language data (English, the usual case), although its type says `string`.
 */
export function explainLanguage(
  setting: ExplainLanguageSetting,
  jupyterLabLanguage: string | undefined
): ExplainLanguage {
  if (setting === 'fr' || setting === 'en') {
    return setting;
  }
  return /^fr\b/i.test((jupyterLabLanguage ?? '').replace('_', '-')) ? 'fr' : 'en';
}
