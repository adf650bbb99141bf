"""Remote engine: any OpenAI-compatible server (vLLM, llama.cpp's llama-server, Ollama,
or the jupyter-copilot JupyterHub service that fronts one of them).

- Completions go to `/v1/completions` with the finished FIM prompt as text: vLLM has
  no `suffix` parameter, and all three servers parse special tokens in the prompt.
- Explanations go to `/v1/chat/completions` (the server applies the chat template).
- Streaming is Server-Sent Events. Cancelling closes the HTTP response, which makes
  vLLM and llama-server abort the generation upstream.
- Retries (with back-off) only when nothing was generated yet and the failure says
  the request did not reach the server (connection refused, reset before the reply)
  or the server said so itself (429/502/503/504): never after the first token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import AsyncIterator, Optional

import httpx

from .base import (
    CancelToken,
    Engine,
    EngineBusy,
    EngineError,
    EngineStatus,
    EngineUnavailable,
    GenerationParams,
    GenerationStats,
)

log = logging.getLogger("jupyter_copilot.engine")

RETRYABLE_STATUS = {429, 502, 503, 504}


@dataclass
class OpenAICompatConfig:
    base_url: str  # e.g. http://gpu-node:8000/v1 (a trailing /v1 is optional)
    model: str = ""  # the served model's name; empty: the first of /v1/models
    api_key: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_retries: int = 2
    retry_backoff: float = 0.5
    health_interval: float = 15.0
    extra_headers: Optional[dict] = None


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
        headers = {"Accept": "text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        headers.update(config.extra_headers or {})
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            # Keep-alive pool: a student types in bursts; reconnecting costs a round trip.
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )
        self._state, self._detail = "starting", "contacting the engine"
        self._monitor: Optional[asyncio.Task] = None
        self._busy = 0
        self.served_model: str = config.model

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_health())

    async def check_health(self) -> bool:
        try:
            reply = await self._client.get(self.base + "/models", timeout=self.config.connect_timeout + 5)
            if reply.status_code in (401, 403):
                self._state, self._detail = "error", f"the engine refused our credentials ({reply.status_code})"
                return False
            reply.raise_for_status()
            models = [m.get("id") for m in reply.json().get("data", [])]
            if not self.served_model and models:
                self.served_model = models[0]
            self._state, self._detail = "ready", None
            return True
        except (httpx.HTTPError, ValueError) as exc:
            self._state = "starting" if self._state == "starting" else "error"
            self._detail = f"engine unreachable at {self.base}: {type(exc).__name__}"
            return False

    async def _watch_health(self) -> None:
        while True:
            ok = await self.check_health()
            await asyncio.sleep(self.config.health_interval if ok else 2.0)

    def status(self) -> EngineStatus:
        return EngineStatus(state=self._state, detail=self._detail, busy=self._busy > 0)  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        await self._client.aclose()

    # -- requests ----------------------------------------------------------------
    def complete(self, prompt, params, cancel, stats=None):
        body = {"prompt": prompt, **self._sampling(params)}
        return self._stream("/completions", body, cancel, stats, lambda c: c.get("text"))

    def chat(self, messages, params, cancel, stats=None):
        body = {"messages": messages, **self._sampling(params)}
        return self._stream(
            "/chat/completions", body, cancel, stats, lambda c: (c.get("delta") or {}).get("content")
        )

    def _sampling(self, p: GenerationParams) -> dict:
        body = {
            "model": self.served_model or self.config.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if p.stop:
            body["stop"] = p.stop[:4]  # OpenAI's limit; the post-processing cuts the rest
        if p.seed is not None:
            body["seed"] = p.seed
        return body

    async def _open(self, path: str, body: dict) -> httpx.Response:
        delay = self.config.retry_backoff
        for attempt in range(self.config.max_retries + 1):
            request = self._client.build_request("POST", self.base + path, json=body)
            try:
                reply = await self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.config.max_retries:
                    self._state, self._detail = "error", f"engine unreachable: {type(exc).__name__}"
                    raise EngineUnavailable(f"the engine at {self.base} is unreachable", retry_after=5) from None
            else:
                if reply.status_code < 400:
                    self._state, self._detail = "ready", None
                    return reply
                text = (await reply.aread()).decode(errors="replace")[:300]
                await reply.aclose()
                if reply.status_code not in RETRYABLE_STATUS or attempt == self.config.max_retries:
                    raise _error_for(reply.status_code, text, reply.headers.get("Retry-After"))
            await asyncio.sleep(delay)
            delay *= 2
        raise EngineUnavailable("the engine is unreachable")  # pragma: no cover

    async def _stream(
        self, path: str, body: dict, cancel: CancelToken, stats: Optional[GenerationStats], pick
    ) -> AsyncIterator[str]:
        started = time.perf_counter()
        self._busy += 1
        generated = 0
        usage: dict = {}
        stop_reason = None
        try:
            reply = await self._open(path, body)
            try:
                async for line in reply.aiter_lines():
                    if cancel.cancelled:
                        stop_reason = "cancelled"
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError:
                        continue
                    if event.get("error"):
                        raise EngineError(f"engine error: {event['error']}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        text = pick(choice)
                        if choice.get("finish_reason"):
                            stop_reason = choice["finish_reason"]
                        if text:
                            generated += 1
                            yield text
            except httpx.ReadTimeout:
                raise EngineError(f"the engine stopped answering (no data for {self.config.read_timeout:.0f} s)") from None
            except (httpx.RemoteProtocolError, httpx.ReadError):
                raise EngineError("the connection to the engine broke during generation") from None
            finally:
                # Closing the response closes the upstream request: generation stops there.
                await reply.aclose()
        finally:
            self._busy -= 1
            if stats is not None:
                stats.prompt_tokens = int(usage.get("prompt_tokens", 0))
                details = usage.get("prompt_tokens_details") or {}
                stats.cached_tokens = int(details.get("cached_tokens", 0) or 0)
                stats.generated_tokens = int(usage.get("completion_tokens", generated))
                stats.engine_seconds = time.perf_counter() - started
                stats.stop_reason = "cancelled" if cancel.cancelled else stop_reason


def _error_for(status: int, text: str, retry_after: Optional[str]) -> EngineError:
    try:
        message = json.loads(text).get("error", text)
        if isinstance(message, dict):
            message = message.get("message", text)
    except (ValueError, AttributeError):
        message = text
    if status == 429:
        return EngineBusy(f"the engine is busy: {message}", retry_after=int(retry_after or 2))
    if status == 503:
        return EngineUnavailable(f"the engine is not ready: {message}", retry_after=int(retry_after or 5))
    if status in (401, 403):
        err = EngineError(f"the engine refused the request ({status}): {message}")
        err.status = status
        return err
    err = EngineError(f"the engine answered {status}: {message}")
    err.status = 502 if status >= 500 else 400
    return err
