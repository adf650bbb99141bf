"""The console's browser tests (labextension/ui-tests/campus/console.spec.ts): a real
JupyterHub, the copilot service and two JupyterLab servers in Debian's Chromium.
No model is needed: the console reads the database and edits the policy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UI_TESTS = Path(__file__).resolve().parents[1] / "labextension" / "ui-tests"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.skipif(not (UI_TESTS / "node_modules").is_dir(), reason="ui-tests not installed (jlpm install)")
def test_console_and_policy_editor_in_chromium():
    from conftest_hub import free_port

    env = dict(os.environ, CHROMIUM=CHROMIUM, CI="1", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1",
               COPILOT_PYTHON=sys.executable, COPILOT_CAMPUS_PORT=str(_two_free_ports(free_port)))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    jlpm = shutil.which("jlpm", path=env["PATH"])
    assert jlpm, "jlpm (from jupyterlab) not found"
    proc = subprocess.run(
        [jlpm, "playwright", "test", "-c", "playwright.campus.config.ts", "--reporter=line"],
        cwd=UI_TESTS, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    sys.stdout.write(proc.stdout[-20000:])
    sys.stderr.write(proc.stderr[-5000:])
    assert proc.returncode == 0, "console browser tests failed (output above)"


def _two_free_ports(pick) -> int:
    """A port whose successor is free too (prof's and alice's JupyterLab)."""
    import socket

    for _ in range(50):
        port = pick()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")
