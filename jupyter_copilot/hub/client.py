"""The user server's side of the campus service: relay copilot requests to it.

With ``c.CopilotApp.hub_service_url`` set, a student's Jupyter server builds no prompt
and runs no model: its handlers (unchanged) call the relays below, which forward the
same JSON to the service with the student's own ``JUPYTERHUB_API_TOKEN`` and stream
the service's NDJSON chunks back. Cancelling (a newer keystroke, a closed tab) closes
the relayed request; the service then cancels its engine request in turn.

What the student sees in the UI (features on/hint/off and why, quota left) comes from
the service's ``status``, refreshed when this server is used and the copy is older than
`refresh_interval` (no background polling: a server left open in a hidden tab costs the
service nothing); the service enforces the policy on every request anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from ..engines.base import (
    CancelToken,
    Engine,
    EngineBusy,
    EngineError,
    EngineStatus,
    EngineUnavailable,
)
from ..engines.openai_compat import _Cancelled, _retry_seconds, _unless_cancelled, read_api_key
from ..policy import FEATURES, Decision, Policy, PolicyRefusal
from ..schema import CompleteRequest, ModelCard, StatusReply, StreamChunk, WarmRequest
from . import USER_HEADER

if TYPE_CHECKING:
    from ..app import CopilotApp

log = logging.getLogger("jupyter_copilot")


class HubServiceClient(Engine):
    """Talks to the service; stands in as the user server's engine (state, detail)."""

    name = "hub_service"

    def __init__(self, url: str, token: str, user: str = "", timeout: float = 60.0,
                 refresh_interval: float = 10.0) -> None:  # fmt: skip
        self.url = url.rstrip("/") + "/"
        headers = {"Authorization": f"token {token}"} if token else {}
        if user:
            headers[USER_HEADER] = user  # the service checks the token is this user's
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
        )  # fmt: skip
        self.refresh_interval = refresh_interval
        self._refreshed_at = float("-inf")
        self._refreshing: asyncio.Task | None = None
        self.card = ModelCard(id="hub-service", name="campus copilot service", family="plain")
        self.features: dict = {}
        self._state, self._detail = "starting", f"contacting the copilot service at {self.url}"
        self._in_flight = 0
        self._token_missing = not token
        if self._token_missing:
            self._state, self._detail = "error", "no JupyterHub token ($JUPYTERHUB_API_TOKEN)"

    # -- engine facet --------------------------------------------------------------------
    async def start(self) -> None:
        """Called before every request (the handlers' `ensure_engine_started`): start a
        refresh of the service's status if ours is stale, without waiting for it."""
        if self._token_missing:
            return
        age = time.monotonic() - self._refreshed_at
        stale = age >= (self.refresh_interval if self._state == "ready" else 2.0)
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.ensure_future(self.refresh())

    def status(self) -> EngineStatus:
        return EngineStatus(state=self._state, detail=self._detail,  # type: ignore[arg-type]
                            busy=self._in_flight > 0, queue=self._in_flight)  # fmt: skip

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        await self._client.aclose()

    def complete(self, prompt, params, cancel, stats=None):
        raise EngineError("behind the copilot service, prompts are built by the service")

    chat = complete

    # -- status ------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Fetch the service's status for this student (state, model card, features)."""
        self._refreshed_at = time.monotonic()
        try:
            reply = await self._client.get(self.url + "status")
        except httpx.HTTPError as exc:
            self._state, self._detail = (
                "error",
                f"copilot service unreachable at {self.url} ({type(exc).__name__})",
            )
            return
        if reply.status_code != 200:
            self._state, self._detail = "error", f"copilot service: {_message(reply)}"
            return
        status = StatusReply.model_validate_json(reply.content)
        if status.model is not None:
            for name, value in status.model.model_dump().items():
                setattr(self.card, name, value)  # in place: the app holds this object
        self.features = status.features
        self._state, self._detail = status.state, status.detail

    # -- relaying --------------------------------------------------------------------------
    async def relay(
        self, route: str, body: dict, cancel: CancelToken | None
    ) -> AsyncIterator[StreamChunk]:
        """POST `body` to the service's `route` (streaming) and yield its chunks."""
        cancel = cancel or CancelToken()
        request = self._client.build_request(
            "POST", self.url + route, params={"stream": "1"}, json=body
        )
        self._in_flight += 1
        try:
            try:
                reply = await _unless_cancelled(self._client.send(request, stream=True), cancel)
            except _Cancelled:
                return
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"the copilot service is unreachable ({type(exc).__name__})",
                                        retry_after=10) from None  # fmt: skip
            try:
                if reply.status_code >= 400:
                    await reply.aread()
                    raise _error_for(reply)
                lines = reply.aiter_lines()
                text = ""
                while True:
                    try:
                        line = await _unless_cancelled(lines.__anext__(), cancel)
                    except StopAsyncIteration:
                        break
                    except _Cancelled:
                        # Same ending as a local cancelled completion.
                        yield StreamChunk(text=text, done=True, error=f"cancelled: {cancel.reason}")
                        break
                    if line.strip():
                        chunk = StreamChunk.model_validate_json(line)
                        text = chunk.text
                        yield chunk
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
                raise EngineError("the connection to the copilot service broke") from None
            finally:
                await reply.aclose()  # closes the connection: the service cancels too
        finally:
            self._in_flight -= 1

    async def post(self, route: str, body: dict) -> None:
        try:
            await self._client.post(self.url + route, json=body)
        except httpx.HTTPError:
            pass  # best effort (warming)


