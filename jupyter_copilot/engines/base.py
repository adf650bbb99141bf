"""The Engine interface: something that turns a prompt into a stream of text.

Engines only produce text. Validation, prompt building, post-processing, policy and
usage accounting live above them (see `service.py`), so that every engine (local
llama.cpp child process, a campus OpenAI-compatible server, legacy ctransformers)
gets the same behaviour for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import AsyncIterator, Optional


class EngineState(str, Enum):
    """Where an engine is in its life. The values are the API's `StatusReply.state`
    (a `str` enum: ``EngineState.READY == "ready"``, and JSON shows the value).

    starting -> ready; ready -> unresponsive (no sign of life within the stall timeout:
    the child is killed) -> restarting -> ready; ready -> restarting (crashed);
    restarting -> error (too many crashes, or the model cannot load). Disabled: turned
    off by configuration.
    """

    STARTING = "starting"  # first load of the model
    READY = "ready"
    RESTARTING = "restarting"  # after a crash or a hang, loading again
    UNRESPONSIVE = "unresponsive"  # hung (SIGSTOP, endless prefill); being killed
    ERROR = "error"  # gave up: see `detail`
    DISABLED = "disabled"

    @property
    def transient(self) -> bool:
        """Requests should simply be retried in a few seconds."""
        return self in (EngineState.STARTING, EngineState.RESTARTING, EngineState.UNRESPONSIVE)

    def __str__(self) -> str:
        return self.value

    # Hash as the plain string, so that `"ready" in {EngineState.READY}` and validators
    # that look the value up in a table of strings (pydantic's Literal) agree with ==.
    def __hash__(self) -> int:
        return str.__hash__(self)


class EngineError(Exception):
    """The engine could not produce text. `status` is the HTTP status to report and
    `code` the stable error code beside the message (see `jupyter_copilot.errors`)."""

    status = 502
    code = "engine_error"


class RetryLater:
    """Mixed into an `EngineError` that a retry will likely get past: `retry_after` is
    the seconds the reply's Retry-After header gives, `default_retry_after` unless
    the raiser knows better."""

    default_message = ""
    default_retry_after = 5

    def __init__(self, message: Optional[str] = None, retry_after: Optional[int] = None):
        super().__init__(message or self.default_message)
        self.retry_after = self.default_retry_after if retry_after is None else retry_after


class EngineUnavailable(RetryLater, EngineError):
    """Still loading (or restarting after a crash): try again shortly."""

    status = 503
    code = "unavailable"
    default_message = "the model is loading"


class EngineBusy(RetryLater, EngineError):
    """The engine's queue is full."""

    status = 429
    code = "busy"
    default_message = "the engine is busy, try again"
    default_retry_after = 2


class EngineCrashed(EngineError):
    """The engine process died while serving this request; it restarts on its own."""

    status = 502
    code = "engine_crashed"


