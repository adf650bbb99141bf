/**
 * Browser tests of jupyter-copilot: Galata's configuration for JupyterLab, run in
 * Debian's Chromium (no browser is ever downloaded).
 *
 *   CHROMIUM=/usr/bin/chromium jlpm playwright test
 */
import type { PlaywrightTestConfig } from '@playwright/test';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const port = process.env.COPILOT_TEST_PORT ?? '8888';

const config: PlaywrightTestConfig = {
  ...baseConfig,
  testDir: './tests',
  // One engine on a small CPU: tests that stream completions run one at a time.
  workers: 1,
  fullyParallel: false,
  retries: process.env.CI ? 1 : 0,
  timeout: 180_000,
  expect: { timeout: 60_000 },
  reporter: [[process.env.CI ? 'line' : 'list'], ['html', { open: 'never' }]],
  use: {
    ...baseConfig.use,
    baseURL: `http://localhost:${port}`,
    // Videos need Playwright's own ffmpeg build, which we never download.
    video: 'off',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: [
        // Root in containers and CI: Chromium refuses to start sandboxed.
        '--no-sandbox',
        // The machine has no network but the registries: stop Chromium from
        // trying (and flooding the log with refused connections).
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-gpu'
      ]
    }
  },
  webServer: {
    command: 'bash ./start-server.sh',
    url: `http://localhost:${port}/lab`,
    timeout: 300_000,
    reuseExistingServer: !process.env.CI,
    stdout: 'ignore',
    stderr: 'pipe'
  }
};

export default config;
