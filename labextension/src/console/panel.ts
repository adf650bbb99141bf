/**
 * The copilot console: staff see usage, the policy editor and their own usage;
 * students see their own usage only. Who is staff comes from the service
 * (`features.staff` of the status); the service refuses staff data to others anyway.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { TranslationBundle } from '@jupyterlab/translation';
import { TabPanel, Widget } from '@lumino/widgets';

import { OwnUsageView } from './ownUsageView';
import { PolicyView } from './policyView';
import { UsageView } from './usageView';

export const CONSOLE_ID = 'jp-copilot-console';

export class ConsolePanel extends TabPanel {
  constructor(options: {
    rendermime: IRenderMimeRegistry;
    trans: TranslationBundle;
    staff: boolean;
  }) {
    super();
    const { rendermime, trans, staff } = options;
    this.id = `${CONSOLE_ID}-tabs`;
    this.addClass('jp-copilot-Console');
    this.title.label = staff ? trans.__('Copilot console') : trans.__('My copilot usage');
    this.title.closable = true;
    this._own = new OwnUsageView(rendermime, trans);
    this._own.title.label = trans.__('My usage');
    if (staff) {
      this._policy = new PolicyView(trans);
      this._policy.title.label = trans.__('Policy');
      this._usage = new UsageView(
        rendermime,
        trans,
        () => this._policy?.timeZone ?? 'Europe/Paris'
      );
      this._usage.title.label = trans.__('Usage');
      this.addWidget(this._usage);
      this.addWidget(this._policy);
    }
    this.addWidget(this._own);
    this.currentChanged.connect(() => void this.refresh());
  }

  get staff(): boolean {
    return this._usage !== null;
  }

  async refresh(): Promise<void> {
    const current: Widget | null = this.currentWidget;
    if (this._policy && this._usage) {
      await this._policy.refresh();
      this._usage.setGroups(this._policy.groups);
      if (current === this._usage) {
        await this._usage.refresh();
      }
    }
    if (current === this._own) {
      await this._own.refresh();
    }
  }

  private _usage: UsageView | null = null;
  private _policy: PolicyView | null = null;
  private _own: OwnUsageView;
}
