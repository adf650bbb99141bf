/**
 * How the copilot fits JupyterLab (issue 15): a block on the empty line after a
 * header, complete lines only, one switch with the Inline Completer setting,
 * notifications, the settings in French, keyboard use and axe-core.
 *
 * The real server and tiny model answer where the plumbing is checked; where a
 * precise reply is needed (a stream cut mid-line, an engine error, a course rule),
 * the route is answered by the test: those check the frontend's logic only.
 */
import AxeBuilder from '@axe-core/playwright';
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { Page, Request } from '@playwright/test';

import {
  bodyOf,
  cellLocator,
  FRENCH_UI,
  openNotebook,
  searchCommandPalette,
  skipWithoutFrench,
  STATUS_ITEM,
  TEST_SETTINGS,
  waitForReady
} from './helpers';

test.use({ mockSettings: TEST_SETTINGS });

const GHOST_TEXT = '.jp-GhostText';
const PROVIDER = '@jupyter-copilot:inline';
const INLINE_COMPLETER = '@jupyterlab/completer-extension:inline-completer';
const TOGGLE = 'jupyter-copilot:toggle-completions';

function isCompleteRequest(request: Request): boolean {
  return request.method() === 'POST' && request.url().includes('/copilot/complete');
}

const LOOP_CELLS = [
  {
    id: 'data',
    cell_type: 'code' as const,
    source:
      'notes = {"Ana": [12, 15], "Léo": [9, 14]}\n\ndef moyenne(valeurs):\n    return sum(valeurs) / len(valeurs)'
  },
  { id: 'loop', cell_type: 'code' as const, source: '' }
];

/** Type the loop header in the empty cell and press Enter (the editor indents). */
async function typeLoopHeader(page: IJupyterLabPageFixture): Promise<void> {
  await page.notebook.enterCellEditingMode(1);
  await page.keyboard.type('for nom in notes:', { delay: 30 });
  await page.keyboard.press('Enter');
}

/** Answer completion requests with one NDJSON body (Playwright cannot hold a stream open). */
async function answerCompletions(page: Page, chunks: object[]): Promise<void> {
  await page.route(/\/copilot\/complete/, route =>
    route.fulfill({
      status: 200,
      contentType: 'application/x-ndjson',
      body: chunks.map(chunk => JSON.stringify(chunk)).join('\n') + '\n'
    })
  );
}

/** The settings registry, from Galata's in-page helper. */
async function inlineProviderEnabled(page: Page): Promise<boolean | undefined> {
  return page.evaluate(
    async ({ plugin, provider }) => {
      const registry = await (window as any).galata.getPlugin(
        '@jupyterlab/apputils-extension:settings'
      );
      const providers = (await registry.get(plugin, 'providers')).composite ?? {};
      return providers[provider]?.enabled;
    },
    { plugin: INLINE_COMPLETER, provider: PROVIDER }
  );
}

test.describe('a block on the empty line after a header', () => {
  test('Enter after `for nom in notes:` asks, and the block is shown', async ({
    page,
    tmpPath
  }) => {
    await openNotebook(page, tmpPath, 'loop.ipynb', LOOP_CELLS);
    await waitForReady(page);
    const sent = page.waitForRequest(
      request => isCompleteRequest(request) && bodyOf(request).prefix?.endsWith('notes:\n    ')
    );
    const answered = page.waitForResponse(
      response =>
        isCompleteRequest(response.request()) &&
        bodyOf(response.request()).prefix?.endsWith('notes:\n    ')
    );
    await typeLoopHeader(page);
    const body = bodyOf(await sent);
    expect(body.suffix).toBe('');
    // What the server suggested there (the tiny model's code is poor; the plumbing
    // is what is checked): its first line is what the ghost text starts with.
    const lines = (await (await answered).text()).trim().split('\n');
    const last = JSON.parse(lines[lines.length - 1]);
    const firstLine = String(last.text ?? '')
      .split('\n')[0]
      .trim();
    test.skip(!firstLine, 'the tiny model suggested nothing there this time');
    const cell = await cellLocator(page, 1);
    await expect(cell.locator(GHOST_TEXT)).toContainText(firstLine);
  });

  test('the block is shown and accepted on the empty indented line', async ({ page, tmpPath }) => {
    await answerCompletions(page, [
      { text: 'print(nom, moyenne(notes[nom]))', done: false },
      { text: 'print(nom, moyenne(notes[nom]))\n    total += 1', done: true }
    ]);
    await openNotebook(page, tmpPath, 'loop-mock.ipynb', LOOP_CELLS);
    await typeLoopHeader(page);
    const cell = await cellLocator(page, 1);
    await expect(cell.locator(GHOST_TEXT)).toContainText('print(nom, moyenne(notes[nom]))');
    await page.keyboard.press('Tab');
    expect(await page.notebook.getCellTextInput(1)).toBe(
      'for nom in notes:\n    print(nom, moyenne(notes[nom]))\n    total += 1'
    );
  });
});

