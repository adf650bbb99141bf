/**
 * "Explain this cell" and "Explain this error" in a real JupyterLab, a real Chromium,
 * a real kernel and a real (tiny) model.
 *
 * SmolLM2-135M writes poor explanations, quickly: the tests check the plumbing (what
 * is sent, where the answer streams, Stop, the policy), never the quality.
 * `COPILOT_SCREENSHOT=1` with a real model re-takes docs/screenshots/explain-error.png
 * (see README.md).
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { Locator, Request } from '@playwright/test';
import * as path from 'path';

import {
  bodyOf,
  cellLocator,
  countRequests,
  FRENCH_UI,
  isExplainPost,
  openNotebook,
  searchCommandPalette,
  STATUS_ITEM,
  stubStatusFeatures,
  TEST_SETTINGS,
  waitForReady
} from './helpers';

test.use({ mockSettings: TEST_SETTINGS });

const PANEL = '#jp-copilot-explain-panel';
const ERROR_BUTTON = '.jp-copilot-ExplainErrorButton button';
const TOOLBAR_BUTTON = '.jp-cell-toolbar [data-command="jupyter-copilot:explain-cell"]';

/** A whole explanation can take a while on a loaded two-core machine. */
const ANSWER_TIMEOUT = 150_000;

const isExplainRequest = isExplainPost;

/**
 * Run the command without waiting for it: it resolves when the answer is complete.
 */
async function explainActiveCell(page: IJupyterLabPageFixture): Promise<void> {
  await page.evaluate(() => {
    void (window as any).jupyterapp.commands.execute('jupyter-copilot:explain-cell');
  });
}

async function runCellAndWaitForError(page: IJupyterLabPageFixture, index: number) {
  await page.notebook.selectCells(index);
  await page.notebook.runCell(index);
  const cell = await cellLocator(page, index);
  await expect(cell.locator('.jp-OutputArea-output[data-mime-type*="stderr"]')).toContainText(
    'KeyError'
  );
  return cell;
}

/**
 * The server's usage counters of this user. Asked through the page's own context:
 * without a token, each new client is a different anonymous user.
 */
async function explainUsage(page: IJupyterLabPageFixture, feature: string) {
  const reply = await page.request.get('/copilot/usage');
  const json = await reply.json();
  return json.features?.[feature] ?? { requests: 0, cancelled: 0 };
}

const PREPARE_FEATURE = 'prepare_explanation';

/** Preparations that ran to their end (a stopped one leaves its prompt half done). */
function finishedPreparations(usage: { requests: number; cancelled: number }): number {
  return usage.requests - usage.cancelled;
}

/**
 * Stop the explanation if it still runs (the tiny model is often done first), so
 * that the engine is free for the next test.
 */
async function stopIfRunning(panel: Locator): Promise<void> {
  await panel.getByRole('button', { name: /^(Stop|Arrêter)$/ }).click({ force: true });
  await expect(panel).toHaveAttribute('data-state', /stopped|done/);
}

async function expectAnswer(panel: Locator): Promise<void> {
  await expect(panel.locator('.jp-copilot-ExplainPanel-answer')).toHaveText(/\S/, {
    timeout: ANSWER_TIMEOUT
  });
}

