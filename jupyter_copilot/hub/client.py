"""The user server's side of the campus service: relay copilot requests to it.

With ``c.CopilotApp.hub_service_url`` set, a student's Jupyter server builds no prompt
and runs no model: the shared handlers call the `HubRelayBackend` below, which forward the
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
from dataclasses import replace

import httpx

from ..backend import Caller, status_reply
from ..engines.base import (
    Cancelled,
    CancelToken,
    EngineError,
    EngineState,
    EngineStatus,
    EngineUnavailable,
    unless_cancelled,
)
from ..engines.openai_compat import read_api_key
from ..errors import CopilotError, from_http
from ..policy import Decision, Policy
from ..schema import CompleteRequest, ExplainRequest, ModelCard, StatusReply, StreamChunk, WarmRequest
from ..usage import UsageLedger
from . import USER_HEADER

log = logging.getLogger("jupyter_copilot")


class HubServiceClient:
    """Talks to the service: its status as last seen (state, model card, features),
    and relayed requests."""

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
        # The service's state as last seen (busy and queue: this server's own requests).
        self._seen = EngineStatus(EngineState.STARTING,
                                  f"contacting the copilot service at {self.url}")  # fmt: skip
        self._in_flight = 0
        self._token_missing = not token
        if self._token_missing:
            self._seen = EngineStatus(EngineState.ERROR,
                                      "no JupyterHub token ($JUPYTERHUB_API_TOKEN)")  # fmt: skip

    async def start(self) -> None:
        """Called before every request: start a refresh of the service's status if
        ours is stale, without waiting for it."""
        if self._token_missing:
            return
        age = time.monotonic() - self._refreshed_at
        stale = age >= (self.refresh_interval if self._seen.state is EngineState.READY else 2.0)
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.ensure_future(self.refresh())

    def status(self) -> EngineStatus:
        return replace(self._seen, busy=self._in_flight > 0, queue=self._in_flight)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        await self._client.aclose()

    # -- status ------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Fetch the service's status for this student (state, model card, features)."""
        self._refreshed_at = time.monotonic()
        try:
            reply = await self._client.get(self.url + "status")
        except httpx.HTTPError as exc:
            self._seen = EngineStatus(EngineState.ERROR, f"copilot service unreachable at "
                                      f"{self.url} ({type(exc).__name__})")  # fmt: skip
            return
        if reply.status_code != 200:
            self._seen = EngineStatus(EngineState.ERROR, f"copilot service: {_message(reply)}")
            return
        status = StatusReply.model_validate_json(reply.content)
        if status.model is not None:
            for name, value in status.model.model_dump().items():
                setattr(self.card, name, value)  # in place: the app holds this object
        self.features = status.features
        self._seen = EngineStatus(status.state, status.detail)

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
                reply = await unless_cancelled(self._client.send(request, stream=True), cancel)
            except Cancelled:
                return
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"the copilot service is unreachable ({type(exc).__name__})",
                                        retry_after=10) from None  # fmt: skip
            try:
                if reply.status_code >= 400:
                    await reply.aread()
                    raise _error_for(reply)  # the service's own status and code
                lines = reply.aiter_lines()
                text = ""
                while True:
                    try:
                        line = await unless_cancelled(lines.__anext__(), cancel)
                    except StopAsyncIteration:
                        break
                    except Cancelled:
                        # Same ending as a local cancelled completion.
                        yield StreamChunk(text=text, done=True, error=f"cancelled: {cancel.reason}",
                                          stop_reason="cancelled")  # fmt: skip
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
    try:
        body = json.loads(reply.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"error": f"HTTP {reply.status_code}"}
    return from_http(reply.status_code, body, reply.headers.get("Retry-After"))


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
        # quota; staff: the console's staff views; schedule: when each rule starts and
        # ends (notifications). All decided by the service.
        for key in ("quota", "staff", "schedule"):
            if key in self.client.features:
                features[key] = self.client.features[key]
        return features


class HubRelayBackend:
    """The backend of a student's server on a JupyterHub: every request goes to the
    campus service, which applies the course policy and quotas (and builds the prompt)."""

    def __init__(self, client: HubServiceClient, owner: str = "") -> None:
        self.client = client
        self.owner = owner  # the hub user whose token the relay sends
        self.card = client.card  # updated in place by each status refresh
        self.policy = RelayPolicy(client)

    def require_owner(self, caller: Caller) -> None:
        """Only the server's owner may spend the owner's token. Someone this server
        is shared with (JupyterHub sharing), or an admin visiting it, would otherwise
        get the owner's identity, quota and exemptions at the service (an exam rule
        bypassed through a staff member's server). They use their own server."""
        if caller.hub_name is not None and caller.hub_name != self.owner:
            raise CopilotError(403, f"this server relays for {self.owner!r} only; "
                               f"{caller.hub_name!r}: use the copilot on your own server",
                               code="forbidden")  # fmt: skip

    @classmethod
    def from_app(cls, app) -> "HubRelayBackend":
        remote = app.remote_engine_settings()
        token = read_api_key(key_file=remote.api_key_file, key_env=remote.api_key_env) or (
            os.environ.get("JUPYTERHUB_API_TOKEN", "")
        )
        owner = os.environ.get("JUPYTERHUB_USER", "")
        return cls(HubServiceClient(app.hub_service_url, token, user=owner,
                                    timeout=remote.timeout), owner=owner)  # fmt: skip

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    def status(self, caller: Caller) -> StatusReply:
        return status_reply(self.client.status(), self.policy, caller, "hub_service", self.card)

    def check_ready(self) -> None:
        # The service's own states, read as for a local engine (a starting or
        # restarting service is retried soon; this server asks it again within 2 s).
        error = self.client.status().unavailable("the copilot service", loading_retry_after=2)
        if error is not None:
            raise error

    async def complete(self, req: CompleteRequest, caller: Caller, cancel: CancelToken):
        self.require_owner(caller)
        self.check_ready()
        async for chunk in self.client.relay("complete", req.model_dump(exclude_none=True), cancel):
            yield chunk

    async def explain(self, req: ExplainRequest, caller: Caller, cancel: CancelToken):
        self.require_owner(caller)
        self.check_ready()
        async for chunk in self.client.relay("explain", req.model_dump(exclude_none=True), cancel):
            yield chunk

    def warm(self, req: WarmRequest, caller: Caller):
        self.require_owner(caller)
        return self._warm(req)

    async def _warm(self, req: WarmRequest) -> None:
        if self.client.status().state == "ready":
            await self.client.post("warm", req.model_dump(exclude_none=True))

    def prepare_explanation(self, req: ExplainRequest, caller: Caller):
        self.require_owner(caller)
        # The campus engines (vLLM, llama-server, Ollama) keep no conversation cache
        # written after the notebook: nothing to prepare, nothing sent.
        return asyncio.sleep(0)

    async def usage(self, caller: Caller) -> dict:
        return UsageLedger().report(caller.name)  # counted by the service