test.describe('accepting an unfinished suggestion', () => {
  test('Tab inserts its complete lines only, never a cut token', async ({ page, tmpPath }) => {
    // The stream ends without `done` (the connection dropped mid-line).
    await answerCompletions(page, [
      { text: 'print(nom)', done: false },
      { text: 'print(nom)\n    print(f', done: false }
    ]);
    await openNotebook(page, tmpPath, 'cut.ipynb', LOOP_CELLS);
    await typeLoopHeader(page);
    const cell = await cellLocator(page, 1);
    await expect(cell.locator(GHOST_TEXT)).toContainText('print(nom)');
    await expect(cell.locator(GHOST_TEXT)).not.toContainText('print(f');
    await page.keyboard.press('Alt+End');
    expect(await page.notebook.getCellTextInput(1)).toBe('for nom in notes:\n    print(nom)');
  });
});

test.describe('one switch', () => {
  test('the Copilot toggle and the Inline Completer setting follow each other', async ({
    page
  }) => {
    await waitForReady(page);
    await expect.poll(() => inlineProviderEnabled(page)).not.toBe(false);
    // Off from the Copilot side (command palette, status item's card)…
    await page.evaluate(id => (window as any).jupyterapp.commands.execute(id), TOGGLE);
    await expect.poll(() => inlineProviderEnabled(page)).toBe(false);
    await expect(page.locator(STATUS_ITEM)).toHaveAttribute('data-state', 'off');
    // …and on again from JupyterLab's Inline Completer setting.
    await page.evaluate(
      async ({ plugin, provider }) => {
        const registry = await (window as any).galata.getPlugin(
          '@jupyterlab/apputils-extension:settings'
        );
        const providers = (await registry.get(plugin, 'providers')).composite ?? {};
        await registry.set(plugin, 'providers', {
          ...providers,
          [provider]: { ...providers[provider], enabled: true }
        });
      },
      { plugin: INLINE_COMPLETER, provider: PROVIDER }
    );
    await expect
      .poll(() => page.evaluate(id => (window as any).jupyterapp.commands.isToggled(id), TOGGLE))
      .toBe(true);
    await expect(page.locator(STATUS_ITEM)).toHaveAttribute('data-state', /ready|busy/);
  });
});

test.describe('notifications', () => {
  const toasts = (page: Page, text: string | RegExp) =>
    page.locator('.Toastify__toast').filter({ hasText: text });

  /** Make the frontend poll now (opening the model card refreshes the status). */
  async function pollStatus(page: Page): Promise<void> {
    await page.locator(STATUS_ITEM).click();
    await page.locator('.jp-Dialog').getByRole('button', { name: 'Close' }).first().click();
  }

  test('a missing model: one toast with the command, however often it is polled', async ({
    page
  }) => {
    await waitForReady(page);
    await page.route(/\/copilot\/status/, route =>
      route.fulfill({
        json: {
          state: 'error',
          features: {},
          detail:
            'model file not found: /models/qwen.gguf. Run: jupyter copilot models pull qwen2.5-coder-1.5b'
        }
      })
    );
    await pollStatus(page);
    const toast = toasts(page, 'jupyter copilot models pull qwen2.5-coder-1.5b');
    await expect(toast).toHaveCount(1);
    await expect(toast.getByRole('button', { name: 'Copy the command' })).toBeVisible();
    await pollStatus(page);
    await pollStatus(page);
    await expect(toast).toHaveCount(1);
  });

  test('quota reached, course rule start and end: one toast each', async ({ page }) => {
    await waitForReady(page);
    let features: object = {
      completion: { mode: 'hint', reason: 'TP noté' },
      quota: {
        daily_tokens: 1000,
        tokens_used_today: 1000,
        tokens_left_today: 0,
        resets_in_seconds: 3600
      }
    };
    await page.route(/\/copilot\/status/, route =>
      route.fulfill({ json: { state: 'ready', features } })
    );
    await pollStatus(page);
    await expect(toasts(page, /quota of 1,000 tokens is used up\. It renews at/)).toHaveCount(1);
    await expect(toasts(page, 'Completions: hints only (course rule). TP noté')).toHaveCount(1);
    await pollStatus(page);
    await expect(toasts(page, /quota/)).toHaveCount(1);
    await expect(toasts(page, /hints only/)).toHaveCount(1);

    features = {};
    await pollStatus(page);
    await expect(toasts(page, 'Completions: available again')).toHaveCount(1);
  });
});

