"""One completion, from request to cleaned stream: context -> prompt -> engine -> filters.

Handlers stay thin (HTTP in, HTTP out); this module owns the order of things, the
"newest request per editor wins" rule, timing and usage accounting. It knows no
engine in particular and no HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Optional

from .context import (
    CompletionPrompt,
    ahead_through_next_line,
    build_completion_prompt,
    build_notebook_document,
    build_warm_prompt,
    decide_request_mode,
    filter_context,
    writes_next_line,
)
from .context.body_indent import required_indent
from .context.bounds import bound_request
from .context.healing import strip_fragment
from .context.second_try import line_to_avoid, starts_to_avoid
from .engines.base import CancelToken, Engine, GenerationParams, GenerationStats, PromptTooLong
from .policy import Policy
from .postprocess import FilterContext, run_pipeline
from .prompts import FimFamily
from .reuse import AheadSuggestions, SuggestionMemory, request_key
from .schema import CompleteRequest, ModelCard, StopReason, StreamChunk, Timing, WarmRequest, editor_of
from .usage import UsageLedger

# When the engine refuses a prompt as longer than its context: rebuild it once at the
# size it said fits, with this margin (the estimate is per character, not exact), and
# not below this many tokens (the prompt would be useless).
REFIT_MARGIN = 0.85
MIN_REFIT_BUDGET = 256

log = logging.getLogger("jupyter_copilot")


# The most tokens a request may ask for, per mode: the default of the
# `max_tokens_cap` setting (pipeline_traits.py).
MAX_TOKENS_CAP = {"line": 128, "block": 512}


@dataclass
class ServingSettings:
    """How a server treats its users' requests, the same for completions and for
    explanations (`CompletionSettings` and `explain.ExplainSettings` extend it)."""

    log_prompts: bool = False  # admins opt in; off by default (students' code is private)
    # A shared service keys editors (and remembered suggestions) by user too.
    editors_per_user: bool = False
    # Campus path: replies carry no cache hits nor timings that reveal them (another
    # student's prompt in the engine's shared prefix cache would show as a faster,
    # "cached" answer: an oracle on classmates' code).
    private_timing: bool = False
    # Campus path: a secret that keys each user's prefix-cache salt (None: shared cache).
    cache_salt_key: Optional[bytes] = None

    def cache_salt(self, user: str) -> Optional[str]:
        if self.cache_salt_key is None:
            return None
        return hmac.new(self.cache_salt_key, user.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class CompletionSettings(ServingSettings):
    budget_tokens: int = 1536
    suffix_max_chars: int = 400
    line_max_tokens: int = 48
    block_max_tokens: int = 160
    max_lines: int = 12
    reuse_suggestions: bool = True
    # A suggestion asked ahead at a line end also writes the next line (issue 14).
    ahead_next_line: bool = True
    token_healing: bool = False
    # A request's `max_tokens` is capped to this, per mode (`decide`).
    max_tokens_cap: dict = field(default_factory=lambda: dict(MAX_TOKENS_CAP))


@dataclass
class SecondTry:
    """One completion's second try (`context/second_try.py`): what it avoids (None:
    none is made), whether the first try has ended, and whether it was seen to be
    empty for good before its end (the filters stopped it with nothing shown)."""

    avoid: Optional[str]
    first_ended: bool = False
    abandon_first: bool = False

    @property
    def pending(self) -> bool:
        """Whether a second try may still come."""
        return self.avoid is not None and not self.first_ended


class EditorRegistry:
    """The requests in flight per editor. A newer request the student waits for
    cancels the older one, so the engine stops generating text nobody will see. A
    suggestion asked ahead (nobody sees it yet) never stops one the student waits
    for: it yields; and nothing here stops one asked ahead: the next request of the
    editor follows it, or drops it when the student typed something else
    (`reuse.AheadSuggestions.follow`)."""

    def __init__(self) -> None:
        self._waited: dict[tuple[str, str], CancelToken] = {}
        self._ahead: dict[tuple[str, str], CancelToken] = {}

    def claim(self, user: str, editor: Optional[str], token: CancelToken, ahead: bool = False) -> bool:
        """Make this request the editor's; False (nothing claimed) for one asked ahead
        while a request someone waits for is in flight there."""
        if not editor:
            return True
        key = (user, editor)
        if ahead:
            if key in self._waited:
                return False
            self._ahead[key] = token
            return True
        previous = self._waited.get(key)
        if previous is not None:
            previous.cancel("superseded by a newer request")
        self._waited[key] = token
        return True

    def release(self, user: str, editor: Optional[str], token: CancelToken) -> None:
        for requests in (self._waited, self._ahead):
            if editor and requests.get((user, editor)) is token:
                del requests[(user, editor)]

    def busy(self, user: str, editor: str) -> bool:
        """Whether a request of this editor is in flight (for status and tests)."""
        return (user, editor) in self._waited or (user, editor) in self._ahead


def require_ready(engine: Engine) -> None:
    """503 (with Retry-After) before any work while the engine is not ready."""
    error = engine.status().unavailable()
    if error is not None:
        raise error


@dataclass
class Run:
    """One generation for one user: its cancel token, engine counters and clock.
    Completions and explanations meter and stream the same way through it."""

    user: str
    feature: str
    usage: UsageLedger
    cancel: CancelToken = field(default_factory=CancelToken)
    private_timing: bool = False
    stats: GenerationStats = field(default_factory=GenerationStats)
    started: float = field(default_factory=time.perf_counter)
    first_token_ms: Optional[float] = None
    raw: str = ""  # the engine's text so far, before the filters

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)

    def timing(self, reused: bool = False) -> Timing:
        total = self.elapsed_ms()
        if self.private_timing:
            # Whole tenths of a second, no first-token time, no cache hits: what is
            # left cannot tell a cached prefix from a computed one.
            return Timing(total_ms=round(total, -2), prompt_tokens=self.stats.prompt_tokens,
                          generated_tokens=self.stats.generated_tokens, reused=reused)  # fmt: skip
        # Served from memory: its first words came with it, unless it followed a
        # suggestion asked ahead while that was written (shown as it came).
        first = (self.first_token_ms or total) if reused else self.first_token_ms
        return Timing(first_token_ms=first, total_ms=total, prompt_tokens=self.stats.prompt_tokens,
                      cached_tokens=self.stats.cached_tokens,
                      generated_tokens=self.stats.generated_tokens, reused=reused)  # fmt: skip

    def stop_reason(self) -> StopReason:
        if self.cancel.cancelled:
            return "cancelled"
        return {"postprocess": "stopped_by_filter", "length": "max_tokens"}.get(
            self.stats.stop_reason or "", "done"
        )

    def cancelled_message(self) -> Optional[str]:
        """The human message of a cancelled end (`stop_reason` says it for programs)."""
        return f"cancelled: {self.cancel.reason}" if self.cancel.cancelled else None

    def record(self, failed: bool) -> None:
        self.usage.record(self.user, self.feature, **self.stats.token_counts(),
                          cancelled=self.cancel.cancelled, error=failed)  # fmt: skip

    async def stream(
        self, pieces: AsyncIterator[str], clean: Callable[[str], tuple[str, bool]]
    ) -> AsyncIterator[str]:
        """The engine's pieces through `clean(raw) -> (shown, stop)`: yields the shown
        text whenever it changes, stops the engine when `clean` says so, and meters
        the run whatever happens (done, cancelled, failed)."""
        shown, failed = "", False
        try:
            async with aclosing(pieces) as engine_pieces:
                async for piece in engine_pieces:
                    if self.first_token_ms is None:
                        self.first_token_ms = self.elapsed_ms()
                    self.raw += piece
                    text, stop = clean(self.raw)
                    if text != shown:
                        shown = text
                        yield shown
                    if stop:
                        self.stats.stop_reason = "postprocess"
                        break
        except Exception:
            failed = True
            raise
        finally:
            self.record(failed)


class ModelService:
    """What completions and explanations share: the engine and its card, the policy,
    the usage ledger, the serving settings, and the in-flight request of each editor
    (a newer request of the same editor cancels the older one)."""

    def __init__(
        self, engine: Engine, card: ModelCard, policy: Policy, usage: UsageLedger,
        settings: ServingSettings,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.card = card
        self.policy = policy
        self.usage = usage
        self.settings = settings
        self.editors = EditorRegistry()
        self.working_ahead = 0  # warm-ups, explanations prepared: the status says busy

    def check_ready(self) -> None:
        require_ready(self.engine)

    async def work_ahead(self, start: Callable[[], Awaitable[None]]) -> None:
        """Work done ahead of a request (a warm-up, an explanation prepared): only on
        a ready engine, and under way from here until the engine is done with it."""
        if self.engine.status().state != "ready":
            return
        self.working_ahead += 1
        try:
            await start()
        finally:
            self.working_ahead -= 1

    def editor_scope(self, user: str, editor: Optional[str]) -> tuple[str, Optional[str]]:
        """The key of an editor's in-flight request. A Jupyter server belongs to one
        person, whose token-authenticated requests may carry a fresh anonymous identity
        each time: editors are keyed by editor id alone there. A shared service
        (JupyterHub) keys them by user too."""
        return (user if self.settings.editors_per_user else ""), editor

    def start_run(self, user: str, feature: str, cancel: Optional[CancelToken]) -> Run:
        # The caller may keep `cancel` to stop us (e.g. the HTTP connection closed).
        return Run(user, feature, self.usage, cancel or CancelToken(),
                   private_timing=self.settings.private_timing)  # fmt: skip

    def log_prompt(self, what: str, user: str, prompt: object) -> None:
        if self.settings.log_prompts:  # admins opt in; off by default (students' code is private)
            log.info("copilot %s for %s: %r", what, user, prompt)


def notebook_document(cell: str, context_cells, path: str | None, family: FimFamily,
                      budget_tokens: int, suffix_max_chars: int,
                      kernel_namespace=()) -> str:  # fmt: skip
    """The notebook as the completions at the end of `cell` see it
    (`context.build_notebook_document`), bounded as a completion's request."""
    req = CompleteRequest(prefix=cell, suffix="", path=path, context_cells=context_cells,
                          kernel_namespace=list(kernel_namespace),
                          mode="line")  # the mode changes no prompt text  # fmt: skip
    req = bound_request(req, budget_tokens=budget_tokens, suffix_max_chars=suffix_max_chars)
    return build_notebook_document(req, family, budget_tokens=budget_tokens,
                                   suffix_max_chars=suffix_max_chars)  # fmt: skip