class PromptTooLong(EngineError):
    """The prompt does not fit the engine's context window (the student's input is too big).

    `prompt_tokens` and `context_tokens`, when the engine says them (llama-server's
    `n_prompt_tokens` / `n_ctx`), let the caller build a prompt that fits: budgets are
    counted in characters, and dense text (numbers, data) has more tokens per
    character than the estimate."""

    status = 413
    code = "too_large"

    def __init__(
        self, message: str, prompt_tokens: int | None = None, context_tokens: int | None = None
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.context_tokens = context_tokens

    def fit_ratio(self) -> float | None:
        """By how much the prompt must shrink to fit, if the engine said its sizes."""
        if not self.prompt_tokens or not self.context_tokens:
            return None
        if self.context_tokens >= self.prompt_tokens:
            return None
        return self.context_tokens / self.prompt_tokens


class EngineStalled(RetryLater, EngineCrashed):
    """The engine showed no sign of life within its stall timeout (a stopped or hung
    process): it was killed and restarts on its own; retrying soon will work."""

    status = 503


@dataclass
class GenerationParams:
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    repeat_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: Optional[int] = 0
    # Line completions: the engine itself stops where the post-processing's first-line
    # rule (`postprocess.line_mode.FirstLineStop`) would cut, rather than generating on
    # until the pipeline cancels it (a round trip and one more token later; ~0.1 s of
    # a 2-core CPU per request). The rule itself lives only in postprocess.
    first_line: bool = False
    # Prefix-cache isolation (vLLM's `cache_salt`): requests with different salts never
    # share cached blocks, so one student's prompt cannot speed up (and so reveal
    # itself to) another's. None: the engine's shared cache.
    cache_salt: Optional[str] = None
    # Token healing (`context/healing.py`): the generation must start with this text,
    # taken off the end of the prompt. Only engines with `heals_tokens` get one.
    heal: str = ""
    # A completion's second try (`context/second_try.py`): the generation may not end
    # at once, nor start writing this line again. None: no second try. Only engines
    # with `avoids_text` get one.
    avoid: Optional[str] = None
    # ... nor start with one of these (the stop strings that begin a line, less their
    # newline: the next cell's marker, which the cursor's own line start would begin).
    avoid_starts: tuple[str, ...] = ()
    # A chat written after this text (the notebook as the completions' prompts show it,
    # `context.build_notebook_document`), evaluated from the completions' cache, where
    # the notebook already is (in a lane of its own: the conversation stays cached
    # while completions run). Only engines with `chats_after_document` get one.
    document: str = ""


@dataclass
class TokenCounts:
    """What a generation costs: what the engine counts for one request, and what the
    usage ledger (`usage.UsageCounters`) sums per user and feature."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those found in the prefix cache
    generated_tokens: int = 0
    engine_seconds: float = 0.0

    def token_counts(self) -> dict:
        """The four counts by name (a subclass's other fields left out)."""
        return {name: getattr(self, name) for name in TokenCounts.__dataclass_fields__}

    def add_counts(self, other: "TokenCounts") -> None:
        """Add another generation's counts to these (a request made of two)."""
        for name in TokenCounts.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class GenerationStats(TokenCounts):
    """Filled in by the engine while it generates (frugality accounting)."""

    stop_reason: Optional[str] = None
    threads: Optional[int] = None  # the local engine's threads at the end (cpu_share.py)


# Which of the engine's prompt caches a request should use (llama-server's `id_slot`),
# set by the campus admission for the duration of the request (hub/admission.py): the
# admission decides it after the request's generator was made, so it cannot be a
# parameter; a context variable reaches the engine call made in the same task.
engine_cache_slot: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar(
    "engine_cache_slot", default=None
)


class CancelToken:
    """Set by the server when a newer request or a closed connection makes a
    generation useless; engines check it between tokens and stop generating."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: Optional[str] = None

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


class Cancelled(Exception):
    """Raised by `unless_cancelled` when the cancel token fired first."""


async def unless_cancelled(awaitable, cancel: CancelToken):
    """Await `awaitable`, unless `cancel` fires first (then raise `Cancelled`).

    Why: a server sends nothing while it evaluates a long prompt; without this a
    cancelled request would hold its slot until the first byte arrives."""
    if cancel.cancelled:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise Cancelled()
    work = asyncio.ensure_future(awaitable)
    stop = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if work.done():
        return work.result()
    work.cancel()
    with contextlib.suppress(BaseException):
        await work
    raise Cancelled()


def retry_after_seconds(value: str | None, default: int) -> int:
    """A Retry-After header as whole seconds (at least 1); `default` if absent or a date."""
    try:
        return max(1, int(float(value))) if value else default
    except ValueError:  # an HTTP date: rare, not worth parsing
        return default


@dataclass
class EngineStatus:
    state: EngineState  # a plain string value is accepted too (coerced below)
    detail: Optional[str] = None
    restarts: int = 0
    queue: int = 0
    busy: bool = False

    def __post_init__(self) -> None:
        self.state = EngineState(self.state)

    def unavailable(
        self, what: str = "the engine", loading_retry_after: int = 5
    ) -> Optional["EngineUnavailable"]:
        """The error a request gets in this state (None when ready): retry soon while
        `what` is loading (a transient state), in 30 s once it gave up or is off."""
        if self.state is EngineState.READY:
            return None
        if self.state.transient:
            return EngineUnavailable(f"the model is loading ({self.detail or self.state.value})",
                                     retry_after=loading_retry_after)  # fmt: skip
        return EngineUnavailable(f"{what} is not available: {self.detail}", retry_after=30)


class Engine(ABC):
    """Async engine interface. Implementations must be safe to call concurrently:
    they queue internally and raise `EngineBusy` when the queue is full."""

    name: str = "engine"
    # Whether `GenerationParams.heal` is honoured (a logits mask in the engine).
    heals_tokens: bool = False
    # Whether `GenerationParams.avoid` is honoured (engines/avoid_mask.py).
    avoids_text: bool = False
    # Whether `chat` honours `GenerationParams.document` (one cache for both).
    chats_after_document: bool = False
    # Whether warm-ups sent while the student types pay (`WarmRequest.through_cursor`):
    # a prompt cache of its own, evaluated slowly (a CPU). Told to the frontend.
    warms_while_typing: bool = False

    async def start(self) -> None:  # pragma: no cover - trivial default
        """Begin loading; returns at once. `status()` says when it is ready."""

    @abstractmethod
    def status(self) -> EngineStatus: ...

    @abstractmethod
    def complete(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: CancelToken,
        stats: Optional[GenerationStats] = None,
    ) -> AsyncIterator[str]:
        """Raw text completion of `prompt` (special tokens in it are honoured)."""

    def complete_ahead(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: CancelToken,
        stats: Optional[GenerationStats] = None,
    ) -> AsyncIterator[str]:
        """`complete` for a suggestion asked ahead, which nobody waits for yet. An
        engine that runs work ahead as bets (`llama_cpp.ChildProcessEngine`) runs it as
        one: stopped by any request someone waits for, skipped while one is queued
        (`cancel` cancelled, nothing written). Elsewhere, a completion."""
        return self.complete(prompt, params, cancel, stats)

    @abstractmethod
    def chat(
        self,
        messages: list[dict],
        params: GenerationParams,
        cancel: CancelToken,
        stats: Optional[GenerationStats] = None,
    ) -> AsyncIterator[str]:
        """Chat completion with the model's own chat template."""

    async def warm(self, prompt: str, cache_salt: Optional[str] = None) -> None:
        """Pre-fill the prompt cache with `prompt` (no-op where not supported);
        `cache_salt`: only where the engine isolates caches (see GenerationParams)."""

    def serving(self) -> bool:
        """Whether a request someone waits for is queued or running (work ahead would
        only be dropped); False where the engine does not say."""
        return False

    async def warm_chat(self, messages: list[dict], params: GenerationParams,
                        stats: Optional[GenerationStats] = None) -> None:  # fmt: skip
        """Pre-fill the cache with a chat `chat(messages, params)` will start with
        (an explanation prepared ahead); a no-op where chats have no cache to keep
        (engines without `chats_after_document`)."""

    async def close(self) -> None:
        """Stop the engine and free its resources."""
