"""The llama.cpp engine on its own: a real child process with a real small model."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
from conftest import wait_engine_ready

from jupyter_copilot.engines.base import CancelToken, EngineBusy, GenerationParams, GenerationStats
from jupyter_copilot.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine


@pytest.fixture
def engine(test_model_path, jp_asyncio_loop):
    # pytest-jupyter runs async tests but not async fixtures: drive the loop here.
    eng = LlamaCppEngine(LlamaCppConfig(model_path=test_model_path, n_ctx=2048, threads=2, max_queue=2))

    async def up():
        await eng.start()
        await wait_engine_ready(eng)

    jp_asyncio_loop.run_until_complete(up())
    yield eng
    jp_asyncio_loop.run_until_complete(eng.close())


@pytest.mark.model
async def test_complete_streams_and_reports_stats(engine):
    stats = GenerationStats()
    pieces = [p async for p in engine.complete("def hello():\n    print(", GenerationParams(max_tokens=8), CancelToken(), stats)]
    assert pieces
    assert stats.prompt_tokens > 0
    assert 1 <= stats.generated_tokens <= 8
    assert stats.engine_seconds > 0


@pytest.mark.model
async def test_prompt_cache_is_reused_for_a_shared_prefix(engine):
    stable = "import numpy as np\n" * 20
    first, second = GenerationStats(), GenerationStats()
    async for _ in engine.complete(stable + "x = ", GenerationParams(max_tokens=2), CancelToken(), first):
        pass
    async for _ in engine.complete(stable + "y = ", GenerationParams(max_tokens=2), CancelToken(), second):
        pass
    assert first.cached_tokens < 5
    assert second.cached_tokens >= first.prompt_tokens - 3


@pytest.mark.model
async def test_chat_uses_the_models_template(engine):
    stats = GenerationStats()
    text = "".join([p async for p in engine.chat(
        [{"role": "user", "content": "Say hello."}], GenerationParams(max_tokens=12), CancelToken(), stats)])
    assert text.strip()
    assert stats.generated_tokens >= 1


@pytest.mark.model
async def test_cancel_stops_generation(engine):
    cancel, stats = CancelToken(), GenerationStats()
    count = 0
    async for _ in engine.complete("Once upon a time", GenerationParams(max_tokens=500), cancel, stats):
        count += 1
        if count == 3:
            cancel.cancel()
    assert stats.stop_reason == "cancelled"
    assert stats.generated_tokens < 50


@pytest.mark.model
async def test_full_queue_is_refused(engine):
    async def long_run(token):
        async for _ in engine.complete("Once upon a time", GenerationParams(max_tokens=300), token):
            pass

    # One generating + max_queue (2) waiting fill the engine; the next is refused.
    tokens = [CancelToken() for _ in range(3)]
    tasks = []
    for t in tokens:
        tasks.append(asyncio.ensure_future(long_run(t)))
        await asyncio.sleep(0.2)
    with pytest.raises(EngineBusy):
        async for _ in engine.complete("x", GenerationParams(max_tokens=1), CancelToken()):
            pass
    for t in tokens:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_bad_model_file_is_an_error_state_not_a_crash_loop(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF this is not a model")
    eng = LlamaCppEngine(LlamaCppConfig(model_path=str(bad)))
    await eng.start()
    for _ in range(300):
        if eng.status().state == "error":
            break
        await asyncio.sleep(0.1)
    status = eng.status()
    assert status.state == "error"
    assert "could not load the model" in status.detail
    assert status.restarts == 0
    await eng.close()


def test_worker_refuses_network_connections():
    """The local engine's process cannot open a socket: student code stays local."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    code = (
        "from jupyter_copilot.engines.llama_worker import _forbid_network\n"
        "_forbid_network()\n"
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    server.close()
    assert proc.returncode != 0
    assert "may not open network connections" in proc.stderr


@pytest.mark.model
async def test_healed_generation_starts_with_the_fragment_through_the_child(engine):
    """GenerationParams.heal crosses the child's protocol and masks the first tokens."""
    assert engine.heals_tokens
    prompt = "import matplotlib.pyplot as plt\nxs = [1, 2, 3]\nplt."
    free = "".join([p async for p in engine.complete(prompt, GenerationParams(max_tokens=6),
                                                     CancelToken())])
    fragment = "hist" if not free.startswith("hist") else "scatter"
    healed = "".join([p async for p in engine.complete(
        prompt, GenerationParams(max_tokens=6, heal=fragment), CancelToken())])
    assert healed.startswith(fragment), (free, healed)


async def _collect(pieces) -> str:
    return "".join([piece async for piece in pieces])


@pytest.mark.model
async def test_a_suggestion_asked_ahead_is_a_bet(engine):
    """`complete_ahead` writes like `complete` on an idle engine; a request someone
    waits for stops it (and is served at once); one queued or running makes it skip
    (its token cancelled, nothing written); the explanation prepared after it waits
    for it rather than being dropped."""
    params = GenerationParams(max_tokens=8)
    alone = await _collect(engine.complete_ahead("def hello():\n    print(", params, CancelToken()))
    assert alone == await _collect(engine.complete("def hello():\n    print(", params, CancelToken()))

    # A long one asked ahead, then a request someone waits for: the bet stops.
    ahead_cancel, ahead_stats = CancelToken(), GenerationStats()
    ahead = asyncio.ensure_future(_collect(engine.complete_ahead(
        "Once upon a time", GenerationParams(max_tokens=400), ahead_cancel, ahead_stats)))  # fmt: skip
    while not ahead_stats.prompt_tokens and not engine._bets:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # generating
    waited = GenerationStats()
    assert await _collect(engine.complete("x = ", GenerationParams(max_tokens=2), CancelToken(), waited))
    await ahead
    assert ahead_cancel.cancelled and ahead_cancel.reason == "preempted"
    assert ahead_stats.generated_tokens < 400

    # One asked while a request someone waits for runs: skipped, nothing written.
    running = asyncio.ensure_future(_collect(engine.complete(
        "Once upon a time", GenerationParams(max_tokens=60), CancelToken())))  # fmt: skip
    while not engine.serving():
        await asyncio.sleep(0.01)
    skipped = CancelToken()
    assert await _collect(engine.complete_ahead("y = ", params, skipped)) == ""
    assert skipped.cancelled
    await running

    # An explanation prepared while one asked ahead is written: it waits, then runs.
    ahead = asyncio.ensure_future(_collect(engine.complete_ahead(
        "Once upon a time", GenerationParams(max_tokens=40), CancelToken())))  # fmt: skip
    while not engine._bets:
        await asyncio.sleep(0.01)
    assert not engine.serving()  # the preparation is not dropped for it
    prepared = GenerationStats()
    messages = [{"role": "user", "content": "Say hello."}]
    await engine.warm_chat(messages, GenerationParams(max_tokens=1), prepared)
    assert ahead.done() and await ahead
    assert prepared.prompt_tokens > 0 and prepared.stop_reason != "cancelled"
