"""The ways a benchmark asks for a completion, behind one small interface.

- `ServiceCompleter`: the product in this process: `CompletionService` (prompt
  building, post-processing) over the llama.cpp child-process engine.
- `HttpCompleter`: the product through a running Jupyter server (`/copilot/...`).
- `RawFimCompleter`: the reference: the same engine given a plain FIM prompt, and
  no post-processing beyond cutting at special tokens (and at the first line).
- `InfillCompleter`: the anchor: llama-server's ``/infill`` as llama.vim uses it.

Each `complete` returns the text and the wall-clock latency the caller saw.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..schema import CompleteRequest, WarmRequest


@dataclass
class Completion:
    text: str
    latency_ms: float
    mode: str | None = None
    timing: dict = field(default_factory=dict)  # what the server reports (tokens, cache)
    error: str | None = None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# Settings a benchmark may override (`--set name=value`): the CopilotApp trait names,
# so that the same flag works in-process and for a Jupyter server we start.
SERVICE_TRAITS = {
    "context_budget_tokens": "budget_tokens",
    "suffix_max_chars": "suffix_max_chars",
    "line_max_tokens": "line_max_tokens",
    "block_max_tokens": "block_max_tokens",
    "max_lines": "max_lines",
    "reuse_suggestions": "reuse_suggestions",
    "ahead_next_line": "ahead_next_line",
    "token_healing": "token_healing",
}
ENGINE_TRAITS = {"n_ctx": "n_ctx", "n_batch": "n_batch", "threads": "threads",
                 "cache_reuse_tokens": "cache_reuse_tokens", "fit_threads": "fit_threads"}


def app_defaults() -> dict:
    """The CopilotApp trait defaults: what a student's server runs with."""
    from ..app import CopilotApp

    traits = CopilotApp.class_traits()
    # Names this version lacks are skipped: the harness also measures older code.
    names = (*SERVICE_TRAITS, *ENGINE_TRAITS)
    return {name: traits[name].default_value for name in names if name in traits}


async def start_engine(model_path: str, settings: dict):
    from ..engines.llama_cpp import LlamaCppConfig, LlamaCppEngine

    config = LlamaCppConfig(
        model_path=model_path, **{ENGINE_TRAITS[k]: v for k, v in settings.items() if k in ENGINE_TRAITS}
    )
    engine = LlamaCppEngine(config)
    await engine.start()
    while engine.status().state == "starting":
        await asyncio.sleep(0.1)
    if engine.status().state != "ready":
        await engine.close()
        raise RuntimeError(f"the engine did not start: {engine.status().detail}")
    return engine


class ServiceCompleter:
    """The product's completion path, in this process (no HTTP)."""

    explicit_mode = False  # the product decides line/block itself, as for students

    def __init__(self, engine, fam, card, overrides: dict | None = None) -> None:
        from ..policy import Policy
        from ..service import CompletionService, CompletionSettings
        from ..usage import UsageLedger

        values = {**app_defaults(), **(overrides or {})}
        settings = CompletionSettings(
            **{field: values[trait] for trait, field in SERVICE_TRAITS.items() if trait in values}
        )
        self.service = CompletionService(engine, fam, card, settings, Policy(), UsageLedger())

    async def complete(self, req: CompleteRequest) -> Completion:
        started = time.perf_counter()
        last = None
        async for chunk in self.service.complete(req, "bench"):
            last = chunk
        latency = _elapsed_ms(started)
        timing = last.timing.model_dump() if last and last.timing else {}
        return Completion(
            last.text if last else "", latency, self.service.mode_for(req), timing,
            last.error if last else "no reply",
        )

    async def warm(self, req: WarmRequest) -> float:
        started = time.perf_counter()
        await self.service.warm(req)
        return _elapsed_ms(started)


