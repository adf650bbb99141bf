"""The copilot routes, written once for both servers.

`CopilotRoutes` holds what every route does (parse, admit, call the backend, reply
or stream). A server's handlers only add who the caller is and what admission
applies:

- here, `CopilotHandler`: the Jupyter server's own authentication
  (``@web.authenticated`` + ``@authorized`` on the resource ``copilot``, so that
  jupyter_server authorizers apply) and no quotas;
- in `hub/handlers.py`, `ServiceHandler`: HubAuth (the token's owner) and the
  campus quotas.

Every error reply is JSON ``{"error", "code", "status", "field"?, "reason"?}``
(see `errors.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
from collections.abc import Callable, Coroutine
from typing import AsyncIterator, Optional, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from . import bounded_json
from .backend import Admission, Backend, Caller
from .engines.base import CancelToken
from .errors import CopilotError, code_for_status, to_http
from .explain import FEATURE_OF_KIND
from .limits import BoundedBodyMixin
from .schema import (
    CompleteReply,
    CompleteRequest,
    ErrorReply,
    ExplainReply,
    ExplainRequest,
    StreamChunk,
    Timing,
    WarmRequest,
    editor_of,
)

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("jupyter_copilot")

# The jupyter_server authorization resource of every copilot route (read: GET, write: POST).
AUTH_RESOURCE = "copilot"


def _field_of(error: dict) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "body"


class CopilotRequestMixin:
    """Request plumbing: JSON parsing with size limits, JSON error replies, NDJSON
    streaming, cancellation on disconnect. Needs a tornado RequestHandler,
    ``self.max_request_bytes`` and ``self.write_timeout``."""

    _cancel: Optional[CancelToken] = None

    # -- input ---------------------------------------------------------------------
    def parse(self, model: type[M]) -> M:
        body = self.request.body or b""
        limit = self.max_request_bytes
        if len(body) > limit:
            raise CopilotError(413, f"request body of {len(body)} bytes exceeds the limit of {limit}")
        try:
            data = bounded_json.loads(body)
        except bounded_json.BadJSON as exc:
            raise CopilotError(400, str(exc), field=exc.field) from None
        if not isinstance(data, dict):
            raise CopilotError(400, "request body must be a JSON object", field="body")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = _field_of(first)
            status = 413 if first.get("type") in ("string_too_long", "too_long") else 400
            raise CopilotError(status, f"{field}: {first.get('msg')}", field=field) from None

    def log_exception(self, typ, value, tb) -> None:
        """Tornado's default puts the whole URI (``?token=…``) and the request's repr
        (headers, so the Authorization token) in the log: say the route only."""
        if isinstance(value, web.HTTPError):
            return  # answered with its status and JSON message; nothing went wrong here
        where = f"{self.request.method} {self.request.path}"
        log.error("jupyter-copilot: uncaught exception in %s", where, exc_info=(typ, value, tb))

    # -- output --------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message, field, code, reason = self._reason, None, code_for_status(status_code), None
        if isinstance(exc, CopilotError):
            message, field, code, reason = exc.message, exc.field, exc.code, exc.reason_text
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(exc.retry_after))
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal error in jupyter-copilot; see the server log"
        self.set_header("Content-Type", "application/json")
        reply = ErrorReply(error=message, field=field, status=status_code, code=code, reason=reason)
        self.finish(reply.model_dump_json(exclude_none=True))

    def on_connection_close(self) -> None:
        # The browser went away (or aborted the fetch): stop generating for it.
        if self._cancel is not None:
            self._cancel.cancel("client disconnected")

    def watch_disconnect(self, cancel: CancelToken) -> "asyncio.Task":
        """Tornado notices a closed connection only when it next writes; a prompt can
        take seconds to evaluate before the first byte. So poll the socket for the
        peer's hang-up (without reading anything) and cancel as soon as it happens."""
        self._cancel = cancel
        return asyncio.ensure_future(_poll_hangup(self.request.connection, cancel))

    async def stream_chunks(self, chunks: AsyncIterator[StreamChunk]) -> None:
        """Write NDJSON chunks as they come; the first one is awaited before any byte
        is sent, so that refusals (403/429/503) still get a proper HTTP status."""
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            raise to_http(exc) from None
        self.set_header("Content-Type", "application/x-ndjson; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # let nginx/JupyterHub proxies stream
        try:
            if first is not None:
                await self._write_line(first)
            async for chunk in chunks:
                await self._write_line(chunk)
        except StreamClosedError:
            if self._cancel:
                self._cancel.cancel("client disconnected")
        except Exception as exc:
            err = to_http(exc)
            await self._write_line(
                StreamChunk(done=True, error=err.message, code=err.code, stop_reason="error")
            )
        finally:
            await chunks.aclose()
        self.finish()

    async def _write_line(self, chunk: StreamChunk) -> None:
        self.write(chunk.model_dump_json(exclude_none=True) + "\n")
        try:
            # A client that stops reading (its socket buffer full) must not hold the
            # engine: a line not accepted in time ends the request (stream_write_timeout).
            await asyncio.wait_for(self.flush(), self.write_timeout)
        except asyncio.TimeoutError:
            if self._cancel is not None:
                self._cancel.cancel("the client stopped reading")
            self.request.connection.close()
            raise StreamClosedError() from None


class CopilotRoutes(CopilotRequestMixin):
    """What each route does, for any server. Subclasses say who the `caller` is; the
    app (``settings["copilot"]``) holds the `backend` and the `admission`."""

    caller: Caller

    @property
    def copilot(self):
        return self.settings["copilot"]

    @property
    def backend(self) -> Backend:
        return self.copilot.backend

    @property
    def admission(self) -> Admission:
        return self.copilot.admission

    @property
    def max_request_bytes(self) -> int:
        return self.copilot.max_request_bytes

    @property
    def write_timeout(self) -> float:
        return self.copilot.stream_write_timeout

    def wants_stream(self, default: bool) -> bool:
        value = self.get_query_argument("stream", "1" if default else "0").lower()
        return value not in ("0", "false", "no") if default else value in ("1", "true", "yes")

    async def generate(
        self,
        feature: str,
        start: Callable[[CancelToken], AsyncIterator[StreamChunk]],
        stream: bool,
        editor: Optional[str] = None,
    ) -> Optional[StreamChunk]:
        """Admit, run `start`'s chunks, stream them (returns None) or return the last.
        `editor`: a newer request of the same editor supersedes this one in the
        campus service's queue (hub/admission.py)."""
        with self.admission.admit(self.caller, feature) as ticket:
            cancel = CancelToken()
            watcher = self.watch_disconnect(cancel)
            try:
                chunks = ticket.observe(start(cancel), cancel, editor)
                if stream:
                    await self.stream_chunks(chunks)
                    return None
                return await _last_chunk(chunks)
            finally:
                watcher.cancel()

    async def serve_status(self) -> None:
        await self.backend.start()
        reply = self.backend.status(self.caller)
        reply.features.update(self.admission.describe(self.caller))
        self.finish(reply.model_dump_json())

    async def serve_complete(self) -> None:
        req = self.parse(CompleteRequest)
        await self.backend.start()
        backend, caller = self.backend, self.caller
        stream = self.wants_stream(default=False)
        last = await self.generate("completion", lambda c: backend.complete(req, caller, c), stream,
                                   editor=editor_of(req))  # fmt: skip
        if stream:
            return
        if last is None or last.stop_reason == "error":
            raise CopilotError(502, (last and last.error) or "no completion was produced",
                               code=(last and last.code) or "engine_error")  # fmt: skip
        reply = CompleteReply(id=req.request_id, text=last.text, model=last.model or backend.card.id,
                              mode=last.mode or req.mode or "line", timing=last.timing,
                              stop_reason=last.stop_reason)  # fmt: skip
        self.finish(reply.model_dump_json())

    async def serve_explain(self) -> None:
        """Streams markdown by default (NDJSON chunks); `?stream=0` gives one JSON reply."""
        req = self.parse(ExplainRequest)
        await self.backend.start()
        backend, caller = self.backend, self.caller
        feature = FEATURE_OF_KIND[req.kind]
        stream = self.wants_stream(default=True)
        last = await self.generate(feature, lambda c: backend.explain(req, caller, c), stream,
                                   editor=req.editor_id)  # fmt: skip
        if stream:
            return
        if last is None:
            raise CopilotError(502, "no explanation was produced")
        self.finish(explain_reply(req, last, backend.card.id).model_dump_json())

    async def serve_warm(self) -> None:
        req = self.parse(WarmRequest)
        await self.serve_ahead(lambda: self.backend.warm(req, self.caller))

    async def serve_prepare_explanation(self) -> None:
        req = self.parse(ExplainRequest)
        await self.serve_ahead(lambda: self.backend.prepare_explanation(req, self.caller))

    async def serve_ahead(self, start: Callable[[], Coroutine]) -> None:
        """Work done ahead of a request (a warm-up, an explanation prepared): refusals
        answer now (403), the work runs in the background (202)."""
        await self.backend.start()
        try:
            warming = start()  # refusals raise here (403)
        except Exception as exc:
            raise to_http(exc) from None
        held = self.admission.admit(self.caller, "warm")
        try:
            ticket = held.__enter__()  # held until warming ends, not until this reply (429 now)
        except BaseException:
            warming.close()
            raise

        async def warm() -> None:
            try:
                # On the campus service: only on a free engine slot, never ahead of a
                # request someone waits for (a refused or dropped warm-up just ends).
                async with ticket.slot(CancelToken()):
                    await warming
            except Exception as exc:  # noqa: BLE001 - best effort, nobody waits for it
                log.debug("warm-up skipped: %s", type(exc).__name__)
                warming.close()
            finally:
                held.__exit__(None, None, None)

        # Fire and forget: warming must never make the notebook wait.
        asyncio.ensure_future(warm())
        self.set_status(202)
        self.finish(json.dumps({"accepted": True}))


# The caller's name on a single-user server (see `CopilotHandler.caller`).
LOCAL_CALLER = "local"


class CopilotHandler(BoundedBodyMixin, CopilotRoutes, ExtensionHandlerMixin, APIHandler):
    """A route of the Jupyter server extension: the server's user, no quotas; the
    caller is authenticated before the body is read (limits.py)."""

    auth_resource = AUTH_RESOURCE

    @property
    def caller(self) -> Caller:
        # JupyterHub's identity provider gives a user with its hub model (`hub_user`).
        hub_user = getattr(self.current_user, "hub_user", None)
        if isinstance(hub_user, dict) and hub_user.get("name"):
            return Caller(name=hub_user["name"], hub_name=hub_user["name"])
        # Otherwise a single-user server: one student, whoever the identity provider
        # says called — with a token and no cookie, jupyter_server makes up a new
        # anonymous user for every request, which would give each request its own
        # editors (no cancellation by a newer one) and its own conversation signatures.
        return Caller(name=LOCAL_CALLER)


async def _poll_hangup(connection, cancel: CancelToken, interval: float = 0.1) -> None:
    stream = getattr(connection, "stream", None)
    sock = getattr(stream, "socket", None)
    if sock is None or not hasattr(select, "poll"):
        return
    poller = select.poll()
    hangup = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)
    try:
        poller.register(sock.fileno(), hangup)
    except (OSError, ValueError):
        return
    while not cancel.cancelled:
        try:
            events = poller.poll(0)
        except (OSError, ValueError):
            return
        if any(mask & hangup for _, mask in events):
            cancel.cancel("client disconnected")
            return
        await asyncio.sleep(interval)


