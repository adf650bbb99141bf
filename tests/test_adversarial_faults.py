"""kill -9 of the campus service and of llama-server, then recovery (issue #10): real
processes only — a real JupyterHub (tests/conftest_hub.py), the service started as
`jupyter copilot hub-service` the way JupyterHub starts a managed service, and
llama-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.model

CODE = {"prefix": "def add(a, b):\n    return ", "suffix": "", "language": "python"}


@contextmanager
def service_process(hub, engine_url: str, folder: Path):
    """`jupyter copilot hub-service` on the service port the Hub knows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(JUPYTERHUB_API_TOKEN=hub.service_token, JUPYTERHUB_SERVICE_NAME="copilot",
               JUPYTERHUB_API_URL=hub.api_url,
               JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{hub.service_port}",
               JUPYTERHUB_SERVICE_PREFIX="/services/copilot/")  # fmt: skip
    command = [sys.executable, "-m", "jupyter_copilot.cli", "hub-service",
               f"--CopilotHubService.engine_url={engine_url}",
               "--CopilotHubService.model=smollm2-135m",
               f"--CopilotHubService.state_file={folder / 'state.json'}",
               "--CopilotHubService.line_max_tokens=8"]  # fmt: skip
    log = open(folder / "service.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def url(hub, route: str) -> str:
    return f"http://127.0.0.1:{hub.service_port}/services/copilot/{route}"


def complete(hub, user="alice", timeout=60) -> httpx.Response:
    return httpx.post(url(hub, "complete"), json=CODE, timeout=timeout,
                      headers={"Authorization": f"token {hub.tokens[user]}"})  # fmt: skip


def wait_for(probe, timeout: float = 60.0, what: str = "") -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if probe():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not {what} after {timeout} s")


def engine_ready(hub) -> bool:
    return httpx.get(url(hub, "health"), timeout=5).json().get("engine") == "ready"


def test_kill_9_of_the_service_then_it_serves_again(jupyterhub, llama_server, tmp_path):
    with service_process(jupyterhub, llama_server.base_url, tmp_path) as first:
        wait_for(lambda: engine_ready(jupyterhub), what="ready")
        assert complete(jupyterhub).status_code == 200
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with pytest.raises(httpx.ConnectError):
            complete(jupyterhub, timeout=5)
    # JupyterHub (or systemd, or Kubernetes) starts it again: it comes back whole.
    with service_process(jupyterhub, llama_server.base_url, tmp_path):
        wait_for(lambda: engine_ready(jupyterhub), what="ready after kill -9")
        reply = complete(jupyterhub)
        assert reply.status_code == 200, reply.text
        usage = httpx.get(url(jupyterhub, "usage"), timeout=10,
                          headers={"Authorization": f"token {jupyterhub.tokens['alice']}"})  # fmt: skip
        assert usage.status_code == 200, usage.text
    state = tmp_path / "state.json"
    if state.exists():  # written at the clean stop above: valid JSON, never half a file
        json.loads(state.read_text())


def test_kill_9_of_llama_server_gives_503_then_recovers(jupyterhub, test_model_path, tmp_path):
    from jupyter_copilot.bench.llama_server import start_llama_server

    engine = start_llama_server(test_model_path, parallel=1, ctx=2048, threads=1)
    port = engine.port
    try:
        with service_process(jupyterhub, engine.base_url, tmp_path):
            wait_for(lambda: engine_ready(jupyterhub), what="ready")
            assert complete(jupyterhub).status_code == 200
            engine.process.send_signal(signal.SIGKILL)
            engine.process.wait(10)
            statuses = set()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and 503 not in statuses:
                statuses.add(complete(jupyterhub, timeout=30).status_code)
                time.sleep(0.2)
            assert 503 in statuses and not statuses - {200, 502, 503}, statuses
            engine.stop()
            engine = start_llama_server(test_model_path, port=port, parallel=1, ctx=2048,
                                        threads=1)  # fmt: skip
            wait_for(lambda: engine_ready(jupyterhub), timeout=60, what="ready again")
            wait_for(lambda: complete(jupyterhub).status_code == 200, what="serving again")
    finally:
        engine.stop()
