"""Faults of the engine's child process, caused for real: SIGSTOP, SIGKILL, an
oversized protocol line, a cancelled chat prefill. The real small model runs in
the real worker; nothing is mocked. Deadlines are generous (a loaded machine)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from jupyter_copilot.engines.base import (
    CancelToken,
    EngineCrashed,
    EngineError,
    EngineStalled,
    EngineState,
    GenerationParams,
    GenerationStats,
)
from jupyter_copilot.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine

pytestmark = pytest.mark.model

# Short enough for a test, long enough for a loaded 2-core machine: the small model
# answers a ping in milliseconds and evaluates a 64-token chunk in well under 1 s.
STALL = 5.0


async def _wait_for(engine: LlamaCppEngine, states: set, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if engine.status().state in states:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"state {engine.status()} not in {states} after {timeout} s")


def _engine(model: str, **overrides) -> LlamaCppEngine:
    # progress_timeout stays long: this file checks the heartbeat, which a loaded
    # machine cannot trip by being slow (a stopped process cannot answer at all).
    config = dict(model_path=model, n_ctx=2048, threads=2, max_queue=4, stall_timeout=STALL,
                  progress_timeout=120, heartbeat_interval=0.5, restart_delay=0.1)
    config.update(overrides)
    return LlamaCppEngine(LlamaCppConfig(**config))


@pytest.fixture
def engine(test_model_path, jp_asyncio_loop):
    eng = _engine(test_model_path)

    async def up():
        await eng.start()
        await _wait_for(eng, {EngineState.READY})

    jp_asyncio_loop.run_until_complete(up())
    yield eng
    pid = eng.pid
    if pid:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    jp_asyncio_loop.run_until_complete(eng.close())


async def _long_generation(engine, cancel=None, stats=None):
    params = GenerationParams(max_tokens=1000, temperature=0.0)
    async for _ in engine.complete("Once upon a time", params, cancel or CancelToken(), stats):
        pass


async def test_a_stopped_idle_worker_is_detected_killed_and_restarted(engine):
    old_pid = engine.pid
    os.kill(old_pid, signal.SIGSTOP)
    seen = await _wait_for(engine, {EngineState.UNRESPONSIVE, EngineState.RESTARTING}, timeout=30)
    assert seen < 30
    assert "stopped responding" in engine.status().detail
    await _wait_for(engine, {EngineState.READY})
    status = engine.status()
    assert status.restarts == 1
    assert "stopped responding" in status.detail  # "recovered from: ..."
    assert engine.pid != old_pid
    pieces = [p async for p in engine.complete("def f():\n    return", GenerationParams(max_tokens=4), CancelToken())]
    assert pieces


async def test_a_request_on_a_stopped_worker_fails_clearly_then_the_engine_recovers(engine):
    task = asyncio.ensure_future(_long_generation(engine))
    await asyncio.sleep(0.5)  # generating by now
    os.kill(engine.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(EngineStalled) as failure:
        await asyncio.wait_for(task, 60)
    assert time.monotonic() - started < 30
    assert failure.value.status == 503 and failure.value.retry_after
    assert "stopped responding" in str(failure.value)
    await _wait_for(engine, {EngineState.READY})
    stats = GenerationStats()
    async for _ in engine.complete("x = ", GenerationParams(max_tokens=3), CancelToken(), stats):
        pass
    assert stats.generated_tokens >= 1


async def test_a_killed_worker_fails_its_request_and_restarts(engine):
    task = asyncio.ensure_future(_long_generation(engine))
    await asyncio.sleep(0.5)
    os.kill(engine.pid, signal.SIGKILL)
    with pytest.raises(EngineCrashed):
        await asyncio.wait_for(task, 60)
    await _wait_for(engine, {EngineState.READY})
    assert engine.status().restarts == 1


async def test_a_chat_prefill_is_cancellable(engine):
    # A long chat prompt (~800 tokens): its evaluation takes many 64-token chunks.
    # Before, a chat's prompt was evaluated in one call: a cancel was seen only after
    # the first generated token. Now it stops between two prefill chunks.
    messages = [{"role": "user", "content": "Explain this code:\n" + "x = x + 1  # step\n" * 90}]
    cancel, stats = CancelToken(), GenerationStats()

    async def run():
        async for _ in engine.chat(messages, GenerationParams(max_tokens=32), cancel, stats):
            pass

    task = asyncio.ensure_future(run())
    await asyncio.sleep(0.3)  # the job has reached the worker and is evaluating
    cancel.cancel()
    await asyncio.wait_for(task, 60)
    assert stats.stop_reason == "cancelled"
    assert stats.generated_tokens == 0  # stopped during the prompt's evaluation
    # The engine is free at once for the next request.
    after = GenerationStats()
    async for _ in engine.complete("x = ", GenerationParams(max_tokens=2), CancelToken(), after):
        pass
    assert after.generated_tokens >= 1


async def test_an_event_too_large_for_the_protocol_fails_that_request_visibly(test_model_path):
    # 150 bytes: the ready line fits, a job's final stats line does not.
    eng = _engine(test_model_path, max_line_bytes=150)
    await eng.start()
    try:
        await _wait_for(eng, {EngineState.READY})
        with pytest.raises(EngineError, match="too large for the protocol"):
            async for _ in eng.complete("x = ", GenerationParams(max_tokens=2), CancelToken()):
                pass
        assert eng.status().state is EngineState.READY  # the engine itself is fine
    finally:
        await eng.close()


async def test_a_protocol_line_over_the_limit_never_ends_the_supervisor_silently(test_model_path):
    # 64 bytes: even the ready line is too long. The child is restarted, then the
    # supervisor gives up with the reason in its status; it never dies with an exception.
    eng = _engine(test_model_path, max_line_bytes=64, max_restarts=1)
    await eng.start()
    try:
        await _wait_for(eng, {EngineState.ERROR})
        assert "protocol line over 64 bytes" in eng.status().detail
        assert not eng._supervisor.done() or eng._supervisor.exception() is None
    finally:
        await eng.close()