class RawFimCompleter:
    """The raw model: ``<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>``.

    Line mode keeps the first non-empty line (cancelling generation as soon as it
    is complete); block mode keeps everything up to a special token.
    """

    explicit_mode = True

    def __init__(self, engine, fam, line_max_tokens: int = 48, block_max_tokens: int = 256):
        if fam.fim is None:
            raise ValueError(f"model family {fam.name!r} has no fill-in-the-middle format")
        self.engine, self.fam = engine, fam
        self.max_tokens = {"line": line_max_tokens, "block": block_max_tokens}

    async def complete(self, req: CompleteRequest) -> Completion:
        from contextlib import aclosing

        from ..engines.base import CancelToken, GenerationParams, GenerationStats

        mode = req.mode or "line"
        prompt = self.fam.fim.format(prefix=req.prefix, suffix=req.suffix)
        # Stop tokens end generation inside llama.cpp; the text never contains them.
        params = GenerationParams(max_tokens=self.max_tokens[mode], stop=list(self.fam.stop))
        stats = GenerationStats()
        started = time.perf_counter()
        raw = ""
        async with aclosing(self.engine.complete(prompt, params, CancelToken(), stats)) as pieces:
            async for piece in pieces:
                raw += piece
                if mode == "line" and _first_line_done(raw):
                    break
        latency = _elapsed_ms(started)
        text = _first_nonblank_line(raw) if mode == "line" else raw
        timing = {
            "prompt_tokens": stats.prompt_tokens,
            "cached_tokens": stats.cached_tokens,
            "generated_tokens": stats.generated_tokens,
        }
        return Completion(text, latency, mode, timing)

    async def warm(self, req: WarmRequest) -> float:
        return 0.0


def _first_line_done(text: str) -> bool:
    stripped = text.lstrip("\n")
    return "\n" in stripped and bool(stripped.partition("\n")[0].strip())


def _first_nonblank_line(text: str) -> str:
    """The first line with content, indentation kept (it is code to be inserted)."""
    for line in text.split("\n"):
        if line.strip():
            return line.rstrip()
    return ""


class HttpCompleter:
    """The product through a Jupyter server: what the JupyterLab frontend does."""

    explicit_mode = False
    asks_ahead = True  # `CompleteRequest.ahead`, as the frontend after an accept

    def __init__(self, base_url: str, token: str = "", timeout: float = 300.0) -> None:
        import httpx

        headers = {"Authorization": f"token {token}"} if token else {}
        self.base = base_url.rstrip("/") + "/copilot/"
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def status(self) -> dict:
        reply = await self.client.get(self.base + "status")
        reply.raise_for_status()
        return reply.json()

    async def wait_ready(self, timeout: float = 600.0) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                status = await self.status()
            except (OSError, httpx.HTTPError):  # the server is not listening yet
                status = {"state": "starting"}
            if status["state"] == "ready":
                return status
            if status["state"] == "error" or time.monotonic() > deadline:
                raise RuntimeError(f"the copilot engine is not ready: {status}")
            await asyncio.sleep(0.25)

    async def complete(self, req: CompleteRequest) -> Completion:
        body = req.model_dump(exclude_none=True)
        started = time.perf_counter()
        reply = await self.client.post(self.base + "complete", json=body)
        latency = _elapsed_ms(started)
        data = reply.json()
        if reply.status_code != 200:
            return Completion("", latency, error=f"HTTP {reply.status_code}: {data.get('error')}")
        return Completion(data["text"], latency, data.get("mode"), data.get("timing") or {})

    async def warm(self, req: WarmRequest) -> float:
        """POST /copilot/warm (fire and forget on the server), then wait until the
        engine is idle: the time a student would have to spend reading for the
        warm-up to be complete before they type."""
        started = time.perf_counter()
        reply = await self.client.post(self.base + "warm", json=req.model_dump(exclude_none=True))
        if reply.status_code != 202:
            return 0.0
        while True:
            features = (await self.status()).get("features", {})
            if not features.get("busy") and not features.get("queue"):
                return _elapsed_ms(started)
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        await self.client.aclose()


