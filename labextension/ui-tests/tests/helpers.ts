/**
 * What the browser tests share: settings, notebook set-up, request checks.
 */
import { expect, galata, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { APIRequestContext, Locator, Page, Request } from '@playwright/test';

/**
 * Galata's settings plus a long provider timeout: on a loaded CI machine the first
 * words may take longer than the 20 s a student would wait.
 */
export const TEST_SETTINGS = {
  ...galata.DEFAULT_SETTINGS,
  '@jupyterlab/completer-extension:inline-completer': {
    providers: { '@jupyter-copilot:inline': { timeout: 120_000 } }
  }
};

/**
 * Fixture options for a JupyterLab in French (needs jupyterlab-language-pack-fr-FR;
 * tests check for it and skip without it).
 */
export const FRENCH_UI = {
  mockSettings: {
    ...TEST_SETTINGS,
    '@jupyterlab/translation-extension:plugin': { locale: 'fr_FR' }
  },
  // Galata waits for a tab named "Launcher"; in French it is "Lanceur".
  waitForApplication: async ({}, use: (wait: (page: any) => Promise<void>) => Promise<void>) => {
    await use(async page => {
      await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
      await page.locator('.jp-Launcher').first().waitFor();
    });
  }
};

/** Skips the running test unless the server has JupyterLab's French language pack. */
export async function skipWithoutFrench(request: APIRequestContext): Promise<void> {
  const reply = await request.get('/lab/api/translations/');
  const languages = Object.keys((await reply.json()).data ?? {});
  test.skip(
    !languages.includes('fr_FR'),
    'the French language pack (jupyterlab-language-pack-fr-FR) is not installed'
  );
}

export const STATUS_ITEM = '.jp-copilot-StatusItem';

export interface INotebookCell {
  cell_type: 'code' | 'markdown';
  source: string;
  id: string;
  /** Saved outputs of a code cell (nbformat), none by default. */
  outputs?: object[];
}

/**
 * Write a notebook through the contents API and open it (typing cells in would
 * itself trigger completions). `byCommand` opens it with `docmanager:open` rather
 * than through the file browser, whose Galata helpers look for English labels.
 */
export async function openNotebook(
  page: IJupyterLabPageFixture,
  tmpPath: string,
  name: string,
  cells: INotebookCell[],
  options: { byCommand?: boolean } = {}
): Promise<string> {
  const notebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' },
      language_info: { name: 'python' }
    },
    cells: cells.map(cell => ({
      ...cell,
      metadata: {},
      ...(cell.cell_type === 'code'
        ? { outputs: cell.outputs ?? [], execution_count: cell.outputs?.length ? 1 : null }
        : {})
    }))
  };
  const filePath = `${tmpPath}/${name}`;
  await page.contents.uploadContent(JSON.stringify(notebook), 'text', filePath);
  if (options.byCommand) {
    await page.evaluate(async path => {
      await (window as any).jupyterapp.commands.execute('docmanager:open', { path });
    }, filePath);
  } else {
    await page.notebook.openByPath(filePath);
  }
  await page.notebook.activate(name);
  return filePath;
}

/**
 * The cell at `index` of the active notebook. Galata 5.1 (the one that matches
 * JupyterLab 4.1, see scripts/test-oldest-jupyterlab) has no `getCellLocator` yet.
 */
export async function cellLocator(page: IJupyterLabPageFixture, index: number): Promise<Locator> {
  const notebook = page.notebook as { getCellLocator?: (index: number) => Promise<Locator | null> };
  if (typeof notebook.getCellLocator === 'function') {
    return (await notebook.getCellLocator(index))!;
  }
  return page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').nth(index);
}

/**
 * Open the command palette with `open` and search it for `query` until each of
 * `labels` is listed. JupyterLab hides its modal palette whenever any command runs
 * (ModalCommandPalette listens to `commandExecuted`), and once a new kernel answers,
 * the help menu runs `helpmenu:get-kernel` (seen on 4.1.8 landing while the palette
 * was open): the palette is then opened again. The query is filled into the input,
 * never typed: once the palette has gone, typed keys would reach the notebook in
 * command mode ("x" cuts the cell).
 */
export async function searchCommandPalette(
  page: IJupyterLabPageFixture,
  open: () => Promise<void>,
  query: string,
  labels: string[]
): Promise<void> {
  const palette = page.locator('#modal-command-palette');
  await expect(async () => {
    if (!(await palette.isVisible())) {
      await open();
    }
    await palette.locator('.lm-CommandPalette-input').fill(query, { timeout: 5_000 });
    for (const label of labels) {
      await expect(palette.locator('.lm-CommandPalette-itemLabel', { hasText: label })).toBeVisible(
        { timeout: 5_000 }
      );
    }
  }).toPass({ timeout: 60_000 });
}