test.describe('keyboard and axe-core', () => {
  async function seriousViolations(page: Page, selector: string) {
    const results = await new AxeBuilder({ page }).include(selector).analyze();
    return results.violations
      .filter(v => v.impact === 'serious' || v.impact === 'critical')
      .map(v => `${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).join(', ')})`);
  }

  test('the status item and the model card work from the keyboard', async ({ page }) => {
    await waitForReady(page);
    const item = page.locator(STATUS_ITEM);
    await item.focus();
    await expect(item).toBeFocused();
    expect(await seriousViolations(page, STATUS_ITEM)).toEqual([]);
    await page.keyboard.press('Enter');
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toBeVisible();
    expect(await seriousViolations(page, '.jp-copilot-ModelCard')).toEqual([]);
    const checkbox = dialog.getByLabel('Enable completions');
    await checkbox.focus();
    await page.keyboard.press('Space');
    await expect(checkbox).not.toBeChecked();
    await expect(item).toHaveAttribute('data-state', 'off');
    await page.keyboard.press('Space');
    await expect(checkbox).toBeChecked();
    await page.keyboard.press('Escape');
    await expect(dialog).toHaveCount(0);
  });

  test('the explanation panel has no serious axe violation', async ({ page, tmpPath }) => {
    await openNotebook(page, tmpPath, 'a11y.ipynb', [
      { id: 'a', cell_type: 'code', source: 'print(sum([1, 2, 3]))' }
    ]);
    await waitForReady(page);
    await page.notebook.selectCells(0);
    await page.evaluate(() =>
      (window as any).jupyterapp.commands.execute('jupyter-copilot:explain-cell')
    );
    const panel = page.locator('.jp-copilot-ExplainPanel');
    await expect(panel).toBeVisible();
    await expect(panel).toHaveAttribute('role', 'region');
    await expect(panel).toHaveAttribute('data-state', /done|stopped|error/, {
      timeout: 300_000
    });
    expect(await seriousViolations(page, '.jp-copilot-ExplainPanel')).toEqual([]);
    // Its buttons are reachable with Tab and show their focus.
    const copy = panel.getByRole('button', { name: 'Copy' });
    await copy.focus();
    await expect(copy).toBeFocused();
  });
});

test.describe('in French', () => {
  test.use(FRENCH_UI);

  test('the Copilot settings are in French in the Settings Editor', async ({ page, request }) => {
    await skipWithoutFrench(request);
    await page.evaluate(() =>
      (window as any).jupyterapp.commands.execute('settingeditor:open', {
        query: 'Copilot'
      })
    );
    const editor = page.locator('.jp-SettingsPanel');
    await expect(editor.getByText('Longueur des suggestions')).toBeVisible();
    await expect(editor.getByText('Nombre maximal de lignes d’une suggestion')).toBeVisible();
  });

  test('the explain commands are in French: cell toolbar, context menu, palette, their settings', async ({
    page,
    request,
    tmpPath
  }) => {
    await skipWithoutFrench(request);
    await openNotebook(
      page,
      tmpPath,
      'menus.ipynb',
      [{ id: 'code', cell_type: 'code', source: "print(len('bonjour'))" }],
      { byCommand: true }
    );
    // schema/explain.json, loaded late through its translating transform: its
    // title and description are French, and JupyterLab still took its toolbar
    // button, context-menu entries and shortcut.
    const explain = await page.evaluate(async () => {
      const registry = await (window as any).galata.getPlugin(
        '@jupyterlab/apputils-extension:settings'
      );
      const schema = registry.plugins['jupyter-copilot:explain']?.schema;
      const app = (window as any).jupyterapp;
      return {
        title: schema?.title,
        description: schema?.description,
        shortcut: app.commands.keyBindings.some(
          (binding: any) => binding.command === 'jupyter-copilot:explain-cell'
        )
      };
    });
    expect(explain.title).toBe('Explications du copilote');
    expect(explain.description).toContain('Paramètres → Copilot');
    expect(explain.shortcut).toBe(true);

    await page.notebook.selectCells(0);
    const cell = await cellLocator(page, 0);
    const button = cell.locator('.jp-cell-toolbar [data-command="jupyter-copilot:explain-cell"]');
    await expect(button).toHaveAttribute('title', /Demander au copilote/);

    await cell.locator('.jp-InputArea-editor').click({ button: 'right' });
    await expect(
      page.locator('.lm-Menu-itemLabel', { hasText: /^Expliquer cette cellule$/ })
    ).toBeVisible();
    await page.keyboard.press('Escape');

    await searchCommandPalette(
      page,
      () =>
        page.evaluate(() =>
          (window as any).jupyterapp.commands.execute('apputils:activate-command-palette')
        ),
      'Copilot',
      [
        'Expliquer cette cellule',
        'Activer les complétions de Copilot',
        'Afficher la fiche du modèle de Copilot'
      ]
    );
    await page.keyboard.press('Escape');
  });
});
