/**
 * The console's browser tests on a small real campus (campus/start_campus.py):
 * JupyterHub, the copilot service and two JupyterLab servers (prof, alice).
 *
 *   CHROMIUM=/usr/bin/chromium jlpm playwright test -c playwright.campus.config.ts
 */
import type { PlaywrightTestConfig } from '@playwright/test';

import config from './playwright.config';

const port = process.env.COPILOT_CAMPUS_PORT ?? '8890';
const python = process.env.COPILOT_PYTHON ?? '../../.venv/bin/python';

const campus: PlaywrightTestConfig = {
  ...config,
  testDir: './campus',
  use: { ...config.use, baseURL: `http://localhost:${port}` },
  webServer: {
    command: `${python} campus/start_campus.py`,
    url: `http://localhost:${Number(port) + 1}/lab`,
    timeout: 300_000,
    reuseExistingServer: false,
    stdout: 'ignore',
    stderr: 'pipe',
    env: { COPILOT_CAMPUS_PORT: port }
  }
};

export default campus;
