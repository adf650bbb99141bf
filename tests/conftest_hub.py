"""Real parts for the campus tests (loaded by tests/conftest.py's `pytest_plugins`):

- `llama_server`: llama.cpp's llama-server (built once from the vendored sources of the
  llama-cpp-python sdist, cached in ~/.cache/jupyter-copilot) serving the small test
  model on 127.0.0.1 with 4 parallel slots.
- `jupyterhub`: a real JupyterHub on 127.0.0.1 (its REST API and token checks; no
  proxy: the tests call the hub and the service directly), with students in groups,
  a registered `copilot` service and real tokens for every case.
- `copilot_service`: the campus service in this test's event loop (so that its
  policy clock can be set by the test), against both of the above.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

SERVICE = "copilot"
ACCESS_SCOPE = f"access:services!service={SERVICE}"

HUB_CONFIG = """
from jupyterhub.proxy import Proxy


class NoProxy(Proxy):
    \"\"\"Tests call the Hub API and the service directly: nothing to route.\"\"\"

    should_start = False

    async def add_route(self, routespec, target, data):
        pass

    async def delete_route(self, routespec):
        pass

    async def get_all_routes(self):
        return {{}}


c.JupyterHub.proxy_class = NoProxy
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.services = [
    {{"name": "{service}", "url": "http://127.0.0.1:{service_port}", "api_token": "{service_token}"}},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_groups = {{
    "l1-python": {{"users": ["alice", "bob"]}},
    "staff": {{"users": ["prof"]}},
    "visitors": {{"users": ["carol"]}},
}}
c.JupyterHub.load_roles = [
    # Students of the course (and staff) may use the copilot; visitors may not.
    {{"name": "copilot-users", "scopes": ["{access_scope}"], "groups": ["l1-python", "staff"]}},
    {{"name": "test-admin", "scopes": ["admin:users", "admin:groups", "tokens"],
      "services": ["test-admin"]}},
]
"""


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "hub_service(**traits): CopilotHubService settings for the test's service"
    )


def free_port() -> int:
    from jupyter_copilot.bench.llama_server import free_port as pick

    return pick()


@dataclass
class Hub:
    """A running JupyterHub and the tokens the tests use."""

    api_url: str
    admin_token: str
    service_token: str
    service_port: int
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        request = urllib.request.Request(
            self.api_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {token or self.admin_token}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read() or b"null")

    @property
    def service_url(self) -> str:
        """The copilot service's base URL (with its prefix, ending in /)."""
        return f"http://127.0.0.1:{self.service_port}/services/{SERVICE}/"

    def service_traits(self, folder: Path) -> dict:
        """The CopilotHubService traits that make it this hub's copilot service (its API
        token written to a file in `folder`)."""
        token_file = folder / "service-token"
        token_file.write_text(self.service_token)
        return {"service_name": SERVICE, "url": f"http://127.0.0.1:{self.service_port}",
                "base_url": f"/services/{SERVICE}/", "hub_api_url": self.api_url,
                "hub_api_token_file": str(token_file)}  # fmt: skip

    def new_token(self, user: str, scopes: list[str] | None, note: str = "test") -> str:
        body: dict = {"note": note, "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        return self.api("POST", f"/users/{user}/tokens", body)["token"]


def service_argv(traits: dict) -> list[str]:
    """`traits` as the ``--CopilotHubService.name=value`` arguments of the command line."""
    return [f"--CopilotHubService.{name}={value}" for name, value in traits.items()]


@pytest.fixture(scope="session")
def llama_server(test_model_path):
    from jupyter_copilot.bench.llama_server import (
        BINARY_ENV,
        ensure_llama_server,
        start_llama_server,
    )

    if not os.environ.get(BINARY_ENV) and not (shutil.which("cmake") and shutil.which("c++")):
        pytest.skip(f"llama-server cannot be built here (cmake, c++); or set {BINARY_ENV}")
    binary = ensure_llama_server()  # ~25 min the first time on 2 busy cores; then cached
    with start_llama_server(
        test_model_path, parallel=4, ctx=4096, threads=2, binary=binary
    ) as server:
        yield server


def start_jupyterhub(folder: Path, log_path: Path) -> tuple[Hub, subprocess.Popen]:
    """A real JupyterHub on loopback (HUB_CONFIG: its users, groups and the copilot
    service), its files in `folder` and its output appended to `log_path`; returns once
    its API answers. Also used by the console's browser tests (ui-tests/campus)."""
    hub_port, service_port = free_port(), free_port()
    admin_token, service_token = secrets.token_hex(16), secrets.token_hex(16)
    (folder / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(
            proxy_port=free_port(), hub_port=hub_port, folder=folder, service=SERVICE,
            service_port=service_port, service_token=service_token, admin_token=admin_token,
            access_scope=ACCESS_SCOPE,
        )
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(folder / "jupyterhub_config.py")],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    hub = Hub(f"http://127.0.0.1:{hub_port}/hub/api", admin_token, service_token, service_port,
              log_path)  # fmt: skip
    try:
        _wait_for_hub(hub, process)
    except BaseException:
        process.terminate()
        raise
    return hub, process


@pytest.fixture(scope="session")
def jupyterhub(tmp_path_factory) -> Hub:
    folder = tmp_path_factory.mktemp("jupyterhub")
    hub, process = start_jupyterhub(folder, folder / "jupyterhub.log")
    try:
        for user in ("alice", "bob", "prof"):
            hub.tokens[user] = hub.new_token(user, [ACCESS_SCOPE])
        hub.tokens["carol"] = hub.new_token("carol", None)  # all carol holds: no copilot access
        hub.tokens["alice-no-scope"] = hub.new_token("alice", ["read:users:name!user"])
        yield hub
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


# A first start from a new venv compiles JupyterHub's modules (and SQLAlchemy's,
# alembic's) on a 2-core box busy with other tests: seen to take over 60 s once,
# its log still empty. Waiting costs nothing once it answers.
HUB_START_TIMEOUT_S = 180.0


def _wait_for_hub(hub: Hub, process: subprocess.Popen, timeout: float = HUB_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited: {hub.log_path.read_text()[-3000:]}")
        try:
            hub.api("GET", "/users/alice")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"jupyterhub did not start: {hub.log_path.read_text()[-3000:]}")


class Clock:
    """The course policy's clock, set by the test (timezone-aware)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(timezone.utc)

    def set(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def policy_clock() -> Clock:
    return Clock()


@dataclass
class ServiceUnderTest:
    app: object  # CopilotHubService
    url: str  # base URL with the prefix, ending in /
    hub: Hub
    policy_path: Path

    def headers(self, user: str | None, **extra) -> dict:
        headers = {"Authorization": f"token {self.hub.tokens[user]}"} if user else {}
        headers.update(extra)
        return headers

    def write_policy(self, policy: dict) -> None:
        self.policy_path.write_text(json.dumps(policy))
        # The reload is keyed on (mtime, size): make sure a quick rewrite is seen.
        stamp = time.time() + 1
        os.utime(self.policy_path, (stamp, stamp))


@pytest.fixture
def hub_service_settings(request) -> dict:
    """Traits of the service under test; a test changes them with
    `@pytest.mark.hub_service(daily_token_quota=10)`."""
    marker = request.node.get_closest_marker("hub_service")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def copilot_service(jupyterhub, llama_server, hub_service_settings, policy_clock, tmp_path,
                    jp_asyncio_loop):  # fmt: skip
    from traitlets.config import Config

    from jupyter_copilot.hub.app import CopilotHubService

    policy_path = tmp_path / "policy.json"
    policy_path.write_text("{}")  # everything on (a missing file would turn it all off)
    traits = {
        **jupyterhub.service_traits(tmp_path),
        "engine_url": llama_server.base_url,
        "model": "smollm2-135m",
        "policy_file": str(policy_path),
        "policy_check_interval": 0.0,
        "db_url": f"sqlite:///{tmp_path / 'copilot-service.sqlite'}",
        "timezone": "Europe/Paris",
        "line_max_tokens": 8,
        "block_max_tokens": 16,
        "explain_max_tokens": 24,
        **hub_service_settings,
    }
    app = CopilotHubService(config=Config({"CopilotHubService": traits}))
    app.setup(now=policy_clock)

    async def up() -> None:
        await app.start_async()
        for _ in range(300):
            if app.engine.status().state == "ready":
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"engine not ready: {app.engine.status()}")

    jp_asyncio_loop.run_until_complete(up())
    yield ServiceUnderTest(app, jupyterhub.service_url, jupyterhub, policy_path)
    jp_asyncio_loop.run_until_complete(app.stop_async())
