"""Local engine: the model in a child process we start, watch and restart.

The Jupyter server process never imports a model library. `ChildProcessEngine`
is the supervisor: it speaks the JSON-lines protocol of `llama_worker.py`, keeps
the state machine (`EngineState`: starting -> ready -> (crash) restarting -> ready;
ready -> (no sign of life) unresponsive -> restarting -> ready; -> error when it
gives up), serialises generations (the model computes one at a time; queued
requests wait here, where a cancelled one can be dropped without ever reaching
the model) and restarts the child after a crash or a hang with a growing back-off.
Which library runs inside the child is the worker's business (`--backend`):
`LlamaCppEngine` asks for llama.cpp, `CTransformersEngine` (ctransformers_engine.py)
for ctransformers.

Faults it detects, each ending the requests in flight with a clear error:
- the child exits (crash, SIGKILL, out of memory);
- the child stops answering (SIGSTOP, a hung C call, an endless prefill): it pings
  the child every `heartbeat_interval`; no pong within `stall_timeout`, or no
  progress event of the running job within `progress_timeout`, and it is killed;
- a write to the child that does not drain within `stall_timeout` (same);
- a protocol line longer than `max_line_bytes` (the child is restarted; the
  supervisor itself never stops on it), and any bug in the supervisor loop (state
  "error" with the reason, logged).
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
    EngineStalled,
    EngineState,
    EngineStatus,
    EngineUnavailable,
    GenerationParams,
    GenerationStats,
)

log = logging.getLogger("jupyter_copilot.engine")


@dataclass
class WorkerConfig:
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
    # Fault detection: no pong to a ping, or a write that does not drain, for
    # `stall_timeout` seconds; or no progress event of the running job for
    # `progress_timeout` -> the child is killed. A healthy child answers a ping in
    # milliseconds (its reader thread is not the generating one) and reports each
    # 64-token prefill chunk and each token (well under a second on 2 idle cores;
    # seconds on a machine overloaded by other work, hence the margins). A hang is
    # seen within the timeout + heartbeat_interval: under 30 s.
    stall_timeout: float = 15.0
    progress_timeout: float = 25.0
    heartbeat_interval: float = 2.0
    max_line_bytes: int = 2**20
    # Cached runs of at least this many tokens that reappear further left in a new
    # prompt are moved, not evaluated again (kv_reuse.py); 0: the common prefix only.
    cache_reuse_tokens: int = 0  # see CopilotApp.cache_reuse_tokens
    # Fewer threads while other programs keep cores busy (cpu_share.py).
    fit_threads: bool = False  # see CopilotApp.fit_threads


# The name the rest of the code (and admins' scripts) know.
LlamaCppConfig = WorkerConfig


class _Job:
    def __init__(self, job_id: int) -> None:
        self.id = job_id
        self.events: asyncio.Queue = asyncio.Queue()
        self.last_event = time.monotonic()  # sent, or last heard of


class ChildProcessEngine(Engine):
    """The supervisor of one worker child process (see the module's docstring)."""

    name = "child_process"
    backend = "llama_cpp"  # the worker's --backend

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._state = EngineState.STARTING
        self._detail: Optional[str] = "not started"
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._ready = asyncio.Event()
        self._jobs: dict[int, _Job] = {}
        self._next_id = 0
        self._turn = asyncio.Lock()  # one generation at a time
        self._waiting = 0
        self._busy = False
        # Bets (warm-ups, explanations prepared), queued or running: the newest of
        # each kind (`_speculate`); a request someone waits for cancels them (`_run`).
        self._bets: dict[str, CancelToken] = {}
        self._bets_waiting = 0  # of `_waiting`: not counted against `max_queue`
        self._wanted = 0  # requests someone waits for, queued or running
        self._closing = False
        self._crash_times: list[float] = []
        self._supervisor: Optional[asyncio.Task] = None
        self._last_heard = time.monotonic()
        self._fault: Optional[str] = None  # why the current child is being killed
        self._last_fault: Optional[str] = None  # shown in status once recovered
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
            state=self._state,
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
            "--backend", self.backend,
            "--max-line-bytes", str(cfg.max_line_bytes),
        ]
        if cfg.cache_reuse_tokens > 0:
            cmd += ["--cache-reuse", str(cfg.cache_reuse_tokens)]
        if cfg.fit_threads:
            cmd.append("--fit-threads")
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
            limit=cfg.max_line_bytes,  # the child keeps its lines below this
            start_new_session=True,  # a Ctrl-C meant for Jupyter is handled by us
        )

    async def _supervise(self) -> None:
        try:
            await self._supervise_children()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave "ready" behind silently
            log.exception("jupyter-copilot engine supervisor failed")
            self._ready.clear()
            self._fail_all(EngineCrashed("the engine supervisor failed; see the server log"))
            self._set(EngineState.ERROR, f"the engine supervisor failed: {type(exc).__name__}: {exc}")
            if self._proc and self._proc.returncode is None:
                self._proc.kill()

    def _set(self, state: EngineState, detail: Optional[str]) -> None:
        self._state, self._detail = state, detail

    async def _supervise_children(self) -> None:
        delay = self.config.restart_delay
        while not self._closing:
            if self._state is not EngineState.RESTARTING:
                self._set(EngineState.STARTING, "loading the model")
            self._ready.clear()
            self._fault = None
            try:
                await self._spawn()
            except Exception as exc:  # e.g. python missing, fork failure
                self._set(EngineState.ERROR, f"could not start the engine: {exc}")
                return
            proc = self._proc
            assert proc is not None
            self._last_heard = time.monotonic()
            stderr_task = asyncio.ensure_future(self._drain_stderr(proc))
            watchdog = asyncio.ensure_future(self._watch(proc))
            try:
                fatal = await self._read_events(proc)
            finally:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            await proc.wait()
            await asyncio.gather(stderr_task, return_exceptions=True)
            self._ready.clear()
            fault = self._fault
            if fault:
                self._fail_all(EngineStalled(f"{fault}; it was restarted, try again"))
            else:
                self._fail_all(EngineCrashed("the engine stopped unexpectedly; it is restarting"))
            if self._closing:
                break
            if fatal:
                self._set(EngineState.ERROR, fatal)
                log.error("jupyter-copilot engine: %s", fatal)
                return
            now = time.monotonic()
            self._crash_times = [t for t in self._crash_times if now - t < self.config.restart_window]
            self._crash_times.append(now)
            self._last_fault = fault or f"the engine exited with code {proc.returncode}"
            log.warning("jupyter-copilot engine: %s; restarting in %.1f s", self._last_fault, delay)
            if len(self._crash_times) > self.config.max_restarts:
                self._set(
                    EngineState.ERROR,
                    f"the engine failed {len(self._crash_times)} times in "
                    f"{self.config.restart_window:.0f} s (last: {self._last_fault}); not restarting",
                )
                return
            self._set(EngineState.RESTARTING, f"restarting after a fault: {self._last_fault}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _kill_for(self, proc: asyncio.subprocess.Process, fault: str) -> None:
        """Kill a child that misbehaves; the supervisor loop then restarts it."""
        if self._fault is None:
            self._fault = fault
            log.warning("jupyter-copilot engine: %s; killing it", fault)
        self._set(EngineState.UNRESPONSIVE, fault)
        self._ready.clear()
        if proc.returncode is None:
            proc.kill()  # SIGKILL works on a stopped (SIGSTOP) process too

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Heartbeat and job-progress deadlines (only once the model is loaded:
        loading has its own `load_timeout`)."""
        cfg = self.config
        await self._ready.wait()
        self._last_heard = time.monotonic()
        while proc.returncode is None:
            try:
                await self._send({"op": "ping"})
            except EngineError:
                return  # _send has already handled it
            await asyncio.sleep(min(cfg.heartbeat_interval, cfg.stall_timeout / 2))
            now = time.monotonic()
            silent = now - self._last_heard
            if silent > cfg.stall_timeout:
                self._kill_for(proc, f"the engine stopped responding (no answer for {silent:.0f} s)")
                return
            for job in list(self._jobs.values()):
                stuck = now - job.last_event
                if stuck > cfg.progress_timeout:
                    self._kill_for(
                        proc, f"the engine made no progress on a request for {stuck:.0f} s"
                    )
                    return

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            # llama.cpp's own log; never contains prompt text with verbose off.
            log.debug("engine: %s", line.decode(errors="replace").rstrip())

    async def _read_events(self, proc: asyncio.subprocess.Process) -> Optional[str]:
        """Dispatch the child's events until it exits. Returns a fatal message, if any."""
        assert proc.stdout is not None
        loop = asyncio.get_running_loop()
        load_deadline = loop.time() + self.config.load_timeout
        while True:
            try:
                if self._ready.is_set() or self._fault:
                    line = await proc.stdout.readline()
                else:
                    timeout = max(load_deadline - loop.time(), 0.1)
                    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                return f"the model did not load within {self.config.load_timeout:.0f} s"
            except ValueError:  # asyncio's LimitOverrunError: a line over the limit
                self._kill_for(
                    proc, f"the engine sent a protocol line over {self.config.max_line_bytes} bytes"
                )
                continue  # read on to the end of the stream (the child is dying)
            if not line:
                return None
            self._last_heard = time.monotonic()
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("event")
            if kind == "pong":
                continue
            if kind == "ready":
                self.info = event.get("info", {})
                detail = f"recovered from: {self._last_fault}" if self._last_fault else None
                self._set(EngineState.READY, detail)
                self._ready.set()
            elif kind == "fatal":
                return event.get("message", "the engine failed")
            else:
                job = self._jobs.get(event.get("id"))
                if job is not None:
                    job.last_event = self._last_heard
                    if kind != "progress":
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
        if self._state is EngineState.ERROR:
            raise EngineError(f"the engine is not available: {self._detail}")
        if not self._ready.is_set():
            raise EngineUnavailable(f"the model is loading ({self._detail})")

    async def _send(self, message: dict) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None or self._fault:
            raise EngineCrashed("the engine is not running")
        proc.stdin.write((json.dumps(message) + "\n").encode())
        try:
            # A stopped child does not read: a large prompt would fill the pipe and
            # block here forever.
            await asyncio.wait_for(proc.stdin.drain(), self.config.stall_timeout)
        except asyncio.TimeoutError:
            fault = f"the engine did not read its input for {self.config.stall_timeout:.0f} s"
            self._kill_for(proc, fault)
            raise EngineStalled(f"{fault}; it is restarting, try again") from None
        except (BrokenPipeError, ConnectionResetError):
            raise EngineCrashed("the engine is not running") from None

    async def _run(
        self, message: dict, cancel: CancelToken, stats: Optional[GenerationStats],
        speculative: bool = False,
    ) -> AsyncIterator[str]:
        self._check_available()
        if not speculative:
            # Someone waits for this one: a warm-up stops at its next chunk (what it
            # evaluated stays cached) rather than make them wait for all of it.
            for bet in list(self._bets.values()):
                bet.cancel("preempted")
        # Bets just cancelled leave the queue when their tasks next run: they must
        # not make a request someone waits for a 429.
        if self._waiting - (0 if speculative else self._bets_waiting) >= self.config.max_queue:
            raise EngineBusy()
        self._waiting += 1
        self._bets_waiting += speculative
        self._wanted += not speculative
        try:
            try:
                # Wait for our turn, or for the request to become useless.
                turn = asyncio.ensure_future(self._turn.acquire())
                cancelled = asyncio.ensure_future(cancel.wait())
                try:
                    await asyncio.wait({turn, cancelled}, return_when=asyncio.FIRST_COMPLETED)
                except BaseException:  # this task was cancelled: never keep the turn
                    cancelled.cancel()
                    turn.cancel()
                    if turn.done() and not turn.cancelled():
                        self._turn.release()
                    raise
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
                self._bets_waiting -= speculative
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
        finally:
            self._wanted -= not speculative

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
            job.last_event = time.monotonic()
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

    def complete_ahead(self, prompt, params, cancel, stats=None):
        # A bet like a warm-up: it never holds up a request someone waits for (an
        # explanation, another cell's completion stop it), and the explanation prepared
        # after it, or another cell's warm-up, waits for it instead of being dropped.
        message = {"op": "complete", "prompt": prompt, "params": _params(params)}
        return self._bet("ahead", message, cancel, stats)

    def chat(self, messages, params, cancel, stats=None):
        return self._run({"op": "chat", "messages": messages, "params": _params(params)}, cancel, stats)

    async def warm(self, prompt: str) -> None:
        await self._speculate("complete", {"op": "warm", "prompt": prompt})

    async def warm_chat(self, messages: list[dict], params: GenerationParams,
                        stats: Optional[GenerationStats] = None) -> None:  # fmt: skip
        message = {"op": "warm", "messages": messages, "params": _params(params)}
        await self._speculate("chat", message, stats)

    async def _speculate(self, kind: str, message: dict,
                         stats: Optional[GenerationStats] = None) -> None:  # fmt: skip
        """Pre-fill the cache, but only when nobody is waiting: warming is a bet on the
        future and must never delay a real request (one that comes cancels it). Behind
        a bet of another kind it waits (an explanation prepared after the cell's
        warm-up); a newer bet of its `kind` replaces it, queued or running (the
        student moved on: what it evaluated stays cached)."""
        async for _ in self._bet(kind, message, CancelToken(), stats):
            pass

    async def _bet(self, kind: str, message: dict, cancel: CancelToken,
                   stats: Optional[GenerationStats]) -> AsyncIterator[str]:  # fmt: skip
        """`message` run as a bet of `kind` (`_speculate`), its text streamed: skipped
        (`cancel` cancelled, nothing written) while a request someone waits for is
        queued or running, stopped by the next one."""
        if not self._ready.is_set() or self._wanted:
            cancel.cancel("skipped: the engine serves a request someone waits for")
            if stats is not None:
                stats.stop_reason = "cancelled"
            return
        older = self._bets.get(kind)
        if older is not None:
            older.cancel("superseded")
        self._bets[kind] = cancel
        try:
            async with aclosing(self._run(message, cancel, stats, speculative=True)) as pieces:
                async for text in pieces:
                    yield text
        finally:
            if self._bets.get(kind) is cancel:
                del self._bets[kind]

    def serving(self) -> bool:
        return self._wanted > 0


class LlamaCppEngine(ChildProcessEngine):
    """llama.cpp (llama-cpp-python) in the supervised child: the default engine."""

    name = "llama_cpp"
    backend = "llama_cpp"
    heals_tokens = True  # worker_llama.py masks the logits (engines/token_healing.py)
    avoids_text = True  # and for a second try (engines/avoid_mask.py)
    chats_after_document = True  # llama_worker.Worker.chat, from the completions' cache
    warms_while_typing = True  # ~50 ms a token to evaluate on 2 cores: worth doing ahead


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
        "heal": p.heal,
        "avoid": p.avoid,
        "avoid_starts": list(p.avoid_starts),
        "document": p.document,
    }


def _fill_stats(stats: GenerationStats, data: dict) -> None:
    stats.prompt_tokens = int(data.get("prompt_tokens", 0))
    stats.cached_tokens = int(data.get("cached_tokens", 0))
    stats.generated_tokens = int(data.get("generated_tokens", 0))
    stats.engine_seconds = float(data.get("engine_seconds", 0.0))
    stats.stop_reason = data.get("stop_reason")
    stats.threads = data.get("threads")
