"""A small real campus for the console's browser tests (Playwright's `webServer`):

- a real JupyterHub on loopback (no proxy, no spawner: the tests' hub of
  tests/conftest_hub.py) with alice and bob in `l1-python` and prof in `staff`;
- the real copilot service (`jupyter copilot hub-service`) on an SQLite database,
  its engine address left empty (the console never calls the engine);
- prof's JupyterLab on $COPILOT_CAMPUS_PORT and alice's on the next port, each with
  its owner's JupyterHub token, relaying to the service (`hub_service_url`).

Usage rows are seeded in the service's database before it starts (the numbers the
spec checks); everything the browser sees comes through the real routes.
Test-only: the JupyterLab servers run without a token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests"))

from conftest_hub import ACCESS_SCOPE, service_argv, start_jupyterhub  # noqa: E402

from jupyter_copilot.bench.llama_server import free_port  # noqa: E402
from jupyter_copilot.store import RequestRecord, UsageStore  # noqa: E402

# What the spec checks: today, in l1-python, per feature.
SEED = [("alice", "completion")] * 3 + [("bob", "completion"), ("bob", "explain_cell")]


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def main() -> None:
    port = int(os.environ.get("COPILOT_CAMPUS_PORT", "8890"))
    folder = Path(tempfile.mkdtemp(prefix="copilot-campus-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    children: list[subprocess.Popen] = []

    def stop(*_args) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    hub, hub_process = start_jupyterhub(folder, folder / "campus.log")
    children.append(hub_process)
    log = open(folder / "campus.log", "ab")
    tokens = {user: hub.new_token(user, [ACCESS_SCOPE]) for user in ("alice", "prof")}

    db_url = f"sqlite:///{folder / 'copilot-service.sqlite'}"
    store = UsageStore.open(db_url, timezone="Europe/Paris")
    now = datetime.now(timezone.utc)
    for user, feature in SEED:
        store.record(RequestRecord(user, feature, ["l1-python"], prompt_tokens=100,
                                   generated_tokens=10, engine_seconds=0.5, at=now))  # fmt: skip
    store.record(RequestRecord("alice", "completion", ["l1-python"], prompt_tokens=50,
                               generated_tokens=5, at=now - timedelta(days=1)))  # fmt: skip
    store.close()
    service_url = hub.service_url
    traits = {**hub.service_traits(folder), "engine_url": f"http://127.0.0.1:{free_port()}/v1",
              "timezone": "Europe/Paris", "policy_check_interval": 0.5, "db_url": db_url}
    children.append(subprocess.Popen(
        [sys.executable, "-m", "jupyter_copilot.cli", "hub-service", *service_argv(traits)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env,
    ))  # fmt: skip
    _wait_for(service_url + "health", children[-1])  # labs ask its status at once
    for offset, user in enumerate(("prof", "alice")):
        root = folder / f"root-{user}"
        for sub in ("", "-settings", "-workspaces"):
            Path(f"{root}{sub}").mkdir()
        user_env = dict(env, JUPYTERHUB_API_TOKEN=tokens[user], JUPYTERHUB_USER=user)
        children.append(subprocess.Popen(
            [sys.executable, "-m", "jupyterlab",
             "--config", str(HERE.parent / "jupyter_server_test_config.py"),
             "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root",
             f"--port={port + offset}", "--ServerApp.port_retries=0",
             "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}",
             f"--LabApp.user_settings_dir={root}-settings",
             f"--LabApp.workspaces_dir={root}-workspaces",
             f"--CopilotApp.hub_service_url={service_url}"],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=user_env,
        ))  # fmt: skip
    for offset in (0, 1):  # Playwright waits for alice's; prof's must be up too
        _wait_for(f"http://localhost:{port + offset}/lab", children[2 + offset])
    (folder / "campus.json").write_text(json.dumps({"service": service_url}))
    print(f"campus ready in {folder}", flush=True)
    while all(child.poll() is None for child in children):
        time.sleep(1)
    print((folder / "campus.log").read_text()[-4000:], file=sys.stderr)
    stop()


if __name__ == "__main__":
    main()