test.describe('explain this cell', () => {
  test('the cell toolbar button streams an explanation into the panel', async ({
    page,
    tmpPath
  }) => {
    // The whole answer, to its end: on a machine shared with other jobs it can take
    // minutes (the model competes with the browser for the CPU).
    test.setTimeout(ANSWER_TIMEOUT + 120_000);
    const code = 'notes = [12, 15, 9]\nmoyenne = statistics.mean(notes)\nprint(moyenne)';
    const filePath = await openNotebook(page, tmpPath, 'explain-cell.ipynb', [
      { id: 'title', cell_type: 'markdown', source: '# Statistiques' },
      { id: 'imports', cell_type: 'code', source: 'import statistics' },
      { id: 'mean', cell_type: 'code', source: code },
      { id: 'below', cell_type: 'code', source: 'print("below")' }
    ]);
    await waitForReady(page);
    await page.notebook.selectCells(2);
    const cell = await cellLocator(page, 2);
    const button = cell.locator(TOOLBAR_BUTTON);
    await expect(button).toBeVisible();

    const sent = page.waitForRequest(isExplainRequest);
    await button.click();
    const body = bodyOf(await sent);
    expect(body.kind).toBe('cell');
    expect(body.source).toBe(code);
    expect(body.context_cells).toEqual([
      { cell_type: 'markdown', source: '# Statistiques' },
      { cell_type: 'code', source: 'import statistics' }
    ]);
    expect(body.language).toBe('en');
    expect(body.path).toBe(filePath);
    expect(body.editor_id).toBeTruthy();
    expect(body.request_id).toBeTruthy();
    // The teaching mode is the server's to decide, never the browser's.
    expect(body).not.toHaveProperty('mode');

    const panel = page.locator(PANEL);
    await expect(panel).toBeVisible();
    await expect(panel.locator('.jp-copilot-ExplainPanel-title')).toHaveText('Explanation');
    await expect(panel.locator('.jp-copilot-ExplainPanel-subject')).toHaveText(
      'Cell 3 of explain-cell.ipynb'
    );
    await expectAnswer(panel);
    await expect(panel.locator('.jp-copilot-ExplainPanel-model')).toContainText(
      'Written by SmolLM2-135M-Instruct'
    );
    await expect(panel.locator('.jp-copilot-ExplainPanel-warning')).toContainText('AI-generated');
    await expect(panel).toHaveAttribute('data-state', 'done', { timeout: ANSWER_TIMEOUT });
    await expect(panel.locator('.jp-copilot-ExplainPanel-status')).toHaveText(/^Done/);
    await expect(panel.getByRole('button', { name: 'Stop' })).toBeDisabled();

    // Copy puts the markdown itself on the clipboard.
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
    await panel.getByRole('button', { name: 'Copy' }).click();
    await expect(panel.getByRole('button', { name: 'Copied' })).toBeVisible();
    const copied: string = await page.evaluate(() => navigator.clipboard.readText());
    expect(copied.length).toBe(
      Number(await panel.locator('.jp-copilot-ExplainPanel-answer').getAttribute('data-length'))
    );
  });

  test('the command palette and the context menu offer it on code cells', async ({
    page,
    tmpPath
  }) => {
    await openNotebook(page, tmpPath, 'menus.ipynb', [
      { id: 'text', cell_type: 'markdown', source: 'Some *text*' },
      { id: 'code', cell_type: 'code', source: 'x = 1' }
    ]);
    await waitForReady(page);
    await page.notebook.selectCells(1);

    await searchCommandPalette(
      page,
      () => page.keyboard.press('Control+Shift+C'),
      'Explain This Cell',
      ['Explain This Cell']
    );
    await page.keyboard.press('Escape');

    await (await cellLocator(page, 1)).click({ button: 'right' });
    const menu = page.locator('.lm-Menu');
    await expect(menu.getByText('Explain This Cell')).toBeVisible();
    // No error in this cell: nothing to explain there (Lumino hides the item).
    await expect(menu.getByText('Explain This Error')).toBeHidden();
    await page.keyboard.press('Escape');

    // A markdown cell has no code to explain.
    await page.notebook.selectCells(0);
    await expect((await cellLocator(page, 0)).locator(TOOLBAR_BUTTON)).toBeHidden();
  });

  test('Stop ends the stream and the generation', async ({ page, tmpPath }) => {
    await openNotebook(page, tmpPath, 'stop.ipynb', [
      {
        id: 'loop',
        cell_type: 'code',
        source:
          'total = 0\nfor i in range(10):\n    if i % 2 == 0:\n        total += i\nprint(total)'
      }
    ]);
    await waitForReady(page);
    const before = await explainUsage(page, 'explain_cell');

    // The keyboard shortcut, in command mode: E, E.
    await page.notebook.selectCells(0);
    await page.locator('.jp-Notebook').press('Escape');
    const sent = page.waitForRequest(isExplainRequest);
    await page.keyboard.press('e');
    await page.keyboard.press('e');
    const request_ = await sent;

    // At once: the tiny model may write its whole answer in a few seconds, and only
    // a generation still running shows that Stop reaches the server.
    const panel = page.locator(PANEL);
    await expect(panel).toHaveAttribute('data-state', /waiting|streaming/);
    const aborted = page.waitForEvent('requestfailed', failed => failed === request_);
    await panel.getByRole('button', { name: 'Stop' }).click();
    await aborted;
    await expect(panel).toHaveAttribute('data-state', 'stopped');
    await expect(panel.locator('.jp-copilot-ExplainPanel-status')).toHaveText('Stopped.');
    await expect(panel.getByRole('button', { name: 'Stop' })).toBeDisabled();

    // Nothing more is shown…
    const answer = panel.locator('.jp-copilot-ExplainPanel-answer');
    const length = await answer.getAttribute('data-length');
    await page.waitForTimeout(1_500);
    expect(await answer.getAttribute('data-length')).toBe(length);
    // …and the server saw the disconnection and stopped generating.
    await expect
      .poll(async () => (await explainUsage(page, 'explain_cell')).cancelled, {
        timeout: 30_000
      })
      .toBe(before.cancelled + 1);
  });
});

