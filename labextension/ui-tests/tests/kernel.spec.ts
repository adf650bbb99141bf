/**
 * Kernel-aware completions (issue 14): after a cell that reads a CSV runs, the next
 * completion request carries the kernel's live names, and `df["` suggests one of
 * the file's columns, which appear nowhere in the notebook's code.
 *
 * Needs pandas in the kernel's environment (the `test` extra).
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { Request } from '@playwright/test';

import {
  bodyOf,
  cellLocator,
  isExplainPost,
  KernelProbeReplies,
  openNotebook,
  TEST_SETTINGS,
  waitForReady
} from './helpers';

test.use({ mockSettings: TEST_SETTINGS });

const COLUMNS = ['wingspan_mm', 'beak_depth_mm', 'nesting_island'];
const CSV = `${COLUMNS.join(',')}\n212.5,18.1,Dream\n198.0,17.4,Biscoe\n`;
const GHOST_TEXT = '.jp-GhostText';
const STREAMING = '.jp-GhostText-streamingIndicator';

function isCompletionAfter(prefix: string) {
  return (request: Request) =>
    request.method() === 'POST' &&
    request.url().includes('/copilot/complete') &&
    String(bodyOf(request).prefix ?? '').endsWith(prefix);
}

/**
 * Open a notebook that reads birds.csv and run its first cell; resolves once the
 * kernel has answered the copilot's probe that followed (the summary is then known),
 * or, with `probed: false`, as soon as the cell has run.
 */
async function openAndRunBirds(
  page: IJupyterLabPageFixture,
  tmpPath: string,
  name: string,
  options: { probed?: boolean } = {}
) {
  const probes = new KernelProbeReplies(page);
  await page.contents.uploadContent(CSV, 'text', `${tmpPath}/birds.csv`);
  await openNotebook(page, tmpPath, name, [
    { id: 'load', cell_type: 'code', source: 'import pandas as pd\ndf = pd.read_csv("birds.csv")' },
    { id: 'use', cell_type: 'code', source: '' }
  ]);
  await waitForReady(page);
  await page.notebook.runCell(0);
  if (options.probed ?? true) {
    await probes.waitForMoreThan(0);
  }
  return probes;
}

test.describe('kernel-aware completions', () => {
  test('after the cell runs, df[" suggests a real column', async ({ page, tmpPath }) => {
    // The summary is read once the kernel is idle again (after a short delay).
    await openAndRunBirds(page, tmpPath, 'birds.ipynb');

    await page.notebook.enterCellEditingMode(1);
    const sent = page.waitForRequest(isCompletionAfter('df["'));
    await page.keyboard.type('df["', { delay: 30 });
    const body = bodyOf(await sent);
    const frame = (body.kernel_namespace ?? []).find((entry: any) => entry.name === 'df');
    expect(frame?.summary).toContain("'wingspan_mm' float64");
    expect(frame?.summary).toContain("'nesting_island'");
    // Never the values: the kernel's data stays in the kernel.
    expect(JSON.stringify(body.kernel_namespace)).not.toContain('Dream');

    const cell = await cellLocator(page, 1);
    await expect(cell.locator(GHOST_TEXT)).toHaveText(/\S/);
    await expect(cell.locator(STREAMING)).toHaveCount(0);
    const suggestion = await cell.locator(GHOST_TEXT).innerText();
    expect(COLUMNS.some(column => suggestion.startsWith(column))).toBe(true);
  });

  test('explaining a cell, and asking, send the names the completions have', async ({
    page,
    tmpPath
  }) => {
    // The explanation is written after the notebook as the completions' prompts show
    // it (kernel names included), so that it finds their cache.
    await openAndRunBirds(page, tmpPath, 'explain.ipynb');
    await page.notebook.setCell(1, 'code', 'df.describe()');
    await page.notebook.selectCells(1);
    const sent = page.waitForRequest(isExplainPost);
    await page.evaluate(() => {
      void (window as any).jupyterapp.commands.execute('jupyter-copilot:explain-cell');
    });
    const body = bodyOf(await sent);
    expect(body.kind).toBe('cell');
    const frame = (body.kernel_namespace ?? []).find((entry: any) => entry.name === 'df');
    expect(frame?.summary).toContain("'beak_depth_mm' float64");

    // A question carries them too (its chat shows them as a section); asking stops
    // the explanation still being written.
    const askInput = page.locator('#jp-copilot-explain-panel .jp-copilot-ExplainPanel-askInput');
    await expect(askInput).toBeVisible();
    const asked = page.waitForRequest(
      request => isExplainPost(request) && bodyOf(request).kind === 'question'
    );
    await askInput.fill('Which columns?');
    await askInput.press('Enter');
    const question = bodyOf(await asked);
    expect(JSON.stringify(question.kernel_namespace)).toContain('nesting_island');
  });

  test('the summary is silent: no execution count, no output', async ({ page, tmpPath }) => {
    await openAndRunBirds(page, tmpPath, 'silent.ipynb');
    await page.notebook.setCell(1, 'code', 'len(In)');
    await page.notebook.runCell(1);
    // In[0] is empty, then the two cells: the summary left no history entry.
    const cell = await cellLocator(page, 1);
    await expect(cell.locator('.jp-OutputArea-output')).toHaveText('3');
    await expect(cell.locator('.jp-InputPrompt')).toContainText('[2]');
  });
});

test.describe('kernel-aware completions, turned off', () => {
  test.use({
    mockSettings: { ...TEST_SETTINGS, 'jupyter-copilot:plugin': { kernelContext: false } }
  });

  test('the setting turns it off', async ({ page, tmpPath }) => {
    const probes = await openAndRunBirds(page, tmpPath, 'off.ipynb', { probed: false });
    // Nothing to wait for but time: where the probe would have answered (300 ms after
    // the cell), no answer came.
    await page.waitForTimeout(1_500);
    expect(probes.count).toBe(0);
    await page.notebook.enterCellEditingMode(1);
    const sent = page.waitForRequest(isCompletionAfter('df["'));
    await page.keyboard.type('df["', { delay: 30 });
    expect(bodyOf(await sent).kernel_namespace ?? []).toEqual([]);
  });
});
