/**
 * Follow-up questions grounded in the course, in a real JupyterLab, Chromium, kernel
 * and (tiny) model. start-server.sh sets `course/` (ui-tests/course) as the course
 * material, inside the server's root: a citation opens the course notebook.
 *
 * SmolLM2-135M writes poor answers: the tests check the conversation's plumbing
 * (history sent back signed, sources shown and opened), never the prose.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { Request } from '@playwright/test';

import {
  bodyOf,
  FRENCH_UI,
  isExplainPost,
  openNotebook,
  runCellAndWait,
  TEST_SETTINGS,
  waitForReady
} from './helpers';

test.use({ mockSettings: TEST_SETTINGS });
// Two whole answers per test, from a CPU model on a loaded CI machine.
test.describe.configure({ timeout: 900_000 });

const PANEL = '#jp-copilot-explain-panel';
const ERROR_BUTTON = '.jp-copilot-ExplainErrorButton button';
const ASK_INPUT = `${PANEL} .jp-copilot-ExplainPanel-askInput`;
const SOURCE_LINK = `${PANEL} .jp-copilot-ExplainPanel-answer ~ .jp-copilot-ExplainPanel-sources .jp-copilot-ExplainPanel-sourceLink`;
// SmolLM2 writes up to explain_max_tokens (400) tokens: minutes on a loaded 2-core machine.
const ANSWER_TIMEOUT = 300_000;

function isQuestion(request: Request): boolean {
  return isExplainPost(request) && bodyOf(request).kind === 'question';
}

/**
 * The server's count of questions of this user (`requests` or `cancelled`), asked
 * through the page's context: the same (cookie) user as the panel.
 */
async function askUsage(page: IJupyterLabPageFixture, field: 'requests' | 'cancelled') {
  const reply = await page.request.get('/copilot/usage');
  return ((await reply.json()).features?.ask?.[field] as number | undefined) ?? 0;
}

const ERROR_NOTEBOOK = [
  { id: 'setup', cell_type: 'code' as const, source: "fruits = ['pomme', 'poire']" },
  { id: 'bug', cell_type: 'code' as const, source: 'fruits.size' }
];

test('a follow-up under an error explanation cites the course; a click opens it', async ({
  page,
  tmpPath
}) => {
  await openNotebook(page, tmpPath, 'follow-up.ipynb', ERROR_NOTEBOOK);
  await waitForReady(page);
  await runCellAndWait(page, 0);
  await runCellAndWait(page, 1);
  await page.locator(ERROR_BUTTON).first().click();
  const panel = page.locator(PANEL);
  await expect(panel).toHaveAttribute('data-state', 'done', { timeout: ANSWER_TIMEOUT });
  // The explanation already cites the course's section on len and size.
  await expect(page.locator(SOURCE_LINK).first()).toHaveAttribute(
    'data-path',
    'course/listes.ipynb'
  );

  const asked = page.waitForRequest(isQuestion);
  await page.locator(ASK_INPUT).fill('Why len and not size?');
  await page.locator(ASK_INPUT).press('Enter');
  const body = bodyOf(await asked);
  expect(body.question).toBe('Why len and not size?');
  expect(body.source).toBe('fruits.size');
  expect(body.error.ename).toBe('AttributeError');
  // The explanation goes back as a signed assistant turn.
  expect(body.history.map((turn: any) => turn.role)).toEqual(['user', 'assistant']);
  expect(body.history[1].signature).toMatch(/^[0-9a-f]{40}$/);

  await expect(panel).toHaveAttribute('data-state', 'done', { timeout: ANSWER_TIMEOUT });
  await expect(panel.locator('.jp-copilot-ExplainPanel-turn')).toHaveCount(1); // the explanation
  await expect(panel.locator('.jp-copilot-ExplainPanel-question').last()).toHaveText(
    'Why len and not size?'
  );
  const source = page.locator(SOURCE_LINK).first();
  await expect(source).toHaveAttribute('data-path', 'course/listes.ipynb');
  await expect(source).toHaveAttribute('data-cell', '2');
  await expect(source).toContainText('Longueur');

  await source.click();
  await expect(page.locator('.jp-mod-current[role="tab"]')).toContainText('listes.ipynb');
  // The cell is made active once the notebook's model is loaded (`openSource` waits
  // for `context.ready` after the tab shows): read it until then.
  await expect
    .poll(() =>
      page.evaluate(() => {
        const widget = (window as any).jupyterapp.shell.currentWidget;
        return widget?.content?.activeCellIndex;
      })
    )
    .toBe(2);
});

