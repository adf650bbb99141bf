/**
 * The copilot console in a real JupyterLab, a real Chromium, against a real copilot
 * service and JupyterHub (campus/start_campus.py): prof (staff) reads the course's
 * usage (plot, table, CSV) and switches it to hints only for the next hour; alice
 * (a student of the course) then gets hints, and 403 on every staff route.
 */
import { expect, galata, test } from '@jupyterlab/galata';

import { FRENCH_UI } from '../tests/helpers';

const OPEN = 'jupyter-copilot:open-console';
const CONSOLE = '#jp-copilot-console';
const port = Number(process.env.COPILOT_CAMPUS_PORT ?? '8890');
const ALICE = `http://localhost:${port + 1}`;

test.use({ mockSettings: galata.DEFAULT_SETTINGS });

async function openConsole(page: any, request: any): Promise<void> {
  // The status must come first: it says whether this user is staff. Asked outside
  // the page (JupyterLab's own connections to its server are not held up by it).
  await expect
    .poll(
      async () => {
        const reply = await request.get('/copilot/status', { timeout: 20_000 });
        return (await reply.json()).features?.staff;
      },
      { timeout: 120_000 }
    )
    .toBe(true);
  await page.evaluate(async (id: string) => {
    await (window as any).jupyterapp.commands.execute(id);
  }, OPEN);
  await expect(page.locator(CONSOLE)).toBeVisible();
}

test('staff read the course usage: plot, table and CSV', async ({ page, request }) => {
  await openConsole(page, request);
  const usage = page.locator('.jp-copilot-Console-usage');
  await usage.getByRole('button', { name: 'Show' }).click();
  const table = usage.getByRole('table', { name: 'Usage per day and feature' });
  const today = table.locator('tbody tr').filter({ hasText: 'Completions' }).last();
  // Seeded: 4 completions today in l1-python (3 alice, 1 bob), 1 explanation.
  await expect(today.locator('td').nth(2)).toHaveText('4');
  await expect(table.locator('tbody tr').filter({ hasText: 'Explain this cell' })).toHaveCount(1);
  await expect(usage.locator('.jp-copilot-Console-summary')).toContainText('6 requests');
  // JupyterLab's Vega-Lite renderer drew the plot.
  await expect(
    usage.locator('.jp-copilot-Console-chart').locator('canvas, svg').first()
  ).toBeVisible();
  if (process.env.COPILOT_SCREENSHOT) {
    // `COPILOT_SCREENSHOT=1` re-takes the picture of docs/deployment.md.
    await page.locator(CONSOLE).screenshot({
      path: process.env.COPILOT_SCREENSHOT_DIR
        ? `${process.env.COPILOT_SCREENSHOT_DIR}/console-usage.png`
        : 'console-usage.png'
    });
  }
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    usage.getByRole('button', { name: 'Export CSV' }).click()
  ]);
  const csv = await (await import('fs')).promises.readFile(await download.path(), 'utf8');
  expect(csv.split('\n')[0]).toBe(
    'day,feature,group,requests,prompt_tokens,cached_tokens,generated_tokens,engine_seconds,wh,gco2e'
  );
  const sum = csv
    .trim()
    .split('\n')
    .slice(1)
    .reduce((total, line) => total + Number(line.split(',')[3]), 0);
  expect(sum).toBe(6);
});