test.describe('explain this error', () => {
  test('a button under the error sends it, and the panel explains it', async ({
    page,
    tmpPath
  }) => {
    const source = "d = {}\nd['x']";
    await openNotebook(page, tmpPath, 'keyerror.ipynb', [
      { id: 'setup', cell_type: 'code', source: 'import math' },
      { id: 'lookup', cell_type: 'code', source }
    ]);
    await waitForReady(page);
    if (process.env.COPILOT_SCREENSHOT) {
      // Room for the notebook and a readable panel in the picture.
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.sidebar.close('left');
    }
    const cell = await runCellAndWaitForError(page, 1);
    const button = cell.locator(ERROR_BUTTON);
    await expect(button).toHaveText('Explain this error');

    const sent = page.waitForRequest(isExplainRequest);
    await button.click();
    const body = bodyOf(await sent);
    expect(body.kind).toBe('error');
    expect(body.source).toBe(source);
    expect(body.error.ename).toBe('KeyError');
    expect(body.error.evalue).toBe("'x'");
    expect(body.error.traceback.join('\n')).toContain('KeyError');
    expect(body.context_cells).toEqual([{ cell_type: 'code', source: 'import math' }]);
    expect(body.language).toBe('en');
    expect(body).not.toHaveProperty('mode');

    const panel = page.locator(PANEL);
    await expect(panel.locator('.jp-copilot-ExplainPanel-subject')).toHaveText(
      "KeyError: 'x' in cell 2 of keyerror.ipynb"
    );
    await expectAnswer(panel);
    await expect(panel.locator('.jp-copilot-ExplainPanel-model')).toContainText('Written by');

    if (!process.env.COPILOT_SCREENSHOT) {
      await stopIfRunning(panel);
    } else {
      // The README's picture (taken with a real code model, see README.md).
      test.setTimeout(600_000);
      await expect(panel).toHaveAttribute('data-state', 'done', { timeout: 540_000 });
      // A wider panel (drag the right sidebar's edge), read from the top.
      const edge = page
        .locator('#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)')
        .last();
      const box = (await edge.boundingBox())!;
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x - 120, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
      await panel.locator('.jp-copilot-ExplainPanel-answer').evaluate(node => {
        node.scrollTop = 0;
      });
      await page.screenshot({
        path: path.resolve(__dirname, '../../../docs/screenshots/explain-error.png')
      });
    }

    // The context menu offers it too, now that the cell has an error.
    await cell.click({ button: 'right' });
    await expect(page.locator('.lm-Menu').getByText('Explain This Error')).toBeVisible();
    await page.keyboard.press('Escape');

    // Clearing the outputs takes the button away with the error.
    await page.evaluate(() =>
      (window as any).jupyterapp.commands.execute('notebook:clear-cell-output')
    );
    await expect(cell.locator(ERROR_BUTTON)).toHaveCount(0);
  });
});

