"""Browser tests: Galata/Playwright drive a real JupyterLab with the real server
extension and a small real model, in Debian's Chromium (no browser download).

The specs live in labextension/ui-tests/tests/; this wrapper runs them from pytest so
that one command (scripts/test) runs everything and CI reads one summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UI_TESTS = Path(__file__).resolve().parents[1] / "labextension" / "ui-tests"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.skipif(not (UI_TESTS / "node_modules").is_dir(), reason="ui-tests not installed (jlpm install)")
# The whole default Galata suite, one spec at a time, on 2 cores: it must stay within
# about 15 minutes (a longer run is a regression to look at, not a timeout to raise).
@pytest.mark.timeout(1500)
def test_jupyterlab_ui_in_chromium(test_model_path):
    env = dict(os.environ, CHROMIUM=CHROMIUM, CI="1", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    # The venv's jupyter must be the one Playwright's web server starts.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    jlpm = shutil.which("jlpm", path=env["PATH"])
    assert jlpm, "jlpm (from jupyterlab) not found"
    proc = subprocess.run([jlpm, "playwright", "test", "--reporter=line"], cwd=UI_TESTS, env=env,
                          capture_output=True, text=True, timeout=1400)
    sys.stdout.write(proc.stdout[-20000:])
    sys.stderr.write(proc.stderr[-5000:])
    assert proc.returncode == 0, "browser tests failed (output above)"
