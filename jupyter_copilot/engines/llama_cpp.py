"""Local engine: llama.cpp (llama-cpp-python) in a child process we start and watch.

The Jupyter server process never imports llama_cpp. This class only speaks the
JSON-lines protocol of `llama_worker.py`, keeps the state machine
(starting -> ready -> (crash) -> starting -> ready ...), serialises generations
(the model computes one at a time; queued requests wait here, where a cancelled
one can be dropped without ever reaching the model) and restarts the child after a
crash with a growing back-off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator, Optional

from .base import (
    CancelToken,
    Engine,
    EngineBusy,
    EngineCrashed,
    EngineError,
    EngineStatus,
    EngineUnavailable,
    GenerationParams,
    GenerationStats,
)

log = logging.getLogger("jupyter_copilot.engine")


@dataclass
class LlamaCppConfig:
    model_path: str
    n_ctx: int = 4096
    n_batch: int = 512
    threads: int = 0  # 0: llama.cpp's default (physical cores)
    max_queue: int = 8
    load_timeout: float = 300.0
    # Restart policy: back-off doubles from `restart_delay` up to 30 s; more than
    # `max_restarts` crashes within `restart_window` seconds -> state "error".
    restart_delay: float = 0.5
    max_restarts: int = 5
    restart_window: float = 300.0
    verbose: bool = False
    backend: str = "llama_cpp"  # or "ctransformers" (legacy GGML models)


class _Job:
    def __init__(self, job_id: int) -> None:
        self.id = job_id
        self.events: asyncio.Queue = asyncio.Queue()


class LlamaCppEngine(Engine):
    name = "llama_cpp"

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self._state = "starting"
        self._detail: Optional[str] = "not started"
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._ready = asyncio.Event()
        self._jobs: dict[int, _Job] = {}
        self._next_id = 0
        self._turn = asyncio.Lock()  # one generation at a time
        self._waiting = 0
        self._busy = False
        self._closing = False
        self._crash_times: list[float] = []
        self._supervisor: Optional[asyncio.Task] = None
        self.info: dict = {}

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.ensure_future(self._supervise())

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    def status(self) -> EngineStatus:
        return EngineStatus(
            state=self._state,  # type: ignore[arg-type]
            detail=self._detail,
            restarts=len(self._crash_times),
            queue=self._waiting,
            busy=self._busy,
        )

    async def _spawn(self) -> None:
        cfg = self.config
        cmd = [
            sys.executable, "-m", "jupyter_copilot.engines.llama_worker",
            "--model", cfg.model_path,
            "--n-ctx", str(cfg.n_ctx),
            "--n-batch", str(cfg.n_batch),
            "--threads", str(cfg.threads),
            "--backend", cfg.backend,
        ]
        if cfg.verbose:
            cmd.append("--verbose")
        env = dict(os.environ)
        # Belt and braces for privacy: nothing in the child may reach a model hub.
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=2**20,
            start_new_session=True,  # a Ctrl-C meant for Jupyter is handled by us
        )

    async def _supervise(self) -> None:
        delay = self.config.restart_delay
        while not self._closing:
            self._state, self._detail = "starting", "loading the model"
            self._ready.clear()
            try:
                await self._spawn()
            except Exception as exc:  # e.g. python missing, fork failure
                self._state, self._detail = "error", f"could not start the engine: {exc}"
                return
            proc = self._proc
            assert proc is not None
            stderr_task = asyncio.ensure_future(self._drain_stderr(proc))
            fatal = await self._read_events(proc)
            await proc.wait()
            await asyncio.gather(stderr_task, return_exceptions=True)
            self._ready.clear()
            self._fail_all(EngineCrashed("the engine stopped unexpectedly; it is restarting"))
            if self._closing:
                break
            if fatal:
                self._state, self._detail = "error", fatal
                log.error("jupyter-copilot engine: %s", fatal)
                return
            now = time.monotonic()
            self._crash_times = [t for t in self._crash_times if now - t < self.config.restart_window]
            self._crash_times.append(now)
            log.warning(
                "jupyter-copilot engine exited with code %s; restarting in %.1f s",
                proc.returncode, delay,
            )
            if len(self._crash_times) > self.config.max_restarts:
                self._state = "error"
                self._detail = (
                    f"the engine crashed {len(self._crash_times)} times in "
                    f"{self.config.restart_window:.0f} s; not restarting"
                )
                return
            self._state, self._detail = "starting", "restarting after a crash"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            # llama.cpp's own log; never contains prompt text with verbose off.
            log.debug("engine: %s", line.decode(errors="replace").rstrip())

    async def _read_events(self, proc: asyncio.subprocess.Process) -> Optional[str]:
        """Dispatch the child's events until it exits. Returns a fatal message, if any."""
        assert proc.stdout is not None
        load_deadline = asyncio.get_running_loop().time() + self.config.load_timeout
        while True:
            try:
                if self._ready.is_set():
                    line = await proc.stdout.readline()
                else:
                    timeout = max(load_deadline - asyncio.get_running_loop().time(), 0.1)
                    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                return f"the model did not load within {self.config.load_timeout:.0f} s"
            if not line:
                return None
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("event")
            if kind == "ready":
                self.info = event.get("info", {})
                self._state, self._detail = "ready", None
                self._ready.set()
            elif kind == "fatal":
                return event.get("message", "the engine failed")
            else:
                job = self._jobs.get(event.get("id"))
                if job is not None:
                    job.events.put_nowait(event)

    def _fail_all(self, error: EngineError) -> None:
        for job in list(self._jobs.values()):
            job.events.put_nowait({"event": "error", "exception": error})

    async def close(self) -> None:
        self._closing = True
        proc = self._proc
        if proc and proc.returncode is None:
            try:
                proc.stdin.write(b'{"op": "shutdown"}\n')  # type: ignore[union-attr]
                await proc.stdin.drain()  # type: ignore[union-attr]
                await asyncio.wait_for(proc.wait(), 5)
            except Exception:
                proc.kill()
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)

    # -- requests ----------------------------------------------------------------
    def _check_available(self) -> None:
        if self._state == "error":
            raise EngineError(f"the engine is not available: {self._detail}")
        if not self._ready.is_set():
            raise EngineUnavailable(f"the model is loading ({self._detail})")

    async def _send(self, message: dict) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise EngineCrashed("the engine is not running")
        proc.stdin.write((json.dumps(message) + "\n").encode())
        await proc.stdin.drain()

    async def _run(
        self, message: dict, cancel: CancelToken, stats: Optional[GenerationStats]
    ) -> AsyncIterator[str]:
        self._check_available()
        if self._waiting >= self.config.max_queue:
            raise EngineBusy()
        self._waiting += 1
        try:
            # Wait for our turn, or for the request to become useless.
            turn = asyncio.ensure_future(self._turn.acquire())
            cancelled = asyncio.ensure_future(cancel.wait())
            await asyncio.wait({turn, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            cancelled.cancel()
            if not turn.done():
                turn.cancel()
                await asyncio.gather(turn, return_exceptions=True)
            if cancel.cancelled:
                if turn.done() and not turn.cancelled():
                    self._turn.release()
                if stats is not None:
                    stats.stop_reason = "cancelled"
                return
        finally:
            self._waiting -= 1
        try:
            self._busy = True
            self._check_available()
            # aclosing: if our caller stops early, the inner stream is closed now
            # (cancelling the child's generation), not whenever it is collected.
            async with aclosing(self._stream_job(message, cancel, stats)) as pieces:
                async for text in pieces:
                    yield text
        finally:
            self._busy = False
            self._turn.release()

    async def _stream_job(
        self, message: dict, cancel: CancelToken, stats: Optional[GenerationStats]
    ) -> AsyncIterator[str]:
        self._next_id += 1
        job = _Job(self._next_id)
        self._jobs[job.id] = job
        cancel_sent = False

        async def forward_cancel() -> None:
            nonlocal cancel_sent
            await cancel.wait()
            cancel_sent = True
            try:
                await self._send({"op": "cancel", "id": job.id})
            except EngineError:
                pass

        watcher = asyncio.ensure_future(forward_cancel())
        finished = False
        try:
            await self._send({**message, "id": job.id})
            while True:
                event = await job.events.get()
                kind = event.get("event")
                if kind == "token":
                    if not cancel.cancelled:
                        yield event["text"]
                elif kind == "done":
                    finished = True
                    if stats is not None:
                        _fill_stats(stats, event.get("stats", {}))
                    return
                elif kind == "error":
                    finished = True
                    if "exception" in event:
                        raise event["exception"]
                    raise EngineError(event.get("message", "generation failed"))
        finally:
            watcher.cancel()
            if not finished:
                # The caller stopped reading early (e.g. the post-processing said
                # stop): tell the child to stop too, and wait for its final stats
                # (one token away) so that usage is counted and the next job starts
                # on a free engine.
                if not cancel_sent:
                    try:
                        await self._send({"op": "cancel", "id": job.id})
                    except EngineError:
                        pass
                try:
                    await asyncio.wait_for(_drain_until_done(job, stats), 10)
                except (asyncio.TimeoutError, EngineError):
                    pass
            self._jobs.pop(job.id, None)

    def complete(self, prompt, params, cancel, stats=None):
        return self._run({"op": "complete", "prompt": prompt, "params": _params(params)}, cancel, stats)

    def chat(self, messages, params, cancel, stats=None):
        return self._run({"op": "chat", "messages": messages, "params": _params(params)}, cancel, stats)

    async def warm(self, prompt: str) -> None:
        """Pre-fill the cache, but only when nobody is waiting: warming is a bet on the
        future and must never delay a real request."""
        if not self._ready.is_set() or self._turn.locked() or self._waiting:
            return
        cancel = CancelToken()
        async for _ in self._run({"op": "warm", "prompt": prompt}, cancel, None):
            pass


async def _drain_until_done(job: _Job, stats: Optional[GenerationStats]) -> None:
    while True:
        event = await job.events.get()
        if event.get("event") == "done":
            if stats is not None:
                _fill_stats(stats, event.get("stats", {}))
            return
        if event.get("event") == "error":
            return


def _params(p: GenerationParams) -> dict:
    return {
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "top_k": p.top_k,
        "repeat_penalty": p.repeat_penalty,
        "stop": p.stop,
        "seed": p.seed,
        "first_line": p.first_line,
    }


def _fill_stats(stats: GenerationStats, data: dict) -> None:
    stats.prompt_tokens = int(data.get("prompt_tokens", 0))
    stats.cached_tokens = int(data.get("cached_tokens", 0))
    stats.generated_tokens = int(data.get("generated_tokens", 0))
    stats.engine_seconds = float(data.get("engine_seconds", 0.0))
    stats.stop_reason = data.get("stop_reason")