test.describe('explain a saved error', () => {
  test('a notebook opened with an error output shows the button at once', async ({
    page,
    tmpPath
  }) => {
    const error = {
      output_type: 'error',
      ename: 'ZeroDivisionError',
      evalue: 'division by zero',
      traceback: ['\u001b[0;31mZeroDivisionError\u001b[0m: division by zero']
    };
    await openNotebook(page, tmpPath, 'saved-error.ipynb', [
      { id: 'ok', cell_type: 'code', source: 'x = 1' },
      { id: 'boom', cell_type: 'code', source: 'x / 0', outputs: [error] }
    ]);
    await waitForReady(page);
    const cells = page.locator('.jp-Notebook .jp-CodeCell');
    await expect(cells.nth(0).locator(ERROR_BUTTON)).toHaveCount(0);
    const button = cells.nth(1).locator(ERROR_BUTTON);
    await expect(button).toBeVisible();

    const sent = page.waitForRequest(isExplainRequest);
    await button.click();
    const body = bodyOf(await sent);
    expect(body.kind).toBe('error');
    expect(body.source).toBe('x / 0');
    expect(body.error).toEqual({
      ename: 'ZeroDivisionError',
      evalue: 'division by zero',
      traceback: error.traceback
    });
    await stopIfRunning(page.locator(PANEL));
  });
});

test.describe('course policy', () => {
  test('explanations turned off: no button, no command', async ({ page, tmpPath }) => {
    await openNotebook(page, tmpPath, 'exam.ipynb', [
      { id: 'lookup', cell_type: 'code', source: "d = {}\nd['x']" }
    ]);
    await waitForReady(page);
    await stubStatusFeatures(page, {
      explain_cell: { mode: 'off', reason: 'exam in progress' },
      explain_error: { mode: 'off', reason: 'exam in progress' }
    });
    const requests = countRequests(page, isExplainRequest);

    const cell = await runCellAndWaitForError(page, 0);
    await expect(cell.locator(ERROR_BUTTON)).toBeHidden();
    await page.notebook.selectCells(0);
    await expect(cell.locator('.jp-cell-toolbar')).toBeVisible();
    await expect(cell.locator(TOOLBAR_BUTTON)).toBeHidden();

    await cell.click({ button: 'right' });
    const menu = page.locator('.lm-Menu');
    await expect(menu.getByText('Clear Cell Output')).toBeVisible();
    await expect(menu.getByText('Explain This Cell')).toBeHidden();
    await expect(menu.getByText('Explain This Error')).toBeHidden();
    await page.keyboard.press('Escape');

    // The shortcut does nothing either.
    await page.locator('.jp-Notebook').press('Escape');
    await page.keyboard.press('e');
    await page.keyboard.press('e');
    await page.waitForTimeout(1_500);
    expect(requests.count).toBe(0);

    // Back on (the exam is over): the button comes back.
    await stubStatusFeatures(page, {
      explain_cell: { mode: 'on' },
      explain_error: { mode: 'on' }
    });
    await expect(cell.locator(ERROR_BUTTON)).toBeVisible();
  });

  test('hint mode labels the panel "Hint"', async ({ page, tmpPath }) => {
    await openNotebook(page, tmpPath, 'hint.ipynb', [
      { id: 'code', cell_type: 'code', source: 'x = [1, 2, 3]\nprint(sum(x) / len(x))' }
    ]);
    await waitForReady(page);
    await stubStatusFeatures(page, {
      explain_cell: { mode: 'hint', reason: 'guidance only' }
    });
    const sent = page.waitForRequest(isExplainRequest);
    await explainActiveCell(page);
    expect(bodyOf(await sent)).not.toHaveProperty('mode');
    const panel = page.locator(PANEL);
    await expect(panel).toHaveAttribute('data-mode', 'hint');
    await expect(panel.locator('.jp-copilot-ExplainPanel-title')).toHaveText('Hint');
    await expect(panel.locator('.jp-copilot-ExplainPanel-hintNote')).toContainText('Hint mode');
    await stopIfRunning(panel);
  });
});