export function isStatusURL(url: URL): boolean {
  return url.pathname.endsWith('/copilot/status');
}

/**
 * Answer GET /copilot/status with the server's real reply, `features` put in its
 * features (a policy, a quota, what a campus relay says). The browser's side only:
 * the server itself is not touched and would still answer as before.
 */
export async function routeStatusFeatures(
  page: Page,
  features: { [feature: string]: unknown }
): Promise<void> {
  await page.route(isStatusURL, async route => {
    const response = await route.fetch();
    const json = await response.json();
    json.features = { ...json.features, ...features };
    await route.fulfill({ response, json });
  });
}

/**
 * `routeStatusFeatures`, and have the frontend read the status at once (it polls every
 * 30 s; the model card asks when it opens).
 */
export async function stubStatusFeatures(
  page: Page,
  features: { [feature: string]: unknown }
): Promise<void> {
  await routeStatusFeatures(page, features);
  await page.locator(STATUS_ITEM).click();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Close' }).first().click();
  await expect(page.locator('.jp-Dialog')).toHaveCount(0);
}

/**
 * Counts the page's requests that `matches`, from now on (`counter.count`): for
 * checks that something was NOT sent.
 */
export function countRequests(
  page: Page,
  matches: (request: Request) => boolean
): { count: number } {
  const counter = { count: 0 };
  page.on('request', request => {
    counter.count += matches(request) ? 1 : 0;
  });
  return counter;
}

/** POST /copilot/explain itself (not /copilot/explain/prepare). */
export function isExplainPost(request: Request): boolean {
  return (
    request.method() === 'POST' && new URL(request.url()).pathname.endsWith('/copilot/explain')
  );
}

export function bodyOf(request: Request): any {
  return JSON.parse(request.postData() ?? '{}');
}

/**
 * Run a cell and wait until the kernel is done with it, in any UI language: Galata's
 * `runCell` waits for the English status bar's "Idle" (forever in French), and
 * Galata 5.1's (the one for JupyterLab 4.1) has no `wait: false`.
 */
export async function runCellAndWait(page: IJupyterLabPageFixture, index: number): Promise<void> {
  // Idle and, once `index` is given, that cell has its execution count.
  const idle = (cell: number | null) =>
    page.waitForFunction(cell => {
      const panel = (window as any).jupyterapp.shell.currentWidget;
      const idle = panel?.sessionContext?.session?.kernel?.status === 'idle';
      return idle && (cell === null || (window as any).galata.haveBeenExecuted(cell));
    }, cell);
  await idle(null); // the kernel has started
  await page.evaluate(cell => (window as any).galata.resetExecutionCount(cell), index);
  // What Galata's `runCell` does, without its wait.
  if (!(await page.notebook.isCellSelected(index))) {
    await page.notebook.selectCells(index);
  }
  await page.keyboard.press('Shift+Enter');
  await idle(index);
}

export async function waitForReady(page: IJupyterLabPageFixture): Promise<void> {
  await expect(page.locator(STATUS_ITEM)).toHaveAttribute('data-state', /ready|busy/, {
    timeout: 120_000
  });
}

/**
 * Counts the kernel's answers to the copilot's namespace probe (the silent execute
 * request of src/kernel/namespace.ts, whose `user_expressions` entry is `copilot`),
 * read on the kernels' websockets: a test waits for the summary to be there rather
 * than sleeping. Create it before the notebook's kernel starts.
 */
export class KernelProbeReplies {
  constructor(page: Page) {
    page.on('websocket', socket => {
      socket.on('framereceived', ({ payload }) => {
        // Kernel protocol v1 frames are binary: a few offsets, then JSON parts.
        const text = typeof payload === 'string' ? payload : payload.toString('utf8');
        if (text.includes('execute_reply') && /"user_expressions":\s*\{\s*"copilot"/.test(text)) {
          this._count++;
        }
      });
    });
  }

  /** Probe replies received so far. */
  get count(): number {
    return this._count;
  }

  /** Resolves once more than `seen` replies have arrived. */
  async waitForMoreThan(seen: number, timeout = 60_000): Promise<void> {
    await expect.poll(() => this._count, { timeout }).toBeGreaterThan(seen);
  }

  private _count = 0;
}