def _message(reply: httpx.Response) -> str:
    try:
        return json.loads(reply.content).get("error") or reply.reason_phrase
    except (ValueError, AttributeError):
        return f"HTTP {reply.status_code}"


def _error_for(reply: httpx.Response) -> Exception:
    """The service's error reply as the exception the handlers map back to it."""
    message = _message(reply)
    try:
        field = json.loads(reply.content).get("field")
    except (ValueError, AttributeError):
        field = None
    status = reply.status_code
    if status == 403 and field in FEATURES:
        return PolicyRefusal(field, message.removeprefix(f"{field} is turned off: "))
    if status == 429:
        return EngineBusy(message, retry_after=_retry_seconds(reply.headers.get("Retry-After"), 2))
    if status == 503:
        return EngineUnavailable(
            message, retry_after=_retry_seconds(reply.headers.get("Retry-After"), 5)
        )
    err = EngineError(message)
    err.status = status if status in (400, 401, 403, 413) else 502
    return err


class RelayPolicy(Policy):
    """The service's policy as last seen in its status (for the UI only: the service
    decides again on every request)."""

    def __init__(self, client: HubServiceClient) -> None:
        super().__init__()
        self.client = client

    def decide(self, feature: str, user: str | None = None, path: str | None = None) -> Decision:
        seen = self.client.features.get(feature)
        if isinstance(seen, dict) and seen.get("mode") in ("on", "hint", "off"):
            return Decision(seen["mode"], seen.get("reason"))
        return Decision("on")

    def features(self, user: str | None = None) -> dict:
        features = super().features(user)
        for key in ("quota", "staff"):  # staff: the console's staff views (service decides)
            if key in self.client.features:
                features[key] = self.client.features[key]
        for feature in FEATURES:  # when the rule in force starts/ends (notifications)
            seen = self.client.features.get(feature)
            if isinstance(seen, dict):
                extra = {k: seen[k] for k in ("since", "until", "next") if k in seen}
                features[feature].update(extra)
        return features


class RelayCompletionService:
    """What the handlers call as `copilot.service` (same methods as CompletionService)."""

    def __init__(self, client: HubServiceClient) -> None:
        self.client = client
        self.card = client.card

    def check_ready(self) -> None:
        status = self.client.status()
        if status.state == "starting":
            raise EngineUnavailable(
                status.detail or "contacting the copilot service", retry_after=2
            )
        if status.state != "ready":
            raise EngineUnavailable(
                f"the copilot service is not available: {status.detail}", retry_after=30
            )

    async def complete(self, req: CompleteRequest, user: str, cancel: CancelToken | None = None):
        self.check_ready()
        async for chunk in self.client.relay("complete", req.model_dump(exclude_none=True), cancel):
            yield chunk

    def mode_for(self, req: CompleteRequest) -> str:
        from ..context import decide_mode

        return req.mode or decide_mode(req.prefix, req.suffix, req.language)

    async def warm(self, req: WarmRequest) -> None:
        if self.client.status().state == "ready":
            await self.client.post("warm", req.model_dump(exclude_none=True))


class RelayExplainService:
    def __init__(self, client: HubServiceClient) -> None:
        self.client = client

    async def explain(self, req, user: str, cancel: CancelToken | None = None):
        async for chunk in self.client.relay("explain", req.model_dump(exclude_none=True), cancel):
            yield chunk


def connect_hub_service(app: CopilotApp) -> None:
    """Point a CopilotApp at the campus service (called when `hub_service_url` is set)."""
    token = read_api_key(key_file=app.remote_api_key_file, key_env=app.remote_api_key_env) or (
        os.environ.get("JUPYTERHUB_API_TOKEN", "")
    )
    client = HubServiceClient(app.hub_service_url, token, user=os.environ.get("JUPYTERHUB_USER", ""),
                              timeout=app.remote_timeout)  # fmt: skip
    app.engine_instance = client
    app.model_card = client.card
    app.policy = RelayPolicy(client)
    app.service = RelayCompletionService(client)
    app.explainer = RelayExplainService(client)
    app.startup_error = None
