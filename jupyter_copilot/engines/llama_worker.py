"""The engine's child process: one protocol loop around a model backend.

Why a child process: a crash (out of memory, a bad GGUF, a llama.cpp assert) must
never take the Jupyter server down with it, and the server must stay responsive
while the CPU is busy generating. The parent (`llama_cpp.py`) starts, watches and
restarts this process.

What runs the model is a small backend (`worker_llama.py` for llama.cpp,
`worker_ctransformers.py` for legacy GGML files): it tokenizes, evaluates a prompt
into its cache and generates. Everything else is here, once: the protocol, the job
queue, cancellation, context-window truncation, the first-line stop (asked of the
post-processing rule, not re-written), progress reports and statistics.

Protocol: JSON lines. Requests arrive on stdin, events leave on the original
stdout (fd 1 is redirected to stderr at start, so that anything a C library prints
cannot corrupt the protocol). No line is longer than `--max-line-bytes`.

  in : {"op": "complete", "id": 1, "prompt": "...", "params": {...}}
       {"op": "chat", "id": 2, "messages": [...], "params": {...}}
       {"op": "warm", "id": 3, "prompt": "..."}
       {"op": "warm", "id": 4, "messages": [...], "params": {"document": "..."}}
                                                      (an explanation prepared ahead)
       {"op": "cancel", "id": 1}
       {"op": "ping"}                                 (answered at once: liveness)
       {"op": "shutdown"}
  out: {"event": "ready", "info": {...}}
       {"event": "pong"}
       {"event": "progress", "id": 1, "evaluated": 128} (after each prefill chunk)
       {"event": "token", "id": 1, "text": "..."}
       {"event": "done", "id": 1, "stats": {...}}
       {"event": "error", "id": 1, "message": "..."}
       {"event": "fatal", "message": "..."}          (then the process exits)

Generations run one at a time on a worker thread; the main thread keeps reading
stdin so that a cancel is seen between two tokens, and between two chunks of a
long prompt evaluation (completions and chats alike). The parent's watchdog expects
a `pong` to each ping and, while a job runs, a `progress` or `token` event within
its stall timeout: a stopped process or a prefill that never ends is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence
from typing import Protocol as TypingProtocol

from ..postprocess.line_mode import FirstLineStop
from .cpu_share import CpuShare

# Prompt evaluation is chunked so that a cancel (the student typed on) is noticed
# within one chunk (~0.3-0.6 s for 64 tokens of a 1.5B model on 2 cores). A cancelled
# prefill still leaves a valid prefix in the KV cache, which the next keystroke reuses.
PREFILL_CHUNK_TOKENS = 64
# A warm-up is a bet on the future: the parent cancels it when a request someone
# waits for arrives, and the child notices between chunks. Smaller chunks there halve
# that wait for ~3 % of the warm-up's speed (32 vs 64 tokens, measured on 2 cores).
WARM_CHUNK_TOKENS = 32
# Longest protocol line by default; the parent reads with the same limit.
MAX_LINE_BYTES = 1 << 20
# Room kept for an error message in one line (exception texts can be huge).
MAX_MESSAGE_CHARS = 2000


def _forbid_network() -> None:
    """The local engine needs no network; make any attempt fail loudly (privacy)."""

    def hook(event: str, args: tuple) -> None:
        if event == "socket.connect":
            sock = args[0]
            if getattr(sock, "family", None) != socket.AF_UNIX:
                raise PermissionError("jupyter-copilot: the local engine may not open network connections")

    sys.addaudithook(hook)


class Backend(TypingProtocol):
    """What a model library provides inside the child (see worker_llama.py)."""

    name: str
    keeps_cache: bool  # evaluates only what differs from the last prompt (warm helps)
    threads: int | None  # evaluation threads now; None: fixed by the library at load
    last_prefill: dict  # what the last prefill reused (e.g. moved tokens), sent with the stats

    def n_ctx(self) -> int: ...

    def tokenize(self, text: str) -> list[int]: ...

    def chat_prompt(
        self, messages: list[dict], continues: bool = False
    ) -> tuple[list[int], list[str]] | None:
        """The model's chat template applied: (prompt tokens, extra stop strings);
        None if the model has none (then `plain_chat_prompt` is used). `continues`:
        after other text, so no beginning-of-sequence token."""
        ...

    def set_threads(self, threads: int) -> None:
        """Evaluate with `threads` from the next evaluation on (only if `threads` is set)."""
        ...

    def use_cache(self, lane: str, tokens: Sequence[int] = ()) -> float:
        """Make the cache of `lane` ("complete", "conversation" or "chat") the one
        `prefill` extends for a prompt of `tokens`, keeping the others for later;
        seconds spent. A backend with one cache and no way to save it may simply
        start cold."""
        ...

    def prefill(
        self, tokens: list[int], cancelled: Callable[[], bool], leave: int,
        progress: Callable[[int], None], chunk_tokens: int,
    ) -> tuple[int, bool]:
        """Evaluate all but the last `leave` tokens, `chunk_tokens` at a time, checking
        `cancelled` between chunks: (tokens reused from the cache, completed)."""
        ...

    def generate(self, tokens: list[int], sampling: dict) -> Iterator[tuple[str, str | None]]:
        """(text piece, finish reason or None) per generated token, after `prefill`."""
        ...


def plain_chat_prompt(messages: list[dict]) -> str:
    """A template-less chat prompt, for models that bring none."""
    turns = "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)
    return turns + "\n\nASSISTANT:"


class Protocol:
    def __init__(self, out_fd: int, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._out = os.fdopen(out_fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self.max_line_bytes = max_line_bytes

    def send(self, **event: Any) -> None:
        line = json.dumps(event, ensure_ascii=True)
        if len(line) >= self.max_line_bytes and "id" in event:
            # Never a line the parent cannot read: the job fails instead, visibly.
            line = json.dumps(
                {"event": "error", "id": event["id"], "message": "engine event too large for the protocol"}
            )
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class Worker:
    def __init__(self, backend: Backend, proto: Protocol, cpu_share: CpuShare | None = None) -> None:
        self.backend = backend
        self.proto = proto
        # Gives cores back while other programs (the kernel) keep them busy.
        self.cpu_share = cpu_share
        self.jobs: "queue.Queue[dict | None]" = queue.Queue()
        self.cancelled: set[int] = set()
        self._cancel_lock = threading.Lock()

    # -- cancellation --------------------------------------------------------
    def cancel(self, job_id: int) -> None:
        with self._cancel_lock:
            self.cancelled.add(job_id)

    def is_cancelled(self, job_id: int) -> bool:
        with self._cancel_lock:
            return job_id in self.cancelled

    def forget(self, job_id: int) -> None:
        with self._cancel_lock:
            self.cancelled.discard(job_id)

    # -- jobs ----------------------------------------------------------------
    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            job_id = job["id"]
            try:
                if self.is_cancelled(job_id):
                    self.proto.send(event="done", id=job_id, stats={"stop_reason": "cancelled"})
                    continue
                handler = {"complete": self.complete, "chat": self.chat, "warm": self.warm}[job["op"]]
                handler(job)
            except Exception as exc:  # report, keep serving
                message = f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
                self.proto.send(event="error", id=job_id, message=message)
            finally:
                self.forget(job_id)

    @staticmethod
    def _sampling(params: dict) -> dict:
        return {
            "max_tokens": int(params.get("max_tokens", 64)),
            "temperature": float(params.get("temperature", 0.0)),
            "top_p": float(params.get("top_p", 1.0)),
            "top_k": int(params.get("top_k", 40)),
            "repeat_penalty": float(params.get("repeat_penalty", 1.0)),
            "stop": list(params.get("stop") or []),
            "seed": params.get("seed"),
            "heal": str(params.get("heal") or ""),
            "avoid": None if params.get("avoid") is None else str(params["avoid"]),
            "avoid_starts": [str(text) for text in params.get("avoid_starts") or []],
        }

    def _progress(self, job_id: int) -> Callable[[int], None]:
        def report(evaluated: int) -> None:
            self.proto.send(event="progress", id=job_id, evaluated=evaluated)
            self._fit_threads()

        return report

    def _fit_threads(self) -> None:
        """Between two evaluations: as many threads as other programs leave cores."""
        if self.cpu_share is not None:
            self.backend.set_threads(self.cpu_share.threads())

    def complete(self, job: dict) -> None:
        tokens = self.backend.tokenize(job["prompt"])
        # A completion leaves up to one chunk to the generation call: evaluating the
        # few tokens typed since the last request apart from the last one would cost
        # a second forward pass (~55 ms for the 1.5B model on 2 cores) on every warm
        # request; one chunk is also the cancellation granularity of prefill anyway.
        self._generate(job, tokens, [], leave=PREFILL_CHUNK_TOKENS, lane="complete")

    def chat(self, job: dict) -> None:
        tokens, stop, lane = self._chat_tokens(job)
        self._generate(job, tokens, stop, leave=1, lane=lane)

    def _chat_tokens(self, job: dict) -> tuple[list[int], list[str], str]:
        """A chat job's prompt tokens, extra stop strings and cache lane."""
        document = str(job.get("params", {}).get("document") or "")
        templated = self.backend.chat_prompt(job["messages"], continues=bool(document))
        if templated is None:
            templated = self.backend.tokenize(plain_chat_prompt(job["messages"])), []
        tokens, stop = templated
        if not document:
            # An explanation must not evict the notebook's cache (nor the reverse).
            return tokens, stop, "chat"
        # After the notebook as the completions' prompts show it, in their cache,
        # where it already is: the chat evaluates little more than its question.
        # The newline apart: the document's own tokens stay those cached.
        tokens = self.backend.tokenize(document) + self.backend.tokenize("\n") + tokens
        # A lane of its own that starts from the completions' cache: the next
        # completion does not evict the conversation (a follow-up finds it).
        return tokens, stop, "conversation"

    def _within_context(self, tokens: list[int], max_tokens: int) -> tuple[list[int], int]:
        """The server budgets prompts with an estimate; if the real count overflows the
        context, keep the end (the cursor's surroundings matter most) rather than fail:
        (the tokens kept, how many were cut)."""
        room = max(self.backend.n_ctx() - max_tokens - 1, 1)
        truncated = max(len(tokens) - room, 0)
        return tokens[truncated:], truncated

    def _generate(
        self, job: dict, tokens: list[int], extra_stop: list[str], leave: int, lane: str
    ) -> None:
        """The one path of every generation: truncate, prefill (cancellable), generate."""
        job_id = job["id"]
        started = time.perf_counter()
        params = job.get("params", {})
        sampling = self._sampling(params)
        sampling["stop"] = sampling["stop"] + extra_stop
        tokens, truncated = self._within_context(tokens, sampling["max_tokens"])
        cancelled = lambda: self.is_cancelled(job_id)  # noqa: E731
        switch_seconds = self.backend.use_cache(lane, tokens)
        self._fit_threads()
        reused, complete = self.backend.prefill(
            tokens, cancelled, leave, self._progress(job_id), PREFILL_CHUNK_TOKENS
        )
        stats = {
            "prompt_tokens": len(tokens),
            "cached_tokens": reused,
            "generated_tokens": 0,
            "truncated_tokens": truncated,
            "cache_switch_ms": round(switch_seconds * 1000, 1),
            **self.backend.last_prefill,
        }
        if not complete:
            stats.update(stop_reason="cancelled", engine_seconds=time.perf_counter() - started)
            self.proto.send(event="done", id=job_id, stats=stats)
            return
        stop_reason = "length"
        # Line completions end with their first line, by the post-processing's rule.
        first_line = FirstLineStop() if params.get("first_line") else None
        for text, finish_reason in self.backend.generate(tokens, sampling):
            if text:
                stats["generated_tokens"] += 1
                self.proto.send(event="token", id=job_id, text=text)
            self._fit_threads()
            if finish_reason:
                stop_reason = finish_reason
            if cancelled():
                stop_reason = "cancelled"
                break
            # Leaving the generator now skips evaluating the newline token: the next
            # token is never computed (the parent would cancel it one token late).
            if first_line is not None and text and first_line(text):
                stop_reason = "stop"
                break
        stats.update(stop_reason=stop_reason, engine_seconds=time.perf_counter() - started,
                     threads=self.backend.threads)  # fmt: skip
        self.proto.send(event="done", id=job_id, stats=stats)

    def warm(self, job: dict) -> None:
        """Evaluate a prompt into its lane's cache and stop: a completion's start
        (`prompt`) or a whole chat (`messages`: an explanation prepared ahead, all of
        it but the last token, which its generation evaluates)."""
        job_id = job["id"]
        started = time.perf_counter()
        if not self.backend.keeps_cache:
            self.proto.send(event="done", id=job_id, stats={"stop_reason": "warm"})
            return
        if "messages" in job:
            # Cut as the chat it prepares will be, or it would prepare another prompt.
            tokens, _, lane = self._chat_tokens(job)
            tokens, _ = self._within_context(tokens, self._sampling(job.get("params", {}))["max_tokens"])
        else:
            tokens, lane = self.backend.tokenize(job["prompt"]), "complete"
            tokens = tokens[: max(self.backend.n_ctx() - 256, 1)]
        switch_seconds = self.backend.use_cache(lane, tokens)
        self._fit_threads()
        reused, complete = self.backend.prefill(
            tokens, lambda: self.is_cancelled(job_id), 1, self._progress(job_id), WARM_CHUNK_TOKENS
        )
        stats = {
            "prompt_tokens": len(tokens),
            "cached_tokens": reused,
            "generated_tokens": 0,
            "stop_reason": "warm" if complete else "cancelled",
            "engine_seconds": time.perf_counter() - started,
            "cache_switch_ms": round(switch_seconds * 1000, 1),
            **self.backend.last_prefill,
        }
        self.proto.send(event="done", id=job_id, stats=stats)


