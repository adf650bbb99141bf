"""The remote engine against a real llama.cpp llama-server on loopback, on its own and
behind the Jupyter server (``CopilotApp.engine = "openai_compat"``)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado import web
from tornado.httpserver import HTTPServer

from jupyter_copilot.bench.llama_server import free_port
from jupyter_copilot.engines.base import (
    CancelToken,
    EngineBusy,
    EngineUnavailable,
    GenerationParams,
    GenerationStats,
)
from jupyter_copilot.engines.openai_compat import OpenAICompatConfig, OpenAICompatEngine

pytestmark = pytest.mark.model

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


@pytest.fixture
def engine(llama_server, jp_asyncio_loop):
    eng = OpenAICompatEngine(OpenAICompatConfig(base_url=llama_server.url, max_retries=1))
    jp_asyncio_loop.run_until_complete(eng.check_health())
    yield eng
    jp_asyncio_loop.run_until_complete(eng.close())


async def _wait_idle(server, timeout: float = 5.0) -> float:
    """Seconds until no llama-server slot is processing (fails after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(server.busy_slots) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"llama-server still busy: {server.slots()}")


async def test_completion_streams_with_usage(engine):
    assert engine.status().state == "ready"
    assert engine.served_model  # learnt from /v1/models
    stats = GenerationStats()
    params = GenerationParams(max_tokens=8)
    pieces = [p async for p in engine.complete(COUNTING, params, CancelToken(), stats)]
    assert len(pieces) >= 2  # streamed, not one block
    assert "13" in "".join(pieces)
    assert stats.prompt_tokens > 10
    assert 1 <= stats.generated_tokens <= 8
    assert stats.engine_seconds > 0


async def test_chat_streams(engine):
    stats = GenerationStats()
    messages = [{"role": "user", "content": "Say hello in French."}]
    pieces = [
        p
        async for p in engine.chat(messages, GenerationParams(max_tokens=12), CancelToken(), stats)
    ]
    assert "".join(pieces).strip()
    assert stats.generated_tokens >= 1


async def test_cancelling_frees_the_upstream_slot(engine, llama_server):
    before = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0)
    cancel = CancelToken()
    stats = GenerationStats()
    got = []
    params = GenerationParams(max_tokens=400)
    async for piece in engine.complete(COUNTING * 3, params, cancel, stats):
        got.append(piece)
        if len(got) == 3:
            cancel.cancel("superseded by a newer request")
    assert len(got) == 3  # nothing more after the cancel
    assert stats.stop_reason == "cancelled"
    assert await _wait_idle(llama_server) < 2.0  # the server stopped generating
    predicted = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0) - before
    assert predicted < 100, predicted  # far from the 400 it was asked for


async def test_cancelling_before_the_first_token(engine, llama_server):
    """While the server evaluates a long prompt it sends nothing; the engine must not
    wait for a first token to hang up. (llama-server notices between prompt batches:
    the slot frees when the current batch ends, and no token is generated.)"""
    before = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0)
    cancel = CancelToken()
    asyncio.get_running_loop().call_later(0.2, cancel.cancel, "client disconnected")
    started = time.monotonic()
    prompt = "# a fresh prompt, not in any slot's cache\n" + COUNTING * 20
    pieces = [p async for p in engine.complete(prompt, GenerationParams(max_tokens=400), cancel)]
    assert time.monotonic() - started < 1.0  # returned at the cancel, not after the prompt
    assert pieces == []
    await _wait_idle(llama_server, timeout=30)
    # It notices once the prompt batch is done: a token or two, not the 400 asked for.
    assert llama_server.metrics().get("llamacpp:tokens_predicted_total", 0) - before <= 4


async def test_engine_down_is_a_clear_503():
    port = free_port()  # nothing listens there
    eng = OpenAICompatEngine(OpenAICompatConfig(base_url=f"http://127.0.0.1:{port}/v1",
                                                max_retries=1, retry_backoff=0.05))  # fmt: skip
    try:
        assert not await eng.check_health()
        assert eng.status().state == "error"
        assert f"127.0.0.1:{port}" in eng.status().detail
        with pytest.raises(EngineUnavailable) as caught:
            async for _ in eng.complete("x", GenerationParams(max_tokens=2), CancelToken()):
                pass
        assert caught.value.status == 503
        assert "unreachable" in str(caught.value)
    finally:
        await eng.close()


class _RateLimitingGateway(web.RequestHandler):
    """Stands in for what answers 429 in front of an engine (nginx `limit_req`, a
    provider's rate limiter): llama-server and vLLM queue instead of refusing."""

    calls = 0

    def get(self, path) -> None:
        self.finish({"object": "list", "data": [{"id": "m", "object": "model"}]})

    def post(self, path) -> None:
        type(self).calls += 1
        self.set_status(429)
        self.set_header("Retry-After", "7")
        self.finish({"error": {"message": "rate limit reached", "code": 429}})


@pytest.fixture
def gateway_429(jp_asyncio_loop):
    _RateLimitingGateway.calls = 0
    port = free_port()
    server = HTTPServer(web.Application([(r"/v1/(.*)", _RateLimitingGateway)]))
    server.listen(port, "127.0.0.1")
    yield f"http://127.0.0.1:{port}/v1"
    server.stop()


