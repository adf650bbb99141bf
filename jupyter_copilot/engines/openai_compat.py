"""Remote engine: any OpenAI-compatible server (vLLM, llama.cpp's llama-server, Ollama).

- Completions go to ``/v1/completions`` with the finished FIM prompt as text: vLLM has
  no `suffix` parameter, and all three servers parse special tokens in the prompt.
- Explanations go to ``/v1/chat/completions`` (the server applies the chat template).
- Streaming is Server-Sent Events. Cancelling closes the HTTP response, also while the
  server is still evaluating the prompt (no byte has come yet): vLLM and llama-server
  abort a request whose connection closed, so the slot is freed for someone else.
- Retries, with exponential back-off, only where repeating cannot do harm or waste:
  the connection could not be opened (the request never left), or the server said it
  is not ready or a gateway failed (502/503/504) before any text came. Never after the
  first token (the student would see text twice), and never on 429: a busy engine is
  not helped by more requests; the 429 and its Retry-After go back to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from ..postprocess.line_mode import FirstLineStop
from .base import (
    Cancelled,
    CancelToken,
    Engine,
    EngineBusy,
    EngineError,
    EngineStatus,
    EngineUnavailable,
    GenerationParams,
    GenerationStats,
    PromptTooLong,
    engine_cache_slot,
    retry_after_seconds,
    unless_cancelled,
)

log = logging.getLogger("jupyter_copilot.engine")

RETRYABLE_STATUS = {502, 503, 504}


@dataclass
class OpenAICompatConfig:
    base_url: str  # e.g. http://gpu-node:8000/v1 (a trailing /v1 is optional)
    model: str = ""  # the served model's name; empty: the first of /v1/models
    api_key: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0  # seconds without a byte from the server
    max_retries: int = 2
    retry_backoff: float = 0.5
    health_interval: float = 15.0
    max_connections: int = 64
    extra_headers: dict | None = None


def read_api_key(key: str = "", key_file: str = "", key_env: str = "") -> str:
    """API key from a file (preferred: not visible in `ps` or the config), an
    environment variable, or the value itself."""
    if key_file:
        with open(os.path.expanduser(key_file), encoding="utf-8") as fh:
            return fh.read().strip()
    if key_env:
        return os.environ.get(key_env, "")
    return key


class OpenAICompatEngine(Engine):
    name = "openai_compat"

    def __init__(self, config: OpenAICompatConfig) -> None:
        self.config = config
        base = config.base_url.rstrip("/")
        self.base = base if base.endswith("/v1") else base + "/v1"
        headers = {}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        headers.update(config.extra_headers or {})
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            # Keep-alive pool: a student types in bursts; reconnecting costs a round trip.
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=min(16, config.max_connections),
            ),
        )
        self._state, self._detail = "starting", f"contacting the engine at {self.base}"
        self._monitor: asyncio.Task | None = None
        self._busy = 0
        self._llama_server = False
        # llama-server's slots, each a prompt cache (its /props total_slots): the campus
        # admission lends them to students as seats (hub/admission.py). 0: unknown/none.
        self.prompt_caches = 0
        self.served_model: str = config.model

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_health())

    async def check_health(self) -> bool:
        """One look at ``/v1/models``; sets the state that `status()` reports."""
        try:
            reply = await self._client.get(self.base + "/models")
        except httpx.HTTPError as exc:
            self._set_down(f"engine unreachable at {self.base} ({type(exc).__name__})")
            return False
        if reply.status_code in (401, 403):
            self._set_down(
                f"the engine at {self.base} refused our credentials ({reply.status_code})"
            )
            return False
        if reply.status_code == 503:  # llama-server and vLLM say 503 while loading
            self._state, self._detail = (
                "starting",
                f"the engine at {self.base} is loading its model",
            )
            return False
        if reply.status_code >= 400:
            self._set_down(f"the engine at {self.base} answered {reply.status_code} to /models")
            return False
        try:
            listed = [m for m in reply.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            listed = []
        if not self.served_model and listed:
            self.served_model = listed[0].get("id", "")
        # llama-server says owned_by "llamacpp"; it can put token counts in every chunk.
        self._llama_server = any(m.get("owned_by") == "llamacpp" for m in listed)
        if self._llama_server and not self.prompt_caches:
            self.prompt_caches = await self._llama_server_slots()
        self._state, self._detail = "ready", None
        return True

    async def _llama_server_slots(self) -> int:
        """llama-server's number of slots (``GET /props``, beside ``/v1``), 0 if unknown."""
        try:
            reply = await self._client.get(self.base.removesuffix("/v1") + "/props")
            slots = reply.json().get("total_slots") if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return 0
        return slots if isinstance(slots, int) and 0 < slots <= 4096 else 0

    def _set_down(self, detail: str) -> None:
        if self._state != "error":
            log.warning("jupyter-copilot: %s", detail)
        self._state, self._detail = "error", detail

    async def _watch_health(self) -> None:
        while True:
            ok = await self.check_health()
            # Poll fast while down, so that a restarted engine is noticed within seconds.
            await asyncio.sleep(self.config.health_interval if ok else 2.0)

    def status(self) -> EngineStatus:
        return EngineStatus(state=self._state, detail=self._detail, busy=self._busy > 0,  # type: ignore[arg-type]
                            queue=self._busy)  # fmt: skip

    async def close(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None
        await self._client.aclose()

    # -- requests ----------------------------------------------------------------
    def complete(self, prompt, params, cancel, stats=None):
        return self._stream("/completions", {"prompt": prompt}, params, cancel, stats,
                            lambda c: c.get("text"))  # fmt: skip

    def chat(self, messages, params, cancel, stats=None):
        return self._stream("/chat/completions", {"messages": messages}, params, cancel, stats,
                            lambda c: (c.get("delta") or {}).get("content"))  # fmt: skip

    async def warm(self, prompt: str, cache_salt: str | None = None) -> None:
        """Have the server evaluate `prompt` once (one token generated) so that its
        prefix cache holds it: llama-server keeps it in a slot, vLLM with
        ``--enable-prefix-caching`` in its block cache (under `cache_salt`)."""
        params = GenerationParams(max_tokens=1, cache_salt=cache_salt)
        with contextlib.suppress(EngineError):
            async for _ in self.complete(prompt, params, CancelToken()):
                pass

    def _sampling(self, p: GenerationParams) -> dict:
        body = {
            "model": self.served_model or self.config.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "stream": True,
            # Token counts in every chunk, not only in the last one: a completion is
            # often closed early (its first line is done, the student typed on), and
            # quotas still need its counts. vLLM: continuous_usage_stats.
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if self._llama_server:
            body["timings_per_token"] = True  # llama-server's way (prompt_n, cache_n)
            slot = engine_cache_slot.get()
            if slot is not None:
                # The slot that holds this student's prompt (the service's seats,
                # hub/admission.py): without it llama-server picks by similarity and
                # students' prompts evict each other's.
                body["id_slot"] = slot
        elif p.cache_salt:
            # vLLM (>= 0.9): a per-student prefix cache. llama-server has no equivalent
            # (its slots are shared): there, the service hides cache hits from replies
            # instead (docs/deployment.md, "Privacy between students").
            body["cache_salt"] = p.cache_salt
        if p.stop:
            body["stop"] = p.stop[:4]  # OpenAI's limit; the post-processing cuts the rest
        if p.seed is not None:
            body["seed"] = p.seed
        return body

    async def _open(self, path: str, body: dict, cancel: CancelToken) -> httpx.Response:
        delay = self.config.retry_backoff
        for attempt in range(self.config.max_retries + 1):
            last = attempt == self.config.max_retries
            request = self._client.build_request("POST", self.base + path, json=body)
            try:
                reply = await unless_cancelled(self._client.send(request, stream=True), cancel)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the server: safe to try again.
                if last:
                    self._set_down(f"engine unreachable at {self.base} ({type(exc).__name__})")
                    raise EngineUnavailable(
                        f"the engine at {self.base} is unreachable (is it running?)",
                        retry_after=10,
                    ) from None
            except httpx.TimeoutException:
                raise EngineError(
                    f"the engine at {self.base} did not answer within {self.config.read_timeout:.0f} s"
                ) from None
            else:
                if reply.status_code < 400:
                    self._state, self._detail = "ready", None
                    return reply
                text = (await reply.aread()).decode(errors="replace")[:500]
                await reply.aclose()
                if reply.status_code not in RETRYABLE_STATUS or last:
                    raise _error_for(reply.status_code, text, reply.headers.get("Retry-After"))
            log.info("engine: retrying %s in %.1f s (attempt %d)", path, delay, attempt + 1)
            try:
                await asyncio.wait_for(cancel.wait(), delay)
            except asyncio.TimeoutError:
                delay *= 2
            else:
                raise Cancelled()
        raise EngineUnavailable("the engine is unreachable")  # pragma: no cover

    async def _stream(
        self,
        path: str,
        what: dict,
        params: GenerationParams,
        cancel: CancelToken,
        stats: GenerationStats | None,
        pick: Callable[[dict], str | None],
    ) -> AsyncIterator[str]:
        """POST `what` (the prompt or the messages) with the sampling of `params` to
        `path`; yield the text `pick` finds in each streamed choice."""
        body = {**what, **self._sampling(params)}
        started = time.perf_counter()
        self._busy += 1
        generated = 0
        usage: dict = {}
        timings: dict = {}
        stop_reason = None
        # A line completion ends with its first line, by the post-processing's rule.
        line_done = FirstLineStop() if getattr(params, "first_line", False) else None
        try:
            try:
                reply = await self._open(path, body, cancel)
            except Cancelled:
                return
            lines = reply.aiter_lines()
            waiting_first = True
            try:
                while True:
                    try:
                        if waiting_first:
                            # Prompt evaluation: silence for up to seconds; race the token.
                            line = await unless_cancelled(lines.__anext__(), cancel)
                        elif cancel.cancelled:
                            break
                        else:
                            # Tokens flow: checking between lines is prompt enough, and
                            # cheaper than two tasks per token with hundreds of streams.
                            line = await lines.__anext__()
                    except (StopAsyncIteration, Cancelled):
                        break
                    if not line.startswith("data:"):
                        continue  # SSE comments (": keep-alive"), event names, blank lines
                    waiting_first = False
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError:
                        continue
                    if event.get("error"):
                        raise _error_in_stream(event["error"])
                    usage = event.get("usage") or usage
                    timings = event.get("timings") or timings  # llama-server's extra
                    for choice in event.get("choices") or []:
                        if choice.get("finish_reason"):
                            stop_reason = choice["finish_reason"]
                        text = pick(choice)
                        if text:
                            generated += 1
                            if line_done is not None:
                                line_done(text)
                            yield text
                    # A line completion ends with its first line: no stop string says
                    # "newline after content", so close the stream here (the server
                    # stops generating), rather than one filter round trip later.
                    if line_done is not None and line_done.done:
                        stop_reason = "stop"
                        break
            except httpx.ReadTimeout:
                raise EngineError(
                    f"the engine stopped answering (no data for {self.config.read_timeout:.0f} s)"
                ) from None
            except (httpx.RemoteProtocolError, httpx.ReadError):
                raise EngineError("the connection to the engine broke during generation") from None
            finally:
                # Closing the response closes the connection: generation stops upstream.
                with contextlib.suppress(Exception):
                    await lines.aclose()
                await reply.aclose()
        finally:
            self._busy -= 1
            if stats is not None:
                _count_tokens(stats, usage, timings, generated, body)
                stats.engine_seconds = time.perf_counter() - started
                stats.stop_reason = "cancelled" if cancel.cancelled else stop_reason


def _count_tokens(
    stats: GenerationStats, usage: dict, timings: dict, generated: int, body: dict
) -> None:
    """Token counts from the server's usage, else llama-server's timings, else an
    estimate from the prompt's text (never zero: quotas and energy rely on them)."""
    if usage.get("prompt_tokens"):
        details = usage.get("prompt_tokens_details") or {}
        stats.prompt_tokens = int(usage["prompt_tokens"])
        stats.cached_tokens = int(details.get("cached_tokens") or timings.get("cache_n") or 0)
    elif timings.get("prompt_n") is not None:
        stats.cached_tokens = int(timings.get("cache_n") or 0)
        stats.prompt_tokens = int(timings["prompt_n"]) + stats.cached_tokens
    else:
        from ..context import estimate_tokens

        text = body.get("prompt") or " ".join(
            m.get("content", "") for m in body.get("messages", [])
        )
        stats.prompt_tokens = estimate_tokens(text)
    stats.generated_tokens = max(int(usage.get("completion_tokens") or 0), generated)




def _error_in_stream(error) -> EngineError:
    message = error.get("message", error) if isinstance(error, dict) else error
    code = error.get("code") if isinstance(error, dict) else None
    if code in (429, "429"):
        return EngineBusy(f"the engine is busy: {message}")
    return EngineError(f"engine error: {message}")


def _error_for(status: int, text: str, retry_after: str | None) -> EngineError:
    details: dict = {}
    try:
        message = json.loads(text).get("error", text)
        if isinstance(message, dict):
            details, message = message, message.get("message", text)
    except (ValueError, AttributeError):
        message = text
    if status == 429:
        return EngineBusy(
            f"the engine is busy: {message}", retry_after=retry_after_seconds(retry_after, 2)
        )
    if status == 503:
        return EngineUnavailable(
            f"the engine is not ready: {message}", retry_after=retry_after_seconds(retry_after, 5)
        )
    err = EngineError(f"the engine answered {status}: {message}")
    if status in (401, 403):
        # Our credentials for the engine are wrong: a configuration problem, not the
        # student's; report it as a bad gateway rather than "you are not allowed".
        err = EngineError(f"the engine refused our credentials ({status}): {message}")
        err.status = 502
    elif status == 400 and (
        details.get("type") == "exceed_context_size_error" or "context" in str(message).lower()
    ):
        err = PromptTooLong(  # prompt > context; llama-server says both sizes
            f"the engine answered {status}: {message}",
            prompt_tokens=_int_or_none(details.get("n_prompt_tokens")),
            context_tokens=_int_or_none(details.get("n_ctx")),
        )
    else:
        err.status = 502  # our request or the engine is wrong, not the student's input
    return err


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
