"""Start a throw-away Jupyter server with jupyter-copilot, for benchmarks over HTTP.

Loopback only, a random token, its own config/runtime/root directories (the user's
Jupyter config must not change what is measured), the model and any CopilotApp
settings given as config. The log goes to a file, shown when the start fails.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunningServer:
    url: str  # base URL, ending with "/"
    token: str
    log_path: Path
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_config(port: int, token: str, root: Path, copilot: dict) -> dict:
    return {
        "ServerApp": {
            "ip": "127.0.0.1",
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "allow_root": True,  # containers often run as root; loopback + token anyway
            "root_dir": str(root),
            "jpserver_extensions": {"jupyter_copilot": True},
        },
        "IdentityProvider": {"token": token},
        "CopilotApp": copilot,
    }


@contextmanager
def jupyter_server(copilot: dict, startup_timeout: float = 60.0) -> Iterator[RunningServer]:
    """Run ``python -m jupyter_server`` until the block exits. `copilot` holds CopilotApp
    settings (e.g. ``{"model": "/path/model.gguf", "context_budget_tokens": 1024}``)."""
    with tempfile.TemporaryDirectory(prefix="copilot-bench-server-") as tmp:
        home = Path(tmp)
        for name in ("config", "runtime", "root"):
            (home / name).mkdir()
        port, token = free_port(), secrets.token_hex(16)
        config = server_config(port, token, home / "root", copilot)
        (home / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"))
        log_path = home / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            _wait_listening(port, proc, startup_timeout, log_path)
            yield RunningServer(f"http://127.0.0.1:{port}/", token, log_path, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited ({proc.returncode}):\n{_tail(log_path)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"jupyter server not listening after {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
