/**
 * jupyter-copilot for JupyterLab: ghost-text completions from the local code model
 * that the `jupyter_copilot` server extension runs.
 *
 * Small plugins, each doing one thing:
 * - `:plugin`          the user's settings and the engine state (shared via a token),
 *                      plus the commands to toggle completions and show the model card;
 * - `:inline-provider` the inline completion provider, the block trigger on empty
 *                      lines, suggestions asked ahead (the next line when one is
 *                      accepted, the cursor's while the student types), the one
 *                      switch with JupyterLab's provider setting and, on
 *                      JupyterLab 4.1–4.2, Tab to accept (tabAccept.ts);
 * - `:status-item`     the status bar item;
 * - `:notifications`   toasts for what must not go unnoticed (notify.ts);
 * - `:prewarm`         pre-fills the engine's prompt cache as the student moves around
 *                      and types (or asks the provider for a suggestion ahead);
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

import { BlockTrigger } from './blockTrigger';
import { consolePlugin } from './console/plugin';
import { addExplainCommands } from './explain/commands';
import { ExplainErrorButtons } from './explain/errorButton';
import { Explainer } from './explain/explainer';
import { ExplainPanel } from './explain/panel';
import { ExplanationPreparer } from './explain/prepare';
import { CopilotNotifier } from './notify';
import { CopilotInlineProvider } from './provider';
import { loadTranslated } from './schemaI18n';
import { CopilotState } from './state';
import { CopilotStatusItem, showModelCard } from './status';
import { CompletionSwitch, INLINE_COMPLETER_PLUGIN } from './switch';
import { ACCEPT_INLINE_COMMAND, shipsTabAccept, TabAccept } from './tabAccept';
import {
  CommandIDs,
  ICopilotState,
  IExplainer,
  ISuggestionsAhead,
  PACKAGE,
  SETTINGS_PLUGIN_ID,
  TRANSLATION_DOMAIN
} from './tokens';
import { KernelNamespaceCollector } from './kernel/namespace';
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
        // Titles and descriptions in the user's language (see schemaI18n.ts for why here).
        settings = await loadTranslated(registry, SETTINGS_PLUGIN_ID, trans);
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

const providerPlugin: JupyterFrontEndPlugin<ISuggestionsAhead> = {
  id: `${PACKAGE}:inline-provider`,
  description: 'Ghost-text completions from the jupyter-copilot server.',
  autoStart: true,
  requires: [ICompletionProviderManager, ICopilotState],
  optional: [ITranslator, INotebookTracker, ISettingRegistry],
  provides: ISuggestionsAhead,
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    state: CopilotState,
    translator: ITranslator | null,
    tracker: INotebookTracker | null,
    registry: ISettingRegistry | null
  ): ISuggestionsAhead => {
    const provider = new CopilotInlineProvider({ state, translator });
    manager.registerInlineProvider(provider);
    // Turning completions off also stops the suggestion being generated.
    state.changed.connect(() => {
      if (!state.enabled) {
        provider.abortAll();
      }
    });
    if (tracker) {
      // Tab (or Alt+End) accepted a suggestion: prepare the next line.
      app.commands.commandExecuted.connect((_, executed) => {
        if (executed.id !== ACCEPT_INLINE_COMMAND) {
          return;
        }
        void Promise.resolve(executed.result).then(() => {
          const panel = tracker.currentWidget;
          const editor = tracker.activeCell?.editor;
          if (panel && editor && editor.hasFocus()) {
            provider.askAhead(panel, editor);
          }
        });
      });
      // A block on the empty line after `for …:` or at the end of a cell, where
      // JupyterLab does not ask by itself (blockTrigger.ts says why).
      new BlockTrigger({
        tracker,
        manager,
        isEnabled: () => state.enabled && state.completionAllowed,
        delayMs: () => provider.debouncerDelay,
        beforeInvoke: () => provider.expectAutomaticInvoke()
      });
    }
    if (registry) {
      // One switch: the Copilot setting and JupyterLab's Inline Completer setting of
      // this provider follow each other. Loaded once JupyterLab's completer plugin
      // has registered that setting's transform (it adds the providers' defaults).
      void app.restored
        .then(() => registry.load(INLINE_COMPLETER_PLUGIN))
        .then(inlineSettings => {
          new CompletionSwitch({ state, inlineSettings, providerId: provider.identifier });
          // JupyterLab 4.1 and 4.2: Tab does not accept a suggestion by itself.
          if (!shipsTabAccept(inlineSettings.schema)) {
            new TabAccept(app.commands);
          }
        })
        .catch(error => console.warn('jupyter-copilot: no Inline Completer settings', error));
    }
    return provider;
  }
};

const notificationsPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:notifications`,
  description: 'Notifications: model missing, engine stopped, quota reached, course rules.',
  autoStart: true,
  requires: [ICopilotState],
  optional: [ITranslator],
  activate: (_app: JupyterFrontEnd, state: CopilotState, translator: ITranslator | null): void => {
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    new CopilotNotifier({ state, trans });
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
  optional: [ISuggestionsAhead],
  activate: (
    _app: JupyterFrontEnd,
    state: CopilotState,
    tracker: INotebookTracker,
    ahead: ISuggestionsAhead | null
  ): void => {
    new NotebookWarmer({ tracker, state, ahead });
    // The kernel's live names (issue 14), read after each execution.
    new KernelNamespaceCollector({ tracker, state });
  }
};

/**
 * Where the explanation panel sits among the right sidebar's tabs (after JupyterLab's
 * property inspector and debugger).
 */
const EXPLAIN_PANEL_RANK = 900;

/** Also the id of schema/explain.json (a plugin's schema is named after the plugin). */
const EXPLAIN_PLUGIN_ID = `${PACKAGE}:explain`;

const explainPlugin: JupyterFrontEndPlugin<Explainer> = {
  id: EXPLAIN_PLUGIN_ID,
  description: 'Explains a notebook cell or its error in a side panel, streamed.',
  autoStart: true,
  provides: IExplainer,
  requires: [ICopilotState, INotebookTracker, IRenderMimeRegistry],
  optional: [ITranslator, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    state: CopilotState,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    translator: ITranslator | null,
    palette: ICommandPalette | null,
    registry: ISettingRegistry | null
  ): Explainer => {
    const languages = translator ?? nullTranslator;
    const trans = languages.load(TRANSLATION_DOMAIN);
    if (registry) {
      // schema/explain.json (where the commands appear) in the user's language; its
      // toolbar and menu items join JupyterLab's once loaded (schemaI18n.ts).
      loadTranslated(registry, EXPLAIN_PLUGIN_ID, trans).catch(error =>
        console.warn('jupyter-copilot: explain settings not loaded', error)
      );
    }
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
    new ExplanationPreparer({ tracker, state, explainer, panel });
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
  notificationsPlugin,
  statusPlugin,
  prewarmPlugin,
  explainPlugin,
  explainErrorButtonPlugin,
  consolePlugin
];