async def test_upstream_429_is_passed_on_without_retrying(gateway_429):
    eng = OpenAICompatEngine(OpenAICompatConfig(base_url=gateway_429, model="m"))
    try:
        with pytest.raises(EngineBusy) as caught:
            async for _ in eng.complete("x", GenerationParams(max_tokens=2), CancelToken()):
                pass
        assert caught.value.status == 429
        assert caught.value.retry_after == 7
        assert _RateLimitingGateway.calls == 1  # a busy engine gets no extra requests
    finally:
        await eng.close()


# --- through the Jupyter server ------------------------------------------------------------


@pytest.fixture
def remote_url(request) -> str:
    """llama-server by default; parametrize indirectly with "down" or "gateway_429"."""
    which = getattr(request, "param", "llama_server")
    if which == "down":
        return "http://127.0.0.1:9/v1"  # port 9 (discard): nothing listens there
    if which == "gateway_429":
        return request.getfixturevalue("gateway_429")
    return request.getfixturevalue("llama_server").base_url


@pytest.fixture
def copilot_config(test_model_path, remote_url) -> dict:
    # Overrides tests/conftest.py's: the model file gives the prompt family and card;
    # the text comes from llama-server.
    return {"model": test_model_path, "engine": "openai_compat", "remote_url": remote_url,
            "line_max_tokens": 8, "block_max_tokens": 16, "explain_max_tokens": 24}  # fmt: skip


async def test_server_completes_and_explains_through_llama_server(api, llama_server):
    status = await api.wait_ready()
    assert status["features"]["engine"] == "openai_compat"
    assert status["features"]["warm_while_typing"] is False
    assert status["model"]["path"] is None  # the weights are on the remote server
    before = llama_server.metrics().get("llamacpp:requests_processing", 0)
    body = {"prefix": "def add(a, b):\n    return ", "suffix": "", "language": "python"}
    chunks = await api.stream("complete?stream=1", body)
    assert chunks[-1]["done"] and "error" not in chunks[-1]
    assert chunks[-1]["timing"]["prompt_tokens"] > 0
    explained = await api.stream("explain", {"kind": "cell", "source": "print(1 + 1)"})
    assert len(explained) >= 2 and explained[-1]["done"]  # streamed chat
    assert explained[-1]["text"].strip()
    reply = await api.post(
        "explain?stream=0",
        {
            "kind": "error",
            "source": "1 / 0",
            "error": {"ename": "ZeroDivisionError", "evalue": "division by zero"},
        },
    )
    assert reply.code == 200, reply.body
    assert json.loads(reply.body)["text"].strip()
    assert llama_server.metrics().get("llamacpp:requests_processing", 0) == before


async def test_a_closed_tab_stops_generation_on_llama_server(api, llama_server):
    await api.wait_ready()
    before = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0)
    # Block mode, one long line of numbers: nothing in the pipeline stops it early.
    body = {"prefix": COUNTING * 3, "language": "python", "mode": "block", "max_tokens": 400}
    payload = json.dumps(body).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        f"POST {api.base_url}copilot/complete?stream=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {api.auth_header['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(llama_server.busy_slots) == 0:
        assert time.monotonic() < deadline, "llama-server never started generating"
        await asyncio.sleep(0.02)
    writer.close()  # the browser tab goes away mid-generation
    assert await _wait_idle(llama_server) < 2.0
    predicted = llama_server.metrics().get("llamacpp:tokens_predicted_total", 0) - before
    assert predicted < 300, predicted


@pytest.mark.parametrize("remote_url", ["down"], indirect=True)
async def test_server_says_503_when_the_engine_is_down(api, remote_url):
    deadline = time.monotonic() + 20
    while True:  # the first health check marks it down
        status = json.loads((await api.get("status")).body)
        if status["state"] == "error" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert status["state"] == "error"
    assert "127.0.0.1:9" in status["detail"]
    reply = await api.post("complete", {"prefix": "x = ", "language": "python"})
    assert reply.code == 503
    assert "127.0.0.1:9" in json.loads(reply.body)["error"]
    assert reply.headers["Retry-After"]


@pytest.mark.parametrize("remote_url", ["gateway_429"], indirect=True)
async def test_server_passes_on_an_upstream_429(api, remote_url):
    await api.wait_ready()
    reply = await api.post("complete", {"prefix": "x = ", "language": "python"})
    assert reply.code == 429, reply.body
    assert reply.headers["Retry-After"] == "7"
    assert "rate limit" in json.loads(reply.body)["error"]


async def test_a_request_goes_to_the_prompt_cache_the_admission_chose(engine, llama_server):
    """The campus service's seats (hub/admission.py): with `engine_cache_slot` set, the
    request runs on that llama-server slot, whose cache then holds its prompt."""
    from jupyter_copilot.engines.base import engine_cache_slot

    slots = await asyncio.to_thread(llama_server.slots)
    assert engine.prompt_caches == len(slots) == 4  # read from llama-server's /props
    target = len(slots) - 1
    assert target >= 1, "the fixture's llama-server needs two slots or more"
    prompt = "Seat test: " + COUNTING
    routed = engine_cache_slot.set(target)
    try:
        async for _ in engine.complete(prompt, GenerationParams(max_tokens=4), CancelToken()):
            pass
    finally:
        engine_cache_slot.reset(routed)
    await _wait_idle(llama_server)
    after = await asyncio.to_thread(llama_server.slots)
    # /slots does not show the prompt: the slot that ran a new task is the one that moved.
    moved = [a["id"] for a, b in zip(after, slots) if a.get("id_task") != b.get("id_task")]
    assert moved == [target], (slots, after)
    assert after[target]["n_prompt_tokens"] > 0