test.describe('language', () => {
  test.use({
    mockSettings: { ...TEST_SETTINGS, 'jupyter-copilot:plugin': { explainLanguage: 'fr' } }
  });

  test('the explainLanguage setting overrides JupyterLab’s', async ({ page, tmpPath }) => {
    await openNotebook(page, tmpPath, 'langue.ipynb', [
      { id: 'code', cell_type: 'code', source: 'print("bonjour")' }
    ]);
    await waitForReady(page);
    const sent = page.waitForRequest(isExplainRequest);
    await explainActiveCell(page);
    expect(bodyOf(await sent).language).toBe('fr');
    // The interface itself stays in English.
    const panel = page.locator(PANEL);
    await expect(panel.locator('.jp-copilot-ExplainPanel-title')).toHaveText('Explanation');
    await stopIfRunning(panel);
  });
});

test.describe('in French', () => {
  test.use(FRENCH_UI);

  test('explanations are asked for in French, the panel speaks French', async ({
    page,
    request,
    tmpPath
  }) => {
    const reply = await request.get('/lab/api/translations/');
    const languages = Object.keys((await reply.json()).data ?? {});
    test.skip(
      !languages.includes('fr_FR'),
      'the French language pack (jupyterlab-language-pack-fr-FR) is not installed'
    );
    await openNotebook(
      page,
      tmpPath,
      'francais.ipynb',
      [{ id: 'code', cell_type: 'code', source: 'print(len("bonjour"))' }],
      { byCommand: true }
    );
    await expect(page.locator(STATUS_ITEM)).toHaveAttribute('data-state', /ready|busy/, {
      timeout: 120_000
    });
    await page.notebook.selectCells(0);
    const cell = await cellLocator(page, 0);
    await expect(cell.locator(TOOLBAR_BUTTON)).toHaveAttribute('title', /Demander au copilote/);
    const sent = page.waitForRequest(isExplainRequest);
    await cell.locator(TOOLBAR_BUTTON).click();
    expect(bodyOf(await sent).language).toBe('fr');
    const panel = page.locator(PANEL);
    await expect(panel.locator('.jp-copilot-ExplainPanel-title')).toHaveText('Explication');
    await expect(panel.locator('.jp-copilot-ExplainPanel-subject')).toHaveText(
      'Cellule 1 de francais.ipynb'
    );
    await expect(panel.locator('.jp-copilot-ExplainPanel-warning')).toContainText(
      'Généré par une IA'
    );
    await stopIfRunning(panel);
    await expect(panel.locator('.jp-copilot-ExplainPanel-status')).toHaveText(/Arrêté|Terminé/);
  });
});