async def _last_chunk(chunks: AsyncIterator[StreamChunk]) -> Optional[StreamChunk]:
    last: Optional[StreamChunk] = None
    try:
        async for chunk in chunks:
            last = chunk
    except Exception as exc:
        raise to_http(exc) from None
    finally:
        await chunks.aclose()
    return last


class StatusHandler(CopilotHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.serve_status()


class CompleteHandler(CopilotHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.serve_complete()


class ExplainHandler(CopilotHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.serve_explain()


def explain_reply(req: ExplainRequest, last: StreamChunk, model: str) -> ExplainReply:
    """The `?stream=0` reply of an explanation or question: its last chunk, whole."""
    return ExplainReply(id=req.request_id, text=last.text, model=last.model or model,
                        timing=last.timing or Timing(), sources=last.sources,
                        signature=last.signature, history_dropped=last.history_dropped)  # fmt: skip


class WarmHandler(CopilotHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.serve_warm()


class PrepareExplanationHandler(CopilotHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.serve_prepare_explanation()


class UsageHandler(CopilotHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps(await self.backend.usage(self.caller)))


class NotFoundHandler(CopilotHandler):
    @web.authenticated
    async def get(self, *args) -> None:
        raise CopilotError(404, f"no such copilot route: {self.request.path}")

    post = get


ROUTES = [
    (r"/copilot/status", StatusHandler),
    (r"/copilot/complete", CompleteHandler),
    (r"/copilot/explain", ExplainHandler),
    (r"/copilot/explain/prepare", PrepareExplanationHandler),
    (r"/copilot/warm", WarmHandler),
    (r"/copilot/usage", UsageHandler),
    (r"/copilot/(.*)", NotFoundHandler),
]