test('staff switch the course to hints only for the next hour', async ({ page, request }) => {
  await openConsole(page, request);
  await page.locator(CONSOLE).getByRole('tab', { name: 'Policy' }).click();
  const policy = page.locator('.jp-copilot-Console-policy');
  // "Explain this error" follows "Explain this cell" (the bound the service keeps):
  // the form shows the rule as it will apply, and says why.
  const errorMode = policy.getByLabel('Explain this error');
  const boundNote = policy.locator('.jp-copilot-Console-boundNote');
  await expect(boundNote).toBeHidden();
  await policy.getByLabel('Explain this cell').selectOption('off');
  await expect(errorMode).toHaveValue('off');
  await expect(boundNote).toHaveText(
    'Explain this error is never more open than Explain this cell (an invented error must not get around it).'
  );
  await errorMode.selectOption('on');
  await expect(errorMode).toHaveValue('off');
  // Loosening the bound gives the teacher's own choice back.
  await policy.getByLabel('Explain this cell').selectOption('hint');
  await expect(errorMode).toHaveValue('hint');
  await policy.getByLabel('Explain this cell').selectOption('on');
  await expect(errorMode).toHaveValue('on');
  await expect(boundNote).toBeHidden();
  await policy.getByLabel('Explain this cell').selectOption('hint');
  await policy.getByLabel('Explain this error').selectOption('hint');
  await policy.locator('select.jp-copilot-Console-when').selectOption('hour');
  await policy.locator('input.jp-copilot-Console-reason').fill('Travail en autonomie');
  await policy.getByRole('button', { name: 'Apply to the course' }).click();
  await expect(policy.locator('.jp-copilot-Console-message')).toHaveText('Rule applied.');
  const history = policy.getByRole('table', { name: 'History of changes' });
  await expect(history.locator('tbody tr').first()).toContainText('prof');
  await expect(policy.getByRole('table', { name: 'Rules of this course' })).toContainText(
    'Travail en autonomie'
  );
  if (process.env.COPILOT_SCREENSHOT) {
    await page.locator(CONSOLE).screenshot({
      path: process.env.COPILOT_SCREENSHOT_DIR
        ? `${process.env.COPILOT_SCREENSHOT_DIR}/console-policy.png`
        : 'console-policy.png'
    });
  }
  // Alice's own server now says hints, with the reason and when it ends.
  await expect
    .poll(
      async () => {
        const status = await (await request.get(`${ALICE}/copilot/status`)).json();
        return status.features?.explain_cell?.mode;
      },
      { timeout: 30_000 }
    )
    .toBe('hint');
  const status = await (await request.get(`${ALICE}/copilot/status`)).json();
  expect(status.features.explain_cell.reason).toContain('Travail en autonomie');
  expect(status.features.schedule.explain_cell.until).toBeTruthy();
  expect(status.features.staff).toBe(false);
  // And every staff route refuses her (through her own server, with her token).
  for (const route of [
    'admin/usage',
    'admin/policy',
    'admin/policy/history',
    'admin/users/bob/usage'
  ]) {
    const reply = await request.get(`${ALICE}/copilot/console/${route}`);
    expect(reply.status(), route).toBe(403);
    expect(await reply.text(), route).toContain('staff only');
  }
  const put = await request.put(`${ALICE}/copilot/console/admin/policy`, { data: { rules: [] } });
  expect(put.status()).toBe(403);
  expect(await put.text()).toContain('staff only');
  const erase = await request.delete(`${ALICE}/copilot/console/admin/users/bob/usage`);
  expect(erase.status()).toBe(403);
  expect(await erase.text()).toContain('staff only');
  // Her own usage: hers only.
  const own = await (await request.get(`${ALICE}/copilot/console/usage`)).json();
  expect(own.user).toBe('alice');
  expect(own.total.requests).toBe(4);
});

test.describe('in French', () => {
  test.use(FRENCH_UI);

  test('the console and the policy editor speak French', async ({ page, request }) => {
    await openConsole(page, request);
    const console_ = page.locator(CONSOLE);
    await expect(console_.getByRole('tab', { name: 'Utilisation', exact: true })).toBeVisible();
    await expect(console_.locator('.jp-copilot-Console-usage')).toContainText('Cours');
    await console_.getByRole('tab', { name: 'Règles', exact: true }).click();
    await expect(console_.getByRole('button', { name: 'Appliquer au cours' })).toBeVisible();
    await expect(console_.locator('.jp-copilot-Console-policy')).toContainText(
      'Historique des modifications'
    );
  });
});
