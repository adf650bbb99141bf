/**
 * An "Explain this error" button under every error output of a notebook.
 *
 * Where it goes: inside the output area's item for the error (the panel that holds
 * the prompt and the rendered traceback), after the traceback. That item lives and
 * dies with the output: cleared outputs or a re-run take the button with them, and
 * the output area's index ↔ model mapping is left untouched (the button is never a
 * child of the output area itself). A cell's outputs are followed through the
 * output area's `outputLengthChanged`, which it emits after every change it
 * renders; notebooks opened with saved errors get their buttons at once, whether or
 * not their cells are rendered yet (the output area exists before the cell's DOM).
 */

import type { Cell, CodeCell } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';

import { OnceDisposable } from '../disposable';
import { explainIcon } from '../icons';
import type { Explainer } from './explainer';

/**
 * Set on an output item that holds a button, so that CSS can put the button on a
 * line of its own under the traceback (the item is a flex row: prompt | output).
 */
const ITEM_WITH_BUTTON_CLASS = 'jp-copilot-mod-explainable';

export class ExplainErrorButton extends Widget {
  constructor(options: ExplainErrorButton.IOptions) {
    super();
    this._options = options;
    this.addClass('jp-copilot-ExplainErrorButton');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'jp-Button jp-mod-small jp-copilot-ExplainErrorButton-button';
    const icon = document.createElement('span');
    icon.className = 'jp-copilot-ExplainErrorButton-icon';
    explainIcon.element({ container: icon, tag: 'span' });
    this._label = document.createElement('span');
    button.append(icon, this._label);
    button.addEventListener('click', () => {
      const { explainer, notebook, cell } = this._options;
      void explainer.explain('error', notebook, cell);
    });
    this.node.append(button);
    this._button = button;
    this.refresh();
  }

  /** Follow the policy: hidden when off, "hint" wording in hint mode. */
  refresh(): void {
    const { explainer, trans } = this._options;
    const decision = explainer.decision('error');
    this.setHidden(decision.mode === 'off');
    this._label.textContent = trans.__('Explain this error');
    this._button.title =
      decision.mode === 'hint'
        ? trans.__('Ask the copilot for a hint about this error')
        : trans.__('Ask the copilot what this error means and how to fix it');
  }

  private _options: ExplainErrorButton.IOptions;
  private _button: HTMLButtonElement;
  private _label: HTMLElement;
}

export namespace ExplainErrorButton {
  export interface IOptions {
    explainer: Explainer;
    notebook: NotebookPanel;
    cell: Cell;
    trans: TranslationBundle;
  }
}

/**
 * Puts the buttons in every notebook of the tracker and keeps them in line with the
 * policy.
 */
export class ExplainErrorButtons extends OnceDisposable {
  constructor(options: ExplainErrorButtons.IOptions) {
    super();
    this._explainer = options.explainer;
    this._trans = options.trans;
    options.tracker.forEach(notebook => this._watchNotebook(notebook));
    options.tracker.widgetAdded.connect((_, notebook) => this._watchNotebook(notebook), this);
    this._explainer.policyChanged.connect(this._onPolicyChanged, this);
  }

  protected onDispose(): void {
    Signal.disconnectReceiver(this);
    for (const button of this._buttons) {
      button.dispose();
    }
    this._buttons.clear();
  }

  private _watchNotebook(notebook: NotebookPanel): void {
    const watchCells = () => {
      for (const cell of notebook.content.widgets) {
        this._watchCell(notebook, cell);
      }
    };
    // The notebook creates its cell widgets in its own handler of this signal,
    // connected before ours: the new widgets exist when ours runs.
    notebook.content.model?.cells.changed.connect(watchCells, this);
    watchCells();
  }

  private _watchCell(notebook: NotebookPanel, cell: Cell): void {
    if (cell.model.type !== 'code' || this._watched.has(cell)) {
      return;
    }
    this._watched.add(cell);
    const outputArea = (cell as CodeCell).outputArea;
    const sync = () => this._syncButtons(notebook, cell as CodeCell);
    outputArea.outputLengthChanged.connect(sync, this);
    sync();
  }

  /**
   * Make sure every error output of `cell` has its button (and only one).
   */
  private _syncButtons(notebook: NotebookPanel, cell: CodeCell): void {
    if (this.isDisposed || cell.isDisposed) {
      return;
    }
    const outputArea = cell.outputArea;
    const model = outputArea.model;
    // Items map to outputs one to one, up to a "show more outputs" marker.
    const count = Math.min(model.length, outputArea.widgets.length);
    for (let i = 0; i < count; i++) {
      const item = outputArea.widgets[i];
      if (model.get(i).type !== 'error' || !(item instanceof Panel)) {
        continue;
      }
      if (item.widgets.some(widget => widget instanceof ExplainErrorButton)) {
        continue;
      }
      const button = new ExplainErrorButton({
        explainer: this._explainer,
        notebook,
        cell,
        trans: this._trans
      });
      this._buttons.add(button);
      button.disposed.connect(() => this._buttons.delete(button));
      item.addClass(ITEM_WITH_BUTTON_CLASS);
      item.addWidget(button);
    }
  }

  private _onPolicyChanged(): void {
    for (const button of this._buttons) {
      button.refresh();
    }
  }

  private _explainer: Explainer;
  private _trans: TranslationBundle;
  private _watched = new WeakSet<Cell>();
  private _buttons = new Set<ExplainErrorButton>();
}

export namespace ExplainErrorButtons {
  export interface IOptions {
    tracker: INotebookTracker;
    explainer: Explainer;
    trans: TranslationBundle;
  }
}
