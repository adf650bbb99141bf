/**
 * The console's plugin: one command, "Copilot Console" for staff and "My Copilot
 * Usage" for students (the service says who is staff, in the status).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { CopilotState } from '../state';
import { ICopilotState, PACKAGE, TRANSLATION_DOMAIN } from '../tokens';
import { CONSOLE_ID, ConsolePanel } from './panel';

export const OPEN_CONSOLE = `${PACKAGE}:open-console`;

function isStaff(state: CopilotState): boolean {
  return state.engine?.features?.staff === true;
}

export const consolePlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:console`,
  description: 'The copilot console: usage and energy per course, policy editor, my usage.',
  autoStart: true,
  requires: [ICopilotState, IRenderMimeRegistry],
  optional: [ITranslator, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    state: CopilotState,
    rendermime: IRenderMimeRegistry,
    translator: ITranslator | null,
    palette: ICommandPalette | null
  ): void => {
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    let widget: MainAreaWidget<ConsolePanel> | null = null;
    app.commands.addCommand(OPEN_CONSOLE, {
      label: () => (isStaff(state) ? trans.__('Copilot Console') : trans.__('My Copilot Usage')),
      caption: trans.__('Requests, tokens and energy of the copilot; the course policy (staff)'),
      execute: async () => {
        await state.refresh();
        const staff = isStaff(state);
        if (!widget || widget.isDisposed || widget.content.staff !== staff) {
          widget?.dispose();
          const content = new ConsolePanel({ rendermime, trans, staff });
          widget = new MainAreaWidget({ content });
          widget.id = CONSOLE_ID;
          widget.title.label = content.title.label;
          widget.title.closable = true;
        }
        if (!widget.isAttached) {
          app.shell.add(widget, 'main');
        }
        app.shell.activateById(widget.id);
        await widget.content.refresh();
      }
    });
    state.changed.connect(() => app.commands.notifyCommandChanged(OPEN_CONSOLE));
    if (palette) {
      palette.addItem({ command: OPEN_CONSOLE, category: trans.__('Copilot') });
    }
  }
};