class InfillCompleter:
    """llama-server ``/infill`` (the llama.vim / llama.vscode approach): earlier cells
    as ``input_extra`` chunks, the cell around the cursor as prefix and suffix, the
    server's prompt cache with KV shifting (``--cache-reuse``) doing the reuse."""

    explicit_mode = True  # no mode detection: the benchmark says line or block

    def __init__(
        self,
        base_url: str,
        line_max_tokens: int = 48,
        block_max_tokens: int = 160,
        prewarm: bool = False,
        typed_through: bool = False,
        timeout: float = 300.0,
    ) -> None:
        import httpx

        from ..reuse import SuggestionMemory

        self.url = base_url.rstrip("/") + "/infill"
        self.client = httpx.AsyncClient(timeout=timeout)
        self.max_tokens = {"line": line_max_tokens, "block": block_max_tokens}
        self.prewarm = prewarm
        # llama.vim keeps its own suggestions and shows the rest while the user types
        # through one, client-side; the same rule as our server's (reuse.py).
        self.memory = SuggestionMemory() if typed_through else None

    @staticmethod
    def extra_chunks(req: CompleteRequest | WarmRequest) -> list[dict]:
        """Earlier cells as ``{filename, text}``; markdown as comment lines, so that
        both the anchor and the product read the same words."""
        name = req.path or "notebook.ipynb"
        chunks = []
        for cell in req.context_cells:
            text = cell.source
            if cell.cell_type == "markdown":
                text = "\n".join(f"# {line}".rstrip() for line in text.split("\n"))
            elif cell.cell_type != "code":
                continue
            chunks.append({"filename": name, "text": text.rstrip("\n") + "\n"})
        return chunks

    def body(self, req: CompleteRequest) -> dict:
        mode = req.mode or "line"
        body = {
            "input_prefix": req.prefix,
            "input_suffix": req.suffix,
            "input_extra": self.extra_chunks(req),
            "n_predict": self.max_tokens[mode],
            "cache_prompt": True,
            "temperature": 0.0,
            "top_k": 1,
            "seed": 0,
            "stream": False,
        }
        if mode == "line":
            body["stop"] = ["\n"]
        else:
            body["t_max_predict_ms"] = 2000  # llama.vim's guard for long blocks
        return body

    async def complete(self, req: CompleteRequest) -> Completion:
        from ..reuse import request_key

        started = time.perf_counter()
        mode = req.mode or "line"
        editor, key = ("", req.editor_id or ""), request_key(req)
        if self.memory is not None:
            rest = self.memory.continuation(editor, key, req.prefix, mode)
            if rest is not None:
                return Completion(rest, _elapsed_ms(started), mode, {"reused": True})
        reply = await self.client.post(self.url, json=self.body(req))
        latency = _elapsed_ms(started)
        data = reply.json()
        if reply.status_code != 200:
            error = data.get("error", {})
            return Completion("", latency, error=f"HTTP {reply.status_code}: {error}")
        if self.memory is not None:
            self.memory.remember(editor, key, req.prefix, data.get("content", ""), mode)
        timings = data.get("timings", {})
        timing = {
            "prompt_tokens": timings.get("prompt_n", 0) + timings.get("cache_n", 0),
            "cached_tokens": timings.get("cache_n", 0),
            "generated_tokens": timings.get("predicted_n", 0),
            "prompt_ms": timings.get("prompt_ms"),
            "predicted_ms": timings.get("predicted_ms"),
        }
        return Completion(data.get("content", ""), latency, mode, timing)

    async def warm(self, req: WarmRequest) -> float:
        """llama.vim's ring-buffer update: an ``n_predict: 0`` request that only fills
        the cache with the extra context. Off unless asked for (`prewarm`)."""
        if not self.prewarm:
            return 0.0
        started = time.perf_counter()
        body = {
            # The same as the product is given: the cell's lines above the cursor's.
            "input_prefix": req.prefix[: req.prefix.rfind("\n") + 1],
            "input_suffix": "",
            "input_extra": self.extra_chunks(req),
            "n_predict": 0,
            "cache_prompt": True,
            "temperature": 0.0,
        }
        await self.client.post(self.url, json=body)
        return _elapsed_ms(started)

    async def aclose(self) -> None:
        await self.client.aclose()
