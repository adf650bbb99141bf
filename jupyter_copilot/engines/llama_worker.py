"""The llama.cpp child process: loads the GGUF model and generates on request.

Why a child process: a crash (out of memory, a bad GGUF, a llama.cpp assert) must
never take the Jupyter server down with it, and the server must stay responsive
while the CPU is busy generating. The parent (`llama_cpp.py`) starts, watches and
restarts this process.

Protocol: JSON lines. Requests arrive on stdin, events leave on the original
stdout (fd 1 is redirected to stderr at start, so that anything llama.cpp prints
from C cannot corrupt the protocol).

  in : {"op": "complete", "id": 1, "prompt": "...", "params": {...}}
       {"op": "chat", "id": 2, "messages": [...], "params": {...}}
       {"op": "warm", "id": 3, "prompt": "..."}
       {"op": "cancel", "id": 1}
       {"op": "shutdown"}
  out: {"event": "ready", "info": {...}}
       {"event": "token", "id": 1, "text": "..."}
       {"event": "done", "id": 1, "stats": {...}}
       {"event": "error", "id": 1, "message": "..."}
       {"event": "fatal", "message": "..."}          (then the process exits)

Generations run one at a time on a worker thread; the main thread keeps reading
stdin so that a cancel is seen between two tokens, and between two chunks of a
long prompt evaluation.
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
from typing import Any, Callable

# Prompt evaluation is chunked so that a cancel (the student typed on) is noticed
# within one chunk (~0.3-0.6 s for 64 tokens of a 1.5B model on 2 cores). A cancelled
# prefill still leaves a valid prefix in the KV cache, which the next keystroke reuses.
PREFILL_CHUNK_TOKENS = 64


def _forbid_network() -> None:
    """The local engine needs no network; make any attempt fail loudly (privacy)."""

    def hook(event: str, args: tuple) -> None:
        if event == "socket.connect":
            sock = args[0]
            if getattr(sock, "family", None) != socket.AF_UNIX:
                raise PermissionError("jupyter-copilot: the local engine may not open network connections")

    sys.addaudithook(hook)


class Protocol:
    def __init__(self, out_fd: int) -> None:
        self._out = os.fdopen(out_fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def send(self, **event: Any) -> None:
        line = json.dumps(event, ensure_ascii=True)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _common_prefix_len(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _first_line_complete(text: str) -> bool:
    """A newline follows some content (leading blank lines do not count)."""
    content = text.lstrip()
    return "\n" in content and bool(content.partition("\n")[0].strip())


class Worker:
    def __init__(self, llm, proto: Protocol) -> None:
        self.llm = llm
        self.proto = proto
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

    # -- prompt cache ----------------------------------------------------------
    def prefill(
        self, tokens: list[int], cancelled: Callable[[], bool], leave: int = 1
    ) -> tuple[int, bool]:
        """Evaluate `tokens` into the KV cache, reusing the longest common prefix with
        what is already there, in chunks so that a cancellation stops it soon. The
        last `leave` tokens (at least one) are left for the generation call, which
        evaluates them in one batch with the token it samples after. Returns
        (tokens reused, completed)."""
        llm = self.llm
        cached_ids = llm.input_ids[: llm.n_tokens].tolist()
        # Keep the last token out at least: generation re-evaluates it for fresh logits.
        reuse = min(_common_prefix_len(cached_ids, tokens), max(len(tokens) - 1, 0))
        llm.n_tokens = reuse
        pos = reuse
        end = len(tokens) - min(max(leave, 1), len(tokens) - reuse)
        while pos < end:
            if cancelled():
                return reuse, False
            chunk = tokens[pos : min(pos + PREFILL_CHUNK_TOKENS, end)]
            llm.eval(chunk)
            pos += len(chunk)
        return reuse, True

    def tokenize(self, text: str) -> list[int]:
        # special=True: the FIM markers in our prompt are control tokens, not text.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

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
                self.proto.send(event="error", id=job_id, message=f"{type(exc).__name__}: {exc}")
            finally:
                self.forget(job_id)

    def _sampling(self, params: dict) -> dict:
        return {
            "max_tokens": int(params.get("max_tokens", 64)),
            "temperature": float(params.get("temperature", 0.0)),
            "top_p": float(params.get("top_p", 1.0)),
            "top_k": int(params.get("top_k", 40)),
            "repeat_penalty": float(params.get("repeat_penalty", 1.0)),
            "stop": list(params.get("stop") or []) or None,
            "seed": params.get("seed"),
        }

    def complete(self, job: dict) -> None:
        job_id = job["id"]
        started = time.perf_counter()
        tokens = self.tokenize(job["prompt"])
        sampling = self._sampling(job.get("params", {}))
        # The server budgets prompts with an estimate; if the real count overflows the
        # context, keep the end (the cursor's surroundings matter most) rather than fail.
        room = self.llm.n_ctx() - sampling["max_tokens"] - 1
        truncated = max(len(tokens) - room, 0)
        if truncated:
            tokens = tokens[truncated:]
        cancelled = lambda: self.is_cancelled(job_id)  # noqa: E731
        # A completion leaves up to one chunk to the generation call: evaluating the
        # few tokens typed since the last request apart from the last one would cost
        # a second forward pass (~55 ms for the 1.5B model on 2 cores) on every warm
        # request; one chunk is also the cancellation granularity of prefill anyway.
        reused, complete = self.prefill(tokens, cancelled, leave=PREFILL_CHUNK_TOKENS)
        stats = {
            "prompt_tokens": len(tokens),
            "cached_tokens": reused,
            "generated_tokens": 0,
            "truncated_tokens": truncated,
        }
        if not complete:
            stats.update(stop_reason="cancelled", engine_seconds=time.perf_counter() - started)
            self.proto.send(event="done", id=job_id, stats=stats)
            return
        stop_reason = "length"
        first_line = bool(job.get("params", {}).get("first_line"))
        text = ""
        for chunk in self.llm.create_completion(tokens, stream=True, **sampling):
            choice = chunk["choices"][0]
            if choice.get("text"):
                stats["generated_tokens"] += 1
                text += choice["text"]
                self.proto.send(event="token", id=job_id, text=choice["text"])
            if choice.get("finish_reason"):
                stop_reason = choice["finish_reason"]
            if cancelled():
                stop_reason = "cancelled"
                break
            # Leaving the generator now skips evaluating the newline token: the next
            # token is never computed (the parent would cancel it one token late).
            if first_line and _first_line_complete(text):
                stop_reason = "stop"
                break
        stats.update(stop_reason=stop_reason, engine_seconds=time.perf_counter() - started)
        self.proto.send(event="done", id=job_id, stats=stats)

    def chat(self, job: dict) -> None:
        job_id = job["id"]
        started = time.perf_counter()
        sampling = self._sampling(job.get("params", {}))
        stats = {"prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0}
        stop_reason = "length"
        stream = self.llm.create_chat_completion(job["messages"], stream=True, **sampling)
        for chunk in stream:
            choice = chunk["choices"][0]
            text = choice.get("delta", {}).get("content")
            if text:
                stats["generated_tokens"] += 1
                self.proto.send(event="token", id=job_id, text=text)
            if choice.get("finish_reason"):
                stop_reason = choice["finish_reason"]
            if self.is_cancelled(job_id):
                stop_reason = "cancelled"
                break
        stats["prompt_tokens"] = int(self.llm.n_tokens) - stats["generated_tokens"]
        stats.update(stop_reason=stop_reason, engine_seconds=time.perf_counter() - started)
        self.proto.send(event="done", id=job_id, stats=stats)

    def warm(self, job: dict) -> None:
        job_id = job["id"]
        started = time.perf_counter()
        tokens = self.tokenize(job["prompt"])[: self.llm.n_ctx() - 256]
        reused, complete = self.prefill(tokens, lambda: self.is_cancelled(job_id))
        stats = {
            "prompt_tokens": len(tokens),
            "cached_tokens": reused,
            "generated_tokens": 0,
            "stop_reason": "warm" if complete else "cancelled",
            "engine_seconds": time.perf_counter() - started,
        }
        self.proto.send(event="done", id=job_id, stats=stats)


class CTransformersWorker(Worker):
    """Legacy GGML models through ctransformers: no prompt-cache control, no chat
    template (a plain instruction prompt), same protocol and cancellation."""

    def _generate(self, job_id: int, prompt: str, params: dict) -> None:
        started = time.perf_counter()
        sampling = self._sampling(params)
        tokens = self.llm.tokenize(prompt)
        stats = {"prompt_tokens": len(tokens), "cached_tokens": 0, "generated_tokens": 0}
        stop_reason = "length"
        for text in self.llm(
            prompt,
            stream=True,
            max_new_tokens=sampling["max_tokens"],
            temperature=max(sampling["temperature"], 1e-5),
            top_p=sampling["top_p"],
            top_k=sampling["top_k"],
            repetition_penalty=sampling["repeat_penalty"],
            stop=sampling["stop"],
        ):
            stats["generated_tokens"] += 1
            self.proto.send(event="token", id=job_id, text=text)
            if self.is_cancelled(job_id):
                stop_reason = "cancelled"
                break
        stats.update(stop_reason=stop_reason, engine_seconds=time.perf_counter() - started)
        self.proto.send(event="done", id=job_id, stats=stats)

    def complete(self, job: dict) -> None:
        self._generate(job["id"], job["prompt"], job.get("params", {}))

    def chat(self, job: dict) -> None:
        prompt = "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in job["messages"])
        self._generate(job["id"], prompt + "\n\nASSISTANT:", job.get("params", {}))

    def warm(self, job: dict) -> None:
        self.proto.send(event="done", id=job["id"], stats={"stop_reason": "warm"})


def read_requests(worker: Worker) -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        op = msg.get("op")
        if op == "cancel":
            worker.cancel(int(msg["id"]))
        elif op == "shutdown":
            break
        elif op in ("complete", "chat", "warm"):
            worker.jobs.put(msg)
    worker.jobs.put(None)


def load_model(args: argparse.Namespace):
    if args.backend == "ctransformers":
        from ctransformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(
            args.model, context_length=args.n_ctx, threads=args.threads or -1
        )
    from llama_cpp import Llama

    # llama-cpp-python defaults to half the cores for generation; the Jupyter server
    # is mostly idle while a student waits, so use them all unless told otherwise.
    threads = args.threads or os.cpu_count() or 1
    return Llama(
        model_path=args.model,
        n_ctx=args.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=args.n_batch,
        seed=0,
        verbose=args.verbose,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--backend", choices=["llama_cpp", "ctransformers"], default="llama_cpp")
    args = parser.parse_args(argv)

    # Keep the protocol channel private: fd 1 becomes stderr for everything else.
    proto = Protocol(os.dup(1))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _forbid_network()

    try:
        started = time.perf_counter()
        llm = load_model(args)
    except Exception as exc:
        proto.send(event="fatal", message=f"could not load the model: {type(exc).__name__}: {exc}")
        return 3
    info = {
        "backend": args.backend,
        "n_ctx": args.n_ctx,
        "load_seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }
    worker = (CTransformersWorker if args.backend == "ctransformers" else Worker)(llm, proto)
    thread = threading.Thread(target=worker.run, name="generate", daemon=True)
    thread.start()
    proto.send(event="ready", info=info)
    read_requests(worker)
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
