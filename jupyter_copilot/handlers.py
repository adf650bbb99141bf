"""Thin HTTP handlers. `CopilotHandler` owns authentication, validation, error
replies and streaming; the others only say which service call a route makes.

Every error reply is JSON ``{"error": message, "field": name?, "status": code}``.
"""

from __future__ import annotations

import asyncio
import json
import select
from typing import AsyncIterator, Optional, TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from .engines.base import CancelToken, EngineError
from .policy import PolicyRefusal
from .schema import (
    CompleteReply,
    CompleteRequest,
    ErrorReply,
    ExplainReply,
    ExplainRequest,
    StreamChunk,
    Timing,
    WarmRequest,
)

M = TypeVar("M", bound=BaseModel)


class CopilotError(web.HTTPError):
    def __init__(
        self,
        status: int,
        message: str,
        field: Optional[str] = None,
        retry_after: Optional[int] = None,
    ) -> None:
        super().__init__(status, reason=None)
        self.message = message
        self.field = field
        self.retry_after = retry_after


def _error_from(exc: Exception) -> CopilotError:
    """Map service-level failures to HTTP statuses (see the API contract)."""
    if isinstance(exc, CopilotError):
        return exc
    if isinstance(exc, PolicyRefusal):
        return CopilotError(403, str(exc), field=exc.feature)
    if isinstance(exc, EngineError):
        return CopilotError(exc.status, str(exc), retry_after=getattr(exc, "retry_after", None))
    raise exc


def _field_of(error: dict) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "body"


class CopilotRequestMixin:
    """Request plumbing shared by the Jupyter server extension and the JupyterHub
    copilot service (`jupyter_copilot.hub`): JSON parsing with size limits, JSON error
    replies, NDJSON streaming, cancellation on disconnect. Needs a tornado
    RequestHandler and ``self.copilot.max_request_bytes``."""

    _cancel: Optional[CancelToken] = None

    # -- input ---------------------------------------------------------------------
    def parse(self, model: type[M]) -> M:
        body = self.request.body or b""
        limit = self.copilot.max_request_bytes
        if len(body) > limit:
            raise CopilotError(413, f"request body of {len(body)} bytes exceeds the limit of {limit}")
        try:
            data = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CopilotError(400, f"request body is not valid JSON: {exc}", field="body") from None
        if not isinstance(data, dict):
            raise CopilotError(400, "request body must be a JSON object", field="body")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = _field_of(first)
            status = 413 if first.get("type") in ("string_too_long", "too_long") else 400
            raise CopilotError(status, f"{field}: {first.get('msg')}", field=field) from None

    # -- output --------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message, field = self._reason, None
        if isinstance(exc, CopilotError):
            message, field = exc.message, exc.field
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(exc.retry_after))
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal error in jupyter-copilot; see the server log"
        self.set_header("Content-Type", "application/json")
        self.finish(ErrorReply(error=message, field=field, status=status_code).model_dump_json())

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
            raise _error_from(exc) from None
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
            err = _error_from(exc)
            await self._write_line(StreamChunk(done=True, error=err.message))
        finally:
            await chunks.aclose()
        self.finish()

    async def _write_line(self, chunk: StreamChunk) -> None:
        self.write(chunk.model_dump_json(exclude_none=True) + "\n")
        await self.flush()


class CopilotHandler(CopilotRequestMixin, ExtensionHandlerMixin, APIHandler):
    """Base handler: everything here requires an authenticated Jupyter user."""

    @property
    def copilot(self):
        return self.settings["copilot"]

    @property
    def user_name(self) -> str:
        user = self.current_user
        return getattr(user, "username", None) or str(user)


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
        raise _error_from(exc) from None
    return last


class StatusHandler(CopilotHandler):
    @web.authenticated
    async def get(self) -> None:
        await self.copilot.ensure_engine_started()
        self.finish(self.copilot.status(self.user_name).model_dump_json())


class CompleteHandler(CopilotHandler):
    @web.authenticated
    async def post(self) -> None:
        req = self.parse(CompleteRequest)
        await self.copilot.ensure_engine_started()
        cancel = CancelToken()
        watcher = self.watch_disconnect(cancel)
        try:
            chunks = self.copilot.service.complete(req, self.user_name, cancel)
            if self.get_query_argument("stream", "0").lower() in ("1", "true", "yes"):
                await self.stream_chunks(chunks)
                return
            last = await _last_chunk(chunks)
        finally:
            watcher.cancel()
        if last is None or (last.error and not last.error.startswith("cancelled")):
            raise CopilotError(502, (last and last.error) or "no completion was produced")
        reply = CompleteReply(
            id=req.request_id,
            text=last.text,
            model=self.copilot.model_card.id,
            mode=self.copilot.service.mode_for(req),
            timing=last.timing,
            stop_reason="cancelled" if last.error else None,
        )
        self.finish(reply.model_dump_json())


class ExplainHandler(CopilotHandler):
    """Streams markdown by default (NDJSON chunks); `?stream=0` gives one JSON reply."""

    @web.authenticated
    async def post(self) -> None:
        req = self.parse(ExplainRequest)
        await self.copilot.ensure_engine_started()
        self.copilot.service.check_ready()  # 503 before any work if the engine is loading
        cancel = CancelToken()
        watcher = self.watch_disconnect(cancel)
        try:
            chunks = self.copilot.explainer.explain(req, self.user_name, cancel)
            if self.get_query_argument("stream", "1").lower() not in ("0", "false", "no"):
                await self.stream_chunks(chunks)
                return
            last = await _last_chunk(chunks)
        finally:
            watcher.cancel()
        if last is None:
            raise CopilotError(502, "no explanation was produced")
        reply = explain_reply(req, last, self.copilot.model_card.id)
        self.finish(reply.model_dump_json())


def explain_reply(req: ExplainRequest, last: StreamChunk, model: str) -> ExplainReply:
    """The `?stream=0` reply of an explanation or question: its last chunk, whole."""
    return ExplainReply(id=req.request_id, text=last.text, model=last.model or model,
                        timing=last.timing or Timing(), sources=last.sources,
                        signature=last.signature, history_dropped=last.history_dropped)  # fmt: skip


class WarmHandler(CopilotHandler):
    @web.authenticated
    async def post(self) -> None:
        req = self.parse(WarmRequest)
        await self.copilot.ensure_engine_started()
        # Fire and forget: warming must never make the notebook wait.
        asyncio.ensure_future(self.copilot.service.warm(req))
        self.set_status(202)
        self.finish(json.dumps({"accepted": True}))


class UsageHandler(CopilotHandler):
    @web.authenticated
    async def get(self) -> None:
        self.finish(json.dumps(self.copilot.usage.report(self.user_name)))


class NotFoundHandler(CopilotHandler):
    @web.authenticated
    async def get(self, *args) -> None:
        raise CopilotError(404, f"no such copilot route: {self.request.path}")

    post = get


ROUTES = [
    (r"/copilot/status", StatusHandler),
    (r"/copilot/complete", CompleteHandler),
    (r"/copilot/explain", ExplainHandler),
    (r"/copilot/warm", WarmHandler),
    (r"/copilot/usage", UsageHandler),
    (r"/copilot/(.*)", NotFoundHandler),
]
