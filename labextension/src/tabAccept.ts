/**
 * Tab inserts the ghost text on every supported JupyterLab, as the README says.
 *
 * JupyterLab binds Tab to "accept inline completion" by default only since 4.3;
 * 4.1 and 4.2 ship Alt+End alone. There, Tab pressed on a suggestion opens the
 * kernel's completion list instead (the notebook's `completer:invoke-notebook`
 * binding), and binding Tab ourselves would not help: JupyterLab 4.1's own Tab
 * interceptor (a capture-phase keydown listener of the completer extension) looks
 * only at the *first* key binding of `inline-completer:accept`, which is Alt+End,
 * and Lumino prefers the notebook's more specific selector.
 *
 * So, when JupyterLab's inline completer does not ship a Tab binding for accept, we
 * listen as JupyterLab 4.3+ does: Tab (no modifier) in an editor that shows a
 * suggestion runs `inline-completer:accept`, unless the kernel's completion list is
 * open (Tab then moves in the list). Where JupyterLab ships Tab (4.3+), nothing is
 * installed: JupyterLab does it, and a user who removed that binding keeps it removed.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { CommandRegistry } from '@lumino/commands';

import { OnceDisposable } from './disposable';

export const ACCEPT_INLINE_COMMAND = 'inline-completer:accept';

/** On an editor's host while the inline completer shows a suggestion (4.1+). */
const INLINE_ACTIVE_CLASS = 'jp-mod-inline-completer-active';
/** On an editor's host while the kernel's completion list is open. */
const COMPLETER_ACTIVE_CLASS = 'jp-mod-completer-active';

/**
 * Whether this JupyterLab's own inline completer (its plugin schema, not the user's
 * overrides) binds Tab alone to accept.
 */
export function shipsTabAccept(schema: ISettingRegistry.ISchema): boolean {
  const shortcuts = schema['jupyter.lab.shortcuts'] ?? [];
  return shortcuts.some(
    shortcut =>
      shortcut.command === ACCEPT_INLINE_COMMAND &&
      !shortcut.disabled &&
      shortcut.keys.length === 1 &&
      shortcut.keys[0] === 'Tab'
  );
}

/** The Tab listener for JupyterLabs that do not ship one (see the top of this file). */
export class TabAccept extends OnceDisposable {
  constructor(commands: CommandRegistry) {
    super();
    this._commands = commands;
    // Capture phase: before CodeMirror (indentation) and Lumino (the notebook's Tab).
    document.addEventListener('keydown', this._onKeydown, true);
  }

  protected onDispose(): void {
    document.removeEventListener('keydown', this._onKeydown, true);
  }

  private _onKeydown = (event: KeyboardEvent): void => {
    if (
      event.key !== 'Tab' ||
      event.shiftKey ||
      event.altKey ||
      event.ctrlKey ||
      event.metaKey ||
      event.isComposing ||
      !(event.target instanceof Element)
    ) {
      return;
    }
    const host = event.target.closest(`.${INLINE_ACTIVE_CLASS}`);
    if (!host || host.classList.contains(COMPLETER_ACTIVE_CLASS)) {
      return;
    }
    if (!this._commands.isEnabled(ACCEPT_INLINE_COMMAND)) {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    this._commands.execute(ACCEPT_INLINE_COMMAND).catch(error => {
      console.error('jupyter-copilot: Tab could not accept the suggestion', error);
    });
  };

  private readonly _commands: CommandRegistry;
}