class CompletionService(ModelService):
    settings: CompletionSettings

    def __init__(
        self,
        engine: Engine,
        family: FimFamily,
        card: ModelCard,
        settings: CompletionSettings,
        policy: Policy,
        usage: UsageLedger,
    ) -> None:
        super().__init__(engine, card, policy, usage, settings)
        self.family = family
        self.suggestions = SuggestionMemory()
        self.ahead = AheadSuggestions()
        # Warm-ups under way, from their request until the engine has evaluated them
        # (building the prompt runs in a thread first): the status says busy
        # meanwhile, so a client waiting for the engine to be idle waits for them.

    def decide(self, req: CompleteRequest) -> CompleteRequest:
        """The request with its mode decided (once, here) and its token limit capped
        for that mode; everything downstream reads both from the request."""
        req = decide_request_mode(req)
        if self.settings.ahead_next_line:
            req = ahead_through_next_line(req)
        cap = self.settings.max_tokens_cap.get(req.mode)
        limit = min(req.max_tokens, cap) if req.max_tokens and cap else req.max_tokens
        return req.model_copy(update={"max_tokens": limit})

    async def complete(
        self, req: CompleteRequest, user: str, cancel: Optional[CancelToken] = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream cleaned completions. Each chunk's text is the whole text so far; the
        last one (`done`) carries `stop_reason` and `mode`."""
        self.policy.require("completion", user, path=req.path)
        self.check_ready()
        # Cut to what the budget can use before any scan or parse (context/bounds.py),
        # then decide the mode (a scan) on what is left.
        req = bound_request(req, budget_tokens=self.settings.budget_tokens,
                            suffix_max_chars=self.settings.suffix_max_chars)  # fmt: skip
        scope, editor = self.editor_scope(user, editor_of(req))
        reuse_key = request_key(req) if editor and self.settings.reuse_suggestions else None
        unremembered = req.ahead and reuse_key is None
        if unremembered:
            # Asked ahead, but nothing would remember the answer: prepare the cell as
            # the warm-up it stands for, so a cell entered is never left cold.
            try:
                await self.warm(req.warm_request(), user)
            except Exception as exc:  # noqa: BLE001 - best effort, as a warm-up is
                log.debug("warm-up for a suggestion asked ahead skipped: %s", type(exc).__name__)
        req = self.decide(req)
        run = self.start_run(user, "completion", cancel)
        # Asked ahead, but nothing would remember the answer (warmed up above), or the
        # student waits for a suggestion in this editor (that one will be
        # remembered): compute nothing.
        if unremembered or not self.editors.claim(scope, editor, run.cancel, ahead=req.ahead):
            yield StreamChunk(id=req.request_id, text="", done=True, model=self.card.id,
                              timing=run.timing(), stop_reason="done", mode=req.mode)  # fmt: skip
            return
        pending = None
        chunk = None
        try:
            first_shown = None
            if reuse_key is not None:
                # The suggestion asked ahead for this editor may be the answer (to one
                # asked ahead again, too): show it as it comes, and let it end (the
                # memory then answers, below).
                async with aclosing(self.ahead.follow((scope, editor), reuse_key, req.prefix,
                                                      run.cancel, req.mode)) as texts:  # fmt: skip
                    async for text in texts:
                        first_shown = first_shown or run.elapsed_ms()
                        yield StreamChunk(id=req.request_id, text=text, model=self.card.id)
            if run.cancel.cancelled:  # superseded, or the student left, while following
                yield StreamChunk(id=req.request_id, text="", done=True, model=self.card.id,
                                  timing=run.timing(), error=run.cancelled_message(),
                                  stop_reason="cancelled", mode=req.mode)  # fmt: skip
                return
            # A line written by the one followed, which goes on with the next line.
            settled = None if reuse_key is None else self.ahead.settled(
                (scope, editor), reuse_key, req.prefix, req.mode)  # fmt: skip
            if req.ahead:
                pending = self.ahead.start((scope, editor), reuse_key, req.prefix, run.cancel, req.mode)
            # What was shown while following counts as the first words only if it is
            # the answer (served from memory); otherwise the engine's count.
            run.first_token_ms = first_shown
            reused = self._reused(req, run, (scope, editor), reuse_key, settled)
            if reused is not None:
                yield reused
                return
            run.first_token_ms = None
            async with aclosing(self._generate(req, run)) as chunks:
                async for chunk in chunks:
                    if pending is not None:
                        pending.show(chunk.text)
                    yield chunk
            if reuse_key is not None and chunk.stop_reason != "cancelled":
                self.suggestions.remember((scope, editor), reuse_key, req.prefix, chunk.text,
                                          mode=req.mode)  # fmt: skip
        finally:
            self.editors.release(scope, editor, run.cancel)
            if pending is not None:
                self.ahead.finish((scope, editor), pending)

    def _reused(self, req, run: Run, editor: tuple, key: Optional[int],
                settled: Optional[str] = None) -> Optional[StreamChunk]:  # fmt: skip
        """The `settled` line of the suggestion this request followed (what it showed
        while following), or else the rest of the editor's last suggestion, if the
        student is typing through it. One asked ahead for two lines is also answered
        by a one-line suggestion: its line is the one asked for; the next line is
        asked for at the end of it."""
        if key is None:
            return None
        rest = settled
        if rest is None:
            rest = self.suggestions.continuation(editor, key, req.prefix, mode=req.mode)
        if rest is None and writes_next_line(req):
            rest = self.suggestions.continuation(editor, key, req.prefix, mode="line")
        if rest is None:
            return None
        self.usage.record(run.user, "completion")
        return StreamChunk(id=req.request_id, text=rest, done=True, model=self.card.id,
                           timing=run.timing(reused=True), stop_reason="done", mode=req.mode)  # fmt: skip

    async def _prompt(self, req: CompleteRequest, user: str, budget: int) -> CompletionPrompt:
        s = self.settings
        # In a thread: parsing a cold notebook costs tens of ms of CPU, which must not
        # hold the event loop that serves everyone else (bounded by context/bounds.py).
        prompt = await asyncio.to_thread(build_completion_prompt, req, self.family,
                                         budget_tokens=budget,
                                         suffix_max_chars=s.suffix_max_chars,
                                         line_max_tokens=s.line_max_tokens,
                                         block_max_tokens=s.block_max_tokens,
                                         heal=s.token_healing and getattr(self.engine, "heals_tokens", False))  # fmt: skip
        self.log_prompt("prompt", user, prompt.text)
        return prompt

    async def _pieces(
        self, req: CompleteRequest, run: Run, prompt: CompletionPrompt, params: GenerationParams
    ) -> AsyncIterator[str]:
        """The engine's pieces for `prompt`. Budgets are counted in characters; a cell of
        dense text (numbers, data) has more tokens than the estimate, and an engine with
        a small context refuses it: then, once, the prompt is rebuilt to the size the
        engine said fits (same mode, same filters) instead of failing the request."""
        try:
            async with aclosing(self._engine_pieces(prompt, params, run, req.ahead)) as pieces:
                async for piece in pieces:
                    yield piece
            return
        except PromptTooLong as too_long:
            ratio = too_long.fit_ratio()
            if ratio is None or run.raw:
                raise
            budget = int(self.settings.budget_tokens * ratio * REFIT_MARGIN)
            if budget < MIN_REFIT_BUDGET:
                raise
        smaller = await self._prompt(req, run.user, budget)
        async with aclosing(self._engine_pieces(smaller, params, run, req.ahead)) as pieces:
            async for piece in pieces:
                yield piece

    def _engine_pieces(
        self, prompt: CompletionPrompt, params: GenerationParams, run: Run, ahead: bool = False
    ) -> AsyncIterator[str]:
        # Asked ahead, nobody waits for it yet: the engine runs it as a bet.
        complete = self.engine.complete_ahead if ahead else self.engine.complete
        return complete(prompt.text, params, run.cancel, run.stats)

    async def _generate(self, req: CompleteRequest, run: Run) -> AsyncIterator[StreamChunk]:
        s = self.settings
        prompt = await self._prompt(req, run.user, s.budget_tokens)
        ctx = filter_context(req, prompt, max_lines=s.max_lines)
        line = prompt.mode == "line"
        params = GenerationParams(
            max_tokens=prompt.max_tokens,
            # Let the engine stop by itself where the filters would cut anyway: at the
            # end of the first line (line mode), at the next cell's marker (block
            # mode). Not both: llama.cpp holds back text that may start a stop
            # string, and a held-back newline would delay the first-line stop.
            first_line=line,
            stop=[] if line else list(prompt.stop),
            cache_salt=s.cache_salt(run.user),
            # The start the engine must spell: the healed fragment (taken off the
            # output below), or the indentation a blank line at column 0 needs (kept).
            heal=prompt.heal or self._required_indent(ctx),
        )
        second_try = self._second_try(req, prompt)

        def clean(raw: str) -> tuple[str, bool]:
            step = run_pipeline(strip_fragment(raw, prompt.heal), ctx, final=False)
            if second_try.pending and step.stop and not step.text:
                # Empty for good: end this try, not the request (`_tries`).
                second_try.abandon_first = True
                return "", False
            return step.text, step.stop

        def final_text() -> str:
            return run_pipeline(strip_fragment(run.raw, prompt.heal), ctx, final=True).text

        shown = ""
        pieces = self._tries(req, run, prompt, params, second_try, final_text)
        async with aclosing(run.stream(pieces, clean)) as texts:
            async for shown in texts:
                yield StreamChunk(id=req.request_id, text=shown, model=self.card.id)
        final = shown if run.cancel.cancelled else final_text()
        yield StreamChunk(id=req.request_id, text=final, done=True, model=self.card.id,
                          timing=run.timing(), error=run.cancelled_message(),
                          stop_reason=run.stop_reason(), mode=req.mode)  # fmt: skip

    def _required_indent(self, ctx: FilterContext) -> str:
        """`context/body_indent.py`, on engines that can make the generation start with
        a given text (the others' answers keep the model's indentation)."""
        return required_indent(ctx) if getattr(self.engine, "heals_tokens", False) else ""

    def _second_try(self, req: CompleteRequest, prompt: CompletionPrompt) -> SecondTry:
        """Whether an empty answer is asked again (`context/second_try.py`); not with
        token healing (the healed fragment is the start the mask would judge), nor on
        an engine that cannot mask its first tokens."""
        avoid = None
        if getattr(self.engine, "avoids_text", False) and not prompt.heal:
            avoid = line_to_avoid(req)
        return SecondTry(avoid)

    async def _tries(
        self, req: CompleteRequest, run: Run, prompt: CompletionPrompt, params: GenerationParams,
        second_try: SecondTry, final_text: Callable[[], str],
    ) -> AsyncIterator[str]:  # fmt: skip
        """The engine's pieces, then, if they came to nothing where a statement is
        expected, those of one second try that may neither end at once nor repeat the
        next line. Both tries count in the run's usage (one request)."""
        async with aclosing(self._pieces(req, run, prompt, params)) as pieces:
            async for piece in pieces:
                yield piece
                if second_try.abandon_first:
                    break
        second_try.first_ended = True
        if second_try.avoid is None or run.cancel.cancelled or final_text():
            return
        first = GenerationStats(**run.stats.token_counts())
        run.raw = ""
        retry = replace(params, avoid=second_try.avoid, avoid_starts=starts_to_avoid(prompt.stop))
        async with aclosing(self._pieces(req, run, prompt, retry)) as pieces:
            async for piece in pieces:
                yield piece
        run.stats.add_counts(first)

    def mode_for(self, req: CompleteRequest) -> str:
        return self.decide(req).mode

    async def notebook_document(self, cell: str, context_cells, path: str | None,
                                kernel_namespace=()) -> str:  # fmt: skip
        """What an explanation of `cell` can be written after, in the completion
        cache (`notebook_document`, with this service's family and budgets)."""
        s = self.settings
        return await asyncio.to_thread(notebook_document, cell, context_cells, path,
                                       self.family, s.budget_tokens, s.suffix_max_chars,
                                       kernel_namespace)  # fmt: skip

    async def warm(self, req: WarmRequest, user: str = "") -> None:
        """Pre-fill the KV cache with what the next completion starts with (best effort)."""
        await self.work_ahead(lambda: self._warm(req, user))

    async def _warm(self, req: WarmRequest, user: str) -> None:
        s = self.settings
        # Bounded as the completion it prepares will be: the same cut, the same prompt.
        cell = bound_request(req.completion_request(), budget_tokens=s.budget_tokens,
                             suffix_max_chars=s.suffix_max_chars)  # fmt: skip
        # Up to the word being typed only where the status asks for it (else the line).
        through_cursor = req.through_cursor and getattr(self.engine, "warms_while_typing", False)
        prompt = await asyncio.to_thread(build_warm_prompt, cell, self.family,
                                         budget_tokens=s.budget_tokens,
                                         suffix_max_chars=s.suffix_max_chars,
                                         through_cursor=through_cursor)  # fmt: skip
        salt = s.cache_salt(user)
        if prompt:
            await (self.engine.warm(prompt, cache_salt=salt) if salt else self.engine.warm(prompt))
