"""One completion, from request to cleaned stream: context -> prompt -> engine -> filters.

Handlers stay thin (HTTP in, HTTP out); this module owns the order of things, the
"newest request per editor wins" rule, timing and usage accounting. It knows no
engine in particular and no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator, Optional

from .context import build_completion_prompt, build_warm_prompt, filter_context
from .context.bounds import bound_request, bound_warm_request
from .engines.base import CancelToken, Engine, GenerationParams, GenerationStats
from .policy import Policy
from .postprocess import run_pipeline
from .prompts import FimFamily
from .reuse import SuggestionMemory, request_key
from .schema import CompleteRequest, ModelCard, StreamChunk, Timing, WarmRequest
from .usage import UsageLedger

log = logging.getLogger("jupyter_copilot")


@dataclass
class CompletionSettings:
    budget_tokens: int = 1536
    suffix_max_chars: int = 400
    line_max_tokens: int = 48
    block_max_tokens: int = 160
    max_lines: int = 12
    log_prompts: bool = False
    editors_per_user: bool = False
    reuse_suggestions: bool = True


class EditorRegistry:
    """The in-flight request of each editor. A newer request for the same editor
    cancels the older one, so the engine stops generating text nobody will see."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], CancelToken] = {}

    def claim(self, user: str, editor: Optional[str], token: CancelToken) -> None:
        if editor:
            previous = self._tokens.get((user, editor))
            if previous is not None:
                previous.cancel("superseded by a newer request")
            self._tokens[(user, editor)] = token

    def release(self, user: str, editor: Optional[str], token: CancelToken) -> None:
        if editor and self._tokens.get((user, editor)) is token:
            del self._tokens[(user, editor)]


class CompletionService:
    def __init__(
        self,
        engine: Engine,
        family: FimFamily,
        card: ModelCard,
        settings: CompletionSettings,
        policy: Policy,
        usage: UsageLedger,
    ) -> None:
        self.engine = engine
        self.family = family
        self.card = card
        self.settings = settings
        self.policy = policy
        self.usage = usage
        self.editors = EditorRegistry()
        self.suggestions = SuggestionMemory()

    def check_ready(self) -> None:
        error = self.engine.status().unavailable()
        if error is not None:
            raise error

    async def complete(
        self, req: CompleteRequest, user: str, cancel: Optional[CancelToken] = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream cleaned completions. Each chunk's text is the whole text so far."""
        self.policy.require("completion", user)
        self.check_ready()
        started = time.perf_counter()
        # Cut to what the budget can use before any scan or parse (context/bounds.py).
        req = bound_request(
            req, budget_tokens=self.settings.budget_tokens,
            suffix_max_chars=self.settings.suffix_max_chars,
        )
        editor = req.editor_id or (f"{req.path}#{req.cell_id}" if req.cell_id else None)
        # The caller may keep `cancel` to stop us (e.g. the HTTP connection closed).
        token = cancel or CancelToken()
        # A Jupyter server belongs to one person, whose token-authenticated requests
        # may carry a fresh anonymous identity each time: key editors by editor id
        # alone there. A shared service (JupyterHub) keys them by user too.
        scope = user if self.settings.editors_per_user else ""
        self.editors.claim(scope, editor, token)
        s = self.settings
        reuse_key = request_key(req, self.mode_for(req)) if editor and s.reuse_suggestions else None
        if reuse_key is not None:
            rest = self.suggestions.continuation((scope, editor), reuse_key, req.prefix)
            if rest is not None:
                self.editors.release(scope, editor, token)
                self.usage.record(user, "completion")
                total_ms = round((time.perf_counter() - started) * 1000, 1)
                yield StreamChunk(
                    id=req.request_id, text=rest, done=True, model=self.card.id,
                    timing=Timing(first_token_ms=total_ms, total_ms=total_ms, reused=True),
                )
                return
        # In a thread: parsing a cold notebook costs tens of ms of CPU, which must not
        # hold the event loop that serves everyone else (bounded by context/bounds.py).
        try:
            prompt = await asyncio.to_thread(
                build_completion_prompt,
                req,
                self.family,
                budget_tokens=s.budget_tokens,
                suffix_max_chars=s.suffix_max_chars,
                line_max_tokens=s.line_max_tokens,
                block_max_tokens=s.block_max_tokens,
            )
        except BaseException:  # e.g. the client went away meanwhile
            self.editors.release(scope, editor, token)
            raise
        if s.log_prompts:  # admins opt in; off by default (students' code is private)
            log.info("copilot prompt for %s: %r", user, prompt.text)
        ctx = filter_context(req, prompt, max_lines=s.max_lines)
        line = prompt.mode == "line"
        params = GenerationParams(
            max_tokens=req.max_tokens or prompt.max_tokens,
            # Let the engine stop by itself where the filters would cut anyway: at the
            # end of the first line (line mode), at the next cell's marker (block
            # mode). Not both: llama.cpp holds back text that may start a stop
            # string, and a held-back newline would delay the first-line stop.
            first_line=line,
            stop=[] if line else list(prompt.stop),
        )
        stats = GenerationStats()
        raw, shown, first_token_ms, error = "", "", None, None

        def timing() -> Timing:
            return Timing(
                first_token_ms=first_token_ms,
                total_ms=round((time.perf_counter() - started) * 1000, 1),
                prompt_tokens=stats.prompt_tokens,
                cached_tokens=stats.cached_tokens,
                generated_tokens=stats.generated_tokens,
            )

        try:
            async with aclosing(self.engine.complete(prompt.text, params, token, stats)) as pieces:
                async for piece in pieces:
                    if first_token_ms is None:
                        first_token_ms = round((time.perf_counter() - started) * 1000, 1)
                    raw += piece
                    step = run_pipeline(raw, ctx, final=False)
                    if step.text != shown:
                        shown = step.text
                        yield StreamChunk(id=req.request_id, text=shown, model=self.card.id)
                    if step.stop:
                        stats.stop_reason = "postprocess"
                        break
        except Exception as exc:
            error = exc
            raise
        finally:
            self.editors.release(scope, editor, token)
            self.usage.record(
                user,
                "completion",
                prompt_tokens=stats.prompt_tokens,
                cached_tokens=stats.cached_tokens,
                generated_tokens=stats.generated_tokens,
                engine_seconds=stats.engine_seconds,
                cancelled=token.cancelled,
                error=error is not None,
            )
        if token.cancelled:
            yield StreamChunk(
                id=req.request_id, text=shown, done=True, error=f"cancelled: {token.reason}",
                model=self.card.id, timing=timing(),
            )
            return
        final = run_pipeline(raw, ctx, final=True)
        if reuse_key is not None:
            self.suggestions.remember((scope, editor), reuse_key, req.prefix, final.text)
        yield StreamChunk(
            id=req.request_id, text=final.text, done=True, model=self.card.id, timing=timing()
        )

    def mode_for(self, req: CompleteRequest) -> str:
        from .context import decide_mode

        return req.mode or decide_mode(req.prefix, req.suffix, req.language)

    async def warm(self, req: WarmRequest) -> None:
        """Pre-fill the KV cache with a notebook's stable prompt part (best effort)."""
        if self.engine.status().state != "ready":
            return
        req = bound_warm_request(req, budget_tokens=self.settings.budget_tokens)
        prompt = build_warm_prompt(req, self.family, budget_tokens=self.settings.budget_tokens)
        if prompt:
            await self.engine.warm(prompt)
