"""What the request handlers talk to: a `Backend`, built once when the app starts.

Two implementations, chosen in the apps' `initialize_settings`/`setup` and never
swapped afterwards:

- :class:`LocalBackend`: the engine and the pipeline in this process (a student's
  own Jupyter server, and the campus service itself);
- :class:`~jupyter_copilot.hub.client.HubRelayBackend`: a student's server on a
  JupyterHub, relaying every request to the campus service.

Beside the backend, the handlers get an `Admission`: who may start work and how much
(nothing to check on one's own server; quotas and the engine's share on the campus
service). Handlers, backends and admissions meet in `handlers.CopilotRoutes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import AsyncContextManager, ContextManager, Optional, Protocol

from . import __version__
from .engines.base import CancelToken, Engine, EngineStatus
from .explain import ExplainService
from .policy import Policy
from .schema import CompleteRequest, ExplainRequest, ModelCard, StatusReply, StreamChunk, WarmRequest
from .service import CompletionService
from .usage import UsageLedger


@dataclass(frozen=True)
class Caller:
    """Who is asking, as the server established it (never from the request body)."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    # On a user server spawned by JupyterHub: the hub user actually calling (the
    # server's owner, or someone it is shared with, or an admin visiting it).
    hub_name: Optional[str] = None


class Backend(Protocol):
    card: ModelCard

    async def start(self) -> None:
        """Idempotent; called before each request too (a relay refreshes a stale status)."""

    async def close(self) -> None: ...

    def status(self, caller: Caller) -> StatusReply: ...

    def complete(
        self, req: CompleteRequest, caller: Caller, cancel: CancelToken
    ) -> AsyncIterator[StreamChunk]:
        """Chunks of cleaned text; refusals (403/429/503) raise before the first one."""

    def explain(
        self, req: ExplainRequest, caller: Caller, cancel: CancelToken
    ) -> AsyncIterator[StreamChunk]: ...

    def warm(self, req: WarmRequest, caller: Caller) -> Coroutine:
        """Refusals raise now; the returned coroutine warms (run in the background:
        warming must never make the notebook wait)."""

    def prepare_explanation(self, req: ExplainRequest, caller: Caller) -> Coroutine:
        """As `warm`, for the explanation `req` asks for: its prompt evaluated ahead
        (a no-op where the engine cannot keep it)."""

    async def usage(self, caller: Caller) -> dict: ...


class Ticket:
    """An admitted request. `observe` sees its chunks go by (the campus service holds
    an engine slot for them and counts outcomes and latencies there); `slot` holds the
    engine's share for other work (warming). Here both let everything through."""

    def observe(self, chunks: AsyncIterator[StreamChunk], cancel: CancelToken,
                editor: Optional[str] = None) -> AsyncIterator[StreamChunk]:  # fmt: skip
        return chunks

    def slot(self, cancel: CancelToken, editor: Optional[str] = None) -> AsyncContextManager:
        return nullcontext()


class Admission(Protocol):
    """What may start: `admit` raises (429) or holds a slot while the work runs."""

    def admit(self, caller: Caller, feature: str) -> ContextManager[Ticket]: ...

    def describe(self, caller: Caller) -> dict:
        """Extra status features for the caller (quota left, staff)."""


def status_reply(engine: EngineStatus, policy: Policy, caller: Caller, label: str,
                 card: ModelCard, warm_while_typing: bool = False) -> StatusReply:  # fmt: skip
    """`GET status`: the engine's state and the caller's features (policy modes), and
    whether the frontend should warm the engine up while the student types."""
    features = policy.status_features(caller.name)
    features.update({"engine": label, "busy": engine.busy, "queue": engine.queue,
                     "restarts": engine.restarts, "languages": ["en", "fr"],
                     "warm_while_typing": warm_while_typing})  # fmt: skip
    return StatusReply(state=engine.state, model=card, features=features, detail=engine.detail,
                       version=__version__)  # fmt: skip


class OpenAdmission:
    """One's own server: no quotas (the engine's queue still answers 429 when full)."""

    @contextmanager
    def admit(self, caller: Caller, feature: str) -> Iterator[Ticket]:
        yield Ticket()

    def describe(self, caller: Caller) -> dict:
        return {}


@dataclass
class LocalBackend:
    """The engine and the completion/explanation pipeline, in this process."""

    engine: Engine
    card: ModelCard
    policy: Policy
    usage_ledger: UsageLedger
    completions: CompletionService
    explainer: ExplainService
    engine_label: str  # "llama_cpp", "openai_compat", "hub_service" (status)
    startup_error: Optional[str] = None
    # A separate engine for explanations and questions (a chat model), if configured.
    chat_engine: Optional[Engine] = None

    async def start(self) -> None:
        await self.engine.start()
        if self.chat_engine is not None:
            await self.chat_engine.start()

    async def close(self) -> None:
        await self.engine.close()
        if self.chat_engine is not None:
            await self.chat_engine.close()

    def status(self, caller: Caller) -> StatusReply:
        engine = self.engine.status()
        if self.completions.working_ahead or self.explainer.working_ahead:
            engine = replace(engine, busy=True)  # a warm-up is still being prepared
        typing = getattr(self.engine, "warms_while_typing", False)
        return status_reply(engine, self.policy, caller, self.engine_label, self.card,
                            warm_while_typing=typing)  # fmt: skip

    def complete(self, req, caller, cancel):
        return self.completions.complete(req, caller.name, cancel)

    def explain(self, req, caller, cancel):
        return self.explainer.explain(req, caller.name, cancel)

    def warm(self, req: WarmRequest, caller: Caller) -> Coroutine:
        self.policy.require("completion", caller.name, path=req.path)
        return self.completions.warm(req, caller.name)

    def prepare_explanation(self, req: ExplainRequest, caller: Caller) -> Coroutine:
        return self.explainer.prepare(req, caller.name)

    async def usage(self, caller: Caller) -> dict:
        # A single-user server is one student's: its usage is theirs, whoever the
        # identity provider says called (with a token and no cookie, jupyter_server
        # makes up a new anonymous user for each request).
        report = self.usage_ledger.report()
        report.pop("users", None)
        return report
