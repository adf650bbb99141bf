import { expect, test } from '@jupyterlab/galata';
import { openNotebook, TEST_SETTINGS, waitForReady } from './helpers';
test.use({ mockSettings: TEST_SETTINGS });
test('debug timing', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'dbg.ipynb', [
    { id: 'a', cell_type: 'code', source: 'notes = [12, 15, 9]\nprint(sum(notes) / len(notes))' }
  ]);
  await waitForReady(page);
  if (process.env.NOANIM) { await page.addStyleTag({ content: '*{animation:none !important; transition:none !important}' }); }
  await page.notebook.selectCells(0);
  const t0 = Date.now();
  await page.evaluate(() => { void (window as any).jupyterapp.commands.execute('jupyter-copilot:explain-cell'); });
  const panel = page.locator('#jp-copilot-explain-panel');
  await expect(panel).toHaveAttribute('data-state', 'streaming', { timeout: 170000 });
  console.log('streaming after', Date.now() - t0);
  await expect(panel).toHaveAttribute('data-state', 'done', { timeout: 170000 });
  console.log('done after', Date.now() - t0, await panel.locator('.jp-copilot-ExplainPanel-status').innerText());
  console.log('length', await panel.locator('.jp-copilot-ExplainPanel-answer').getAttribute('data-length'));
});