test.describe('explanations prepared ahead', () => {
  function isPrepare(request: Request): boolean {
    return (
      request.method() === 'POST' &&
      new URL(request.url()).pathname.endsWith('/copilot/explain/prepare')
    );
  }

  /** The final chunk of an explanation's NDJSON stream. */
  async function lastChunk(response: import('@playwright/test').Response): Promise<any> {
    const lines = (await response.text()).split('\n').filter(line => line.trim());
    return JSON.parse(lines[lines.length - 1]);
  }

  test('with the panel open, the cell the student settles in is prepared, then a failed one', async ({
    page,
    tmpPath
  }) => {
    test.setTimeout(ANSWER_TIMEOUT + 120_000);
    const code = 'notes = [12, 15, 9]\ntotal = sum(notes)\nprint(total / len(notes))';
    await openNotebook(page, tmpPath, 'prepare.ipynb', [
      { id: 'imports', cell_type: 'code', source: 'import math' },
      { id: 'mean', cell_type: 'code', source: code },
      { id: 'lookup', cell_type: 'code', source: "d = {}\nd['x']" }
    ]);
    await waitForReady(page);
    // The panel closed, moving around prepares nothing (the warm-up still goes).
    const prepares = countRequests(page, isPrepare);
    await page.notebook.selectCells(0);
    await explainActiveCell(page);
    const panel = page.locator(PANEL);
    await expectAnswer(panel);
    await stopIfRunning(panel);
    expect(prepares.count).toBe(0);

    // The panel open: settling in the next cell prepares its explanation, with the
    // body the click will send. The server's usage counts every test's preparations
    // (a failed cell of an earlier test may have had its own, finished or stopped):
    // this one is done when one more finished preparation is counted.
    const finishedBefore = finishedPreparations(await explainUsage(page, PREPARE_FEATURE));
    const prepared = page.waitForRequest(isPrepare);
    await page.notebook.selectCells(1);
    const body = bodyOf(await prepared);
    expect(body.kind).toBe('cell');
    expect(body.source).toBe(code);
    expect(body.context_cells).toEqual([{ cell_type: 'code', source: 'import math' }]);
    expect(body.language).toBe('en');
    // Done when the server counts it (in the usage, apart from explanations).
    await expect
      .poll(
        async () =>
          finishedPreparations(await explainUsage(page, PREPARE_FEATURE)) - finishedBefore,
        { timeout: ANSWER_TIMEOUT }
      )
      .toBeGreaterThanOrEqual(1);
    // And nothing left running (an earlier test's preparation may be what was counted).
    await expect
      .poll(
        async () => {
          const features = (await (await page.request.get('/copilot/status')).json()).features;
          return Boolean(features.busy) || Number(features.queue ?? 0) > 0;
        },
        { timeout: ANSWER_TIMEOUT }
      )
      .toBe(false);
    // Asked for now, the explanation finds its whole prompt evaluated but one token.
    const answered = page.waitForResponse(
      response => isExplainRequest(response.request()) && response.status() === 200
    );
    await explainActiveCell(page);
    const final = await lastChunk(await answered);
    expect(final.done).toBe(true);
    expect(final.timing.prompt_tokens - final.timing.cached_tokens).toBeLessThanOrEqual(1);
    await stopIfRunning(panel);

    // A cell that fails: its error's explanation is prepared.
    const preparedError = page.waitForRequest(
      request => isPrepare(request) && bodyOf(request).kind === 'error'
    );
    await runCellAndWaitForError(page, 2);
    const errorBody = bodyOf(await preparedError);
    expect(errorBody.source).toBe("d = {}\nd['x']");
    expect(errorBody.error.ename).toBe('KeyError');
  });

  test('typing in the cell pushes the preparation back: it carries the cell as typed', async ({
    page,
    tmpPath
  }) => {
    test.setTimeout(ANSWER_TIMEOUT + 120_000);
    await openNotebook(page, tmpPath, 'prepare-typing.ipynb', [
      { id: 'imports', cell_type: 'code', source: 'import math' },
      { id: 'root', cell_type: 'code', source: 'x = math.sqrt(2)' }
    ]);
    await waitForReady(page);
    await page.notebook.selectCells(0);
    await explainActiveCell(page);
    const panel = page.locator(PANEL);
    await expectAnswer(panel);
    await stopIfRunning(panel);

    const prepared = page.waitForRequest(isPrepare);
    await page.notebook.enterCellEditingMode(1);
    await page.keyboard.press('End');
    // Four edits a second apart: each one within the 2.5 s pause before preparing.
    for (const text of ['\ny', ' =', ' x', ' * 2']) {
      await page.keyboard.type(text);
      await page.waitForTimeout(1_000);
    }
    const body = bodyOf(await prepared);
    expect(body.kind).toBe('cell');
    expect(body.source).toBe('x = math.sqrt(2)\ny = x * 2');
  });

  test.describe('turned off', () => {
    test.use({
      mockSettings: { ...TEST_SETTINGS, 'jupyter-copilot:plugin': { prepareExplanations: false } }
    });

    test('the setting turns it off', async ({ page, tmpPath }) => {
      await openNotebook(page, tmpPath, 'prepare-off.ipynb', [
        { id: 'imports', cell_type: 'code', source: 'import math' },
        { id: 'lookup', cell_type: 'code', source: "d = {}\nd['x']" }
      ]);
      await waitForReady(page);
      const prepares = countRequests(page, isPrepare);
      await runCellAndWaitForError(page, 1);
      // Nothing to wait for but time: longer than the preparation's delay (2.5 s).
      await page.waitForTimeout(4_000);
      expect(prepares.count).toBe(0);
    });
  });
});