def read_requests(worker: Worker, lines=None) -> None:
    for line in lines if lines is not None else sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        op = msg.get("op")
        if op == "ping":
            worker.proto.send(event="pong")
        elif op == "cancel":
            worker.cancel(int(msg["id"]))
        elif op == "shutdown":
            break
        elif op in ("complete", "chat", "warm"):
            worker.jobs.put(msg)
    worker.jobs.put(None)


def load_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "ctransformers":
        from .worker_ctransformers import CTransformersBackend

        return CTransformersBackend.load(args)
    from .worker_llama import LlamaBackend

    return LlamaBackend.load(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--backend", choices=["llama_cpp", "ctransformers"], default="llama_cpp")
    parser.add_argument("--max-line-bytes", type=int, default=MAX_LINE_BYTES)
    parser.add_argument("--cache-reuse", type=int, default=0,
                        help="move cached runs of at least this many tokens (0: prefix only)")
    parser.add_argument("--fit-threads", action="store_true",
                        help="use fewer threads while other programs keep cores busy")
    args = parser.parse_args(argv)

    # Keep the protocol channel private: fd 1 becomes stderr for everything else.
    proto = Protocol(os.dup(1), args.max_line_bytes)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _forbid_network()

    try:
        started = time.perf_counter()
        backend = load_backend(args)
    except Exception as exc:
        message = f"could not load the model: {type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
        proto.send(event="fatal", message=message)
        return 3
    info = {
        "backend": backend.name,
        "n_ctx": backend.n_ctx(),
        "load_seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }
    cpu_share = None
    if args.fit_threads and backend.threads is not None:
        cpu_share = CpuShare(limit=backend.threads)
    worker = Worker(backend, proto, cpu_share)
    thread = threading.Thread(target=worker.run, name="generate", daemon=True)
    thread.start()
    proto.send(event="ready", info=info)
    read_requests(worker)
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
