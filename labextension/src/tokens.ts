import { Token } from '@lumino/coreutils';

import type { CodeEditor } from '@jupyterlab/codeeditor';
import type { Widget } from '@lumino/widgets';

import type { Explainer } from './explain/explainer';
import type { CopilotState } from './state';

/**
 * The package name: plugin ids and the settings file are derived from it.
 */
export const PACKAGE = 'jupyter-copilot';

/**
 * The plugin that owns the user's settings (`schema/plugin.json`) and the engine state.
 */
export const SETTINGS_PLUGIN_ID = `${PACKAGE}:plugin`;

/**
 * The gettext domain of our strings: `jupyter_copilot/locale/<lang>/LC_MESSAGES/jupyter_copilot.json`.
 */
export const TRANSLATION_DOMAIN = 'jupyter_copilot';

export type ModeSetting = 'auto' | 'line' | 'block';
export type ExplainLanguageSetting = 'auto' | 'fr' | 'en';

/**
 * The user's settings, as in `schema/plugin.json`.
 *
 * The provider's timing knobs (debouncer delay, timeout, fill-in-the-middle while
 * typing) are NOT here: JupyterLab's inline completer applies them itself, so they
 * live in Settings → Inline Completer → Copilot provider.
 */
export interface ICopilotSettings {
  /** Master switch of completions (the status bar toggle flips it). */
  enabled: boolean;
  /** 'auto' lets the server choose a single line or a block from the code. */
  mode: ModeSetting;
  /** Stop a suggestion (and the generation) after this many lines; 0: no limit. */
  maxLines: number;
  /** Also suggest in markdown cells. */
  markdownCells: boolean;
  /** Pre-fill the engine's prompt cache when a notebook opens or a cell runs. */
  prewarm: boolean;
  /** Language of explanations; 'auto' follows JupyterLab's language. */
  explainLanguage: ExplainLanguageSetting;
  /** Send a summary of the kernel's live names (columns, keys...) with requests. */
  kernelContext: boolean;
  /**
   * Ask for suggestions ahead: the next line when one is accepted at a line end, and
   * (a model on this computer) the cursor's while the student types.
   */
  askAhead: boolean;
  /** Have the server prepare an explanation the student is about to ask for. */
  prepareExplanations: boolean;
}

export const DEFAULT_SETTINGS: Readonly<ICopilotSettings> = Object.freeze({
  enabled: true,
  mode: 'auto',
  maxLines: 12,
  markdownCells: false,
  prewarm: true,
  explainLanguage: 'auto',
  kernelContext: true,
  askAhead: true,
  prepareExplanations: true
});

/**
 * The copilot's shared state (settings, engine status, requests in flight), provided
 * by the settings plugin to the inline provider and the status bar item.
 */
export const ICopilotState = new Token<CopilotState>(
  `${PACKAGE}:ICopilotState`,
  'The jupyter-copilot settings and engine state shared by its plugins.'
);

/**
 * "Explain this cell / this error": shared by the commands plugin and the plugin that
 * puts a button under error outputs.
 */
export const IExplainer = new Token<Explainer>(
  `${PACKAGE}:IExplainer`,
  'Explains a notebook cell or its error with the copilot, in the explanation panel.'
);

/**
 * Suggestions asked before the student pauses (the inline provider): the
 * pre-warming plugin asks for one while the student types, instead of a warm-up.
 */
export interface ISuggestionsAhead {
  /**
   * Ask now for the suggestion at the editor's cursor, remembered by the server for
   * the next pause; whether the line is taken care of (asked now, or by a request
   * already made): if not, the caller may warm it.
   */
  askWhileTyping(widget: Widget, editor: CodeEditor.IEditor): boolean;
  /**
   * The student settled in the cell, in its editor: the same, wherever the cursor
   * rests (the pre-warming plugin then sends no warm-up of the cell).
   */
  askOnEntry(widget: Widget, editor: CodeEditor.IEditor): boolean;
}

export const ISuggestionsAhead = new Token<ISuggestionsAhead>(
  `${PACKAGE}:ISuggestionsAhead`,
  'Asks the copilot for a suggestion ahead of the pause that will show it.'
);

export namespace CommandIDs {
  export const toggleCompletions = `${PACKAGE}:toggle-completions`;
  export const showModelCard = `${PACKAGE}:show-model-card`;
  export const explainCell = `${PACKAGE}:explain-cell`;
  export const explainError = `${PACKAGE}:explain-error`;
  export const askQuestion = `${PACKAGE}:ask-question`;
}
