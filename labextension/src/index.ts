/**
 * jupyter-copilot for JupyterLab: ghost-text completions from the local code model
 * that the `jupyter_copilot` server extension runs.
 *
 * Small plugins, each doing one thing:
 * - `:plugin`          the user's settings and the engine state (shared via a token),
 *                      plus the commands to toggle completions and show the model card;
 * - `:inline-provider` the inline completion provider;
 * - `:status-item`     the status bar item;
 * - `:prewarm`         pre-fills the engine's prompt cache as the student moves around;
 * - `:explain`         "Explain This Cell / This Error": the commands (cell toolbar,
 *                      context menu, palette, shortcut) and the explanation panel;
 * - `:explain-error-button` an "Explain this error" button under error outputs.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { addExplainCommands } from './explain/commands';
import { ExplainErrorButtons } from './explain/errorButton';
import { Explainer } from './explain/explainer';
import { ExplainPanel } from './explain/panel';
import { CopilotInlineProvider } from './provider';
import { CopilotState } from './state';
import { CopilotStatusItem, showModelCard } from './status';
import {
  CommandIDs,
  ICopilotState,
  IExplainer,
  PACKAGE,
  SETTINGS_PLUGIN_ID,
  TRANSLATION_DOMAIN
} from './tokens';
import { NotebookWarmer } from './warm';

const settingsPlugin: JupyterFrontEndPlugin<CopilotState> = {
  id: SETTINGS_PLUGIN_ID,
  description: 'jupyter-copilot settings, engine state and commands.',
  autoStart: true,
  provides: ICopilotState,
  optional: [ISettingRegistry, ITranslator, ICommandPalette],
  activate: async (
    app: JupyterFrontEnd,
    registry: ISettingRegistry | null,
    translator: ITranslator | null,
    palette: ICommandPalette | null
  ): Promise<CopilotState> => {
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    let settings: ISettingRegistry.ISettings | null = null;
    if (registry) {
      try {
        settings = await registry.load(SETTINGS_PLUGIN_ID);
      } catch (error) {
        console.warn('jupyter-copilot: settings not loaded, using defaults', error);
      }
    }
    const state = new CopilotState({ settings });

    app.commands.addCommand(CommandIDs.toggleCompletions, {
      label: trans.__('Enable Copilot Completions'),
      caption: trans.__('Turn the ghost-text suggestions of the code model on or off'),
      isToggled: () => state.enabled,
      execute: () => state.setEnabled(!state.enabled)
    });
    app.commands.addCommand(CommandIDs.showModelCard, {
      label: trans.__('Show Copilot Model Card'),
      caption: trans.__('Which model answers, under which licence, and how open it is'),
      execute: () => showModelCard(state, trans)
    });
    state.changed.connect(() => app.commands.notifyCommandChanged(CommandIDs.toggleCompletions));
    if (palette) {
      const category = trans.__('Copilot');
      palette.addItem({ command: CommandIDs.toggleCompletions, category });
      palette.addItem({ command: CommandIDs.showModelCard, category });
    }
    return state;
  }
};

const providerPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:inline-provider`,
  description: 'Ghost-text completions from the jupyter-copilot server.',
  autoStart: true,
  requires: [ICompletionProviderManager, ICopilotState],
  optional: [ITranslator],
  activate: (
    _app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    state: CopilotState,
    translator: ITranslator | null
  ): void => {
    const provider = new CopilotInlineProvider({ state, translator });
    manager.registerInlineProvider(provider);
    // Turning completions off also stops the suggestion being generated.
    state.changed.connect(() => {
      if (!state.enabled) {
        provider.abortAll();
      }
    });
  }
};

const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:status-item`,
  description: 'Shows the copilot engine state and model in the status bar.',
  autoStart: true,
  requires: [ICopilotState],
  optional: [IStatusBar, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    state: CopilotState,
    statusBar: IStatusBar | null,
    translator: ITranslator | null
  ): void => {
    if (!statusBar) {
      // JupyterLab without a status bar (e.g. some embeddings): nothing to show.
      return;
    }
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    const item = new CopilotStatusItem({
      state,
      trans,
      onOpen: () => void app.commands.execute(CommandIDs.showModelCard)
    });
    statusBar.registerStatusItem(`${PACKAGE}:status`, {
      item,
      align: 'left',
      rank: 100
    });
  }
};

const prewarmPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:prewarm`,
  description: "Pre-fills the engine's prompt cache with the notebook's earlier cells.",
  autoStart: true,
  requires: [ICopilotState, INotebookTracker],
  activate: (_app: JupyterFrontEnd, state: CopilotState, tracker: INotebookTracker): void => {
    new NotebookWarmer({ tracker, state });
  }
};

/**
 * Where the explanation panel sits among the right sidebar's tabs (after JupyterLab's
 * property inspector and debugger).
 */
const EXPLAIN_PANEL_RANK = 900;

const explainPlugin: JupyterFrontEndPlugin<Explainer> = {
  id: `${PACKAGE}:explain`,
  description: 'Explains a notebook cell or its error in a side panel, streamed.',
  autoStart: true,
  provides: IExplainer,
  requires: [ICopilotState, INotebookTracker, IRenderMimeRegistry],
  optional: [ITranslator, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    state: CopilotState,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    translator: ITranslator | null,
    palette: ICommandPalette | null
  ): Explainer => {
    const languages = translator ?? nullTranslator;
    const trans = languages.load(TRANSLATION_DOMAIN);
    const panel = new ExplainPanel({
      rendermime,
      trans,
      // Streams name the model by its catalogue id; the status knows its name.
      describeModel: id => (state.model?.id === id ? state.model.name : id)
    });
    const openPanel = () => {
      // Added on first use: no sidebar tab for students who never ask.
      if (!panel.isAttached) {
        app.shell.add(panel, 'right', { rank: EXPLAIN_PANEL_RANK });
      }
      app.shell.activateById(panel.id);
    };
    const explainer = new Explainer({
      state,
      panel,
      translator: languages,
      trans,
      openPanel,
      app,
      tracker
    });
    addExplainCommands({ app, tracker, explainer, trans, palette });
    return explainer;
  }
};

const explainErrorButtonPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:explain-error-button`,
  description: 'Puts an "Explain this error" button under error outputs in notebooks.',
  autoStart: true,
  requires: [IExplainer, INotebookTracker],
  optional: [ITranslator],
  activate: (
    _app: JupyterFrontEnd,
    explainer: Explainer,
    tracker: INotebookTracker,
    translator: ITranslator | null
  ): void => {
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    new ExplainErrorButtons({ tracker, explainer, trans });
  }
};

export default [
  settingsPlugin,
  providerPlugin,
  statusPlugin,
  prewarmPlugin,
  explainPlugin,
  explainErrorButtonPlugin
];