test('a free question without an explanation; a newer one cancels the older', async ({
  page,
  tmpPath
}) => {
  await openNotebook(page, tmpPath, 'free.ipynb', [
    { id: 'a', cell_type: 'code', source: "ages = {'alice': 20}\nages['bob']" }
  ]);
  await waitForReady(page);
  // "Ask the Copilot…" opens the panel with the focus in its question box.
  await page.evaluate(async () => {
    const app = (window as any).jupyterapp;
    await app.commands.execute('jupyter-copilot:ask-question');
  });
  const panel = page.locator(PANEL);
  await expect(page.locator(ASK_INPUT)).toBeFocused();
  const cancelledBefore = await askUsage(page, 'cancelled');
  const first = page.waitForRequest(isQuestion);
  await page.locator(ASK_INPUT).fill('What does KeyError mean for a dict?');
  await page.locator(ASK_INPUT).press('Enter');
  const firstRequest = await first;
  // Asking again at once stops the first answer (and the server cancels it).
  const aborted = page.waitForEvent('requestfailed', failed => failed === firstRequest);
  await page.locator(ASK_INPUT).fill('How do I read a missing key with a default?');
  const second = page.waitForRequest(isQuestion);
  await page.locator(ASK_INPUT).press('Enter');
  const body = bodyOf(await second);
  expect(body.editor_id).toBeTruthy();
  expect(body.editor_id).toBe(bodyOf(firstRequest).editor_id);
  await aborted;
  await expect
    .poll(() => askUsage(page, 'cancelled'), { timeout: 60_000 })
    .toBe(cancelledBefore + 1);
  await expect(panel).toHaveAttribute('data-state', 'done', { timeout: ANSWER_TIMEOUT });
  await expect(page.locator(SOURCE_LINK).first()).toHaveAttribute(
    'data-path',
    'course/dictionaries.ipynb'
  );
});

test.describe('in French', () => {
  test.use(FRENCH_UI);

  test('a follow-up in French, sources in French', async ({ page, request, tmpPath }) => {
    const reply = await request.get('/lab/api/translations/');
    const languages = Object.keys((await reply.json()).data ?? {});
    test.skip(
      !languages.includes('fr_FR'),
      'the French language pack (jupyterlab-language-pack-fr-FR) is not installed'
    );
    await openNotebook(page, tmpPath, 'suite.ipynb', ERROR_NOTEBOOK, { byCommand: true });
    await waitForReady(page);
    await runCellAndWait(page, 0);
    await runCellAndWait(page, 1);
    await page.locator(ERROR_BUTTON).first().click();
    const panel = page.locator(PANEL);
    await expect(panel).toHaveAttribute('data-state', 'done', { timeout: ANSWER_TIMEOUT });
    const asked = page.waitForRequest(isQuestion);
    await page.locator(ASK_INPUT).fill('pourquoi len et pas size ?');
    await page.locator(ASK_INPUT).press('Enter');
    const body = bodyOf(await asked);
    expect(body.language).toBe('fr');
    expect(body.history[0].content).toContain('Explique cette erreur');
    await expect(panel).toHaveAttribute('data-state', 'done', { timeout: ANSWER_TIMEOUT });
    await expect(panel.locator('.jp-copilot-ExplainPanel-sourcesTitle').last()).toHaveText(
      'Tiré de votre cours'
    );
    await expect(page.locator(SOURCE_LINK).first()).toContainText('cellule 3');
  });
});
