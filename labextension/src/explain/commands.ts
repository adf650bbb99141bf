/**
 * The "Explain This Cell" and "Explain This Error" commands, and "Ask the Copilot…"
 * (a free question in the panel). The first two act on the active cell of the current
 * notebook; where they appear (cell toolbar, context menu,
 * shortcut) is declared in `schema/explain.json`, the palette items here.
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { ICommandPalette } from '@jupyterlab/apputils';
import type { Cell } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';

import { explainIcon } from '../icons';
import { CommandIDs } from '../tokens';
import type { Explainer } from './explainer';
import { ExplainKind, hasError } from './request';

export function addExplainCommands(options: {
  app: JupyterFrontEnd;
  tracker: INotebookTracker;
  explainer: Explainer;
  trans: TranslationBundle;
  palette: ICommandPalette | null;
}): void {
  const { app, tracker, explainer, trans, palette } = options;
  const { commands, shell } = app;

  /**
   * The notebook and cell a command acts on: the active cell of the notebook in the
   * main area (not of a notebook left behind another tab).
   */
  const target = (): { notebook: NotebookPanel; cell: Cell } | null => {
    const notebook = tracker.currentWidget;
    const cell = notebook?.content.activeCell;
    if (!notebook || !cell || notebook !== shell.currentWidget) {
      return null;
    }
    return { notebook, cell };
  };
  const offered = (kind: ExplainKind): boolean => {
    const cell = target()?.cell;
    if (!cell || cell.model.type !== 'code' || !explainer.isAllowed(kind)) {
      return false;
    }
    return kind === 'cell' || hasError(cell);
  };
  const execute = async (kind: ExplainKind): Promise<void> => {
    const found = target();
    if (found) {
      await explainer.explain(kind, found.notebook, found.cell);
    }
  };
  const isHint = (kind: ExplainKind) => explainer.decision(kind).mode === 'hint';

  commands.addCommand(CommandIDs.explainCell, {
    label: trans.__('Explain This Cell'),
    caption: () =>
      isHint('cell')
        ? trans.__('Ask the copilot for a hint about this cell')
        : trans.__('Ask the copilot what this cell does'),
    icon: explainIcon,
    // Hidden (and its shortcut inert) when the server's policy turns it off, and on
    // markdown cells: there is no code to explain.
    isVisible: () => offered('cell'),
    isEnabled: () => offered('cell'),
    execute: () => execute('cell')
  });
  commands.addCommand(CommandIDs.explainError, {
    label: trans.__('Explain This Error'),
    caption: () =>
      isHint('error')
        ? trans.__('Ask the copilot for a hint about this error')
        : trans.__('Ask the copilot what this error means and how to fix it'),
    icon: explainIcon,
    isVisible: () => offered('error'),
    isEnabled: () => offered('error'),
    execute: () => execute('error')
  });

  // A free question about the current notebook: the panel's question box, without an
  // explanation first (hidden when the policy turns questions off).
  commands.addCommand(CommandIDs.askQuestion, {
    label: trans.__('Ask the Copilot…'),
    caption: () =>
      isHint('question')
        ? trans.__('Ask the copilot a question (hint mode: no solution code)')
        : trans.__('Ask the copilot a question about this notebook'),
    icon: explainIcon,
    isVisible: () => explainer.isAllowed('question'),
    isEnabled: () => explainer.isAllowed('question'),
    execute: () => explainer.openForQuestion()
  });

  const refresh = () => {
    commands.notifyCommandChanged(CommandIDs.explainCell);
    commands.notifyCommandChanged(CommandIDs.explainError);
    commands.notifyCommandChanged(CommandIDs.askQuestion);
  };
  explainer.policyChanged.connect(refresh);
  tracker.currentChanged.connect(refresh);
  tracker.activeCellChanged.connect(refresh);

  if (palette) {
    const category = trans.__('Copilot');
    palette.addItem({ command: CommandIDs.explainCell, category });
    palette.addItem({ command: CommandIDs.explainError, category });
    palette.addItem({ command: CommandIDs.askQuestion, category });
  }
}
