"""HTTP-layer limits of both servers (the Jupyter server extension and the campus
service): how much of a request body is read, for how long, and how long an idle
connection may stay open. They apply *before* a body is buffered and before
authentication, so that nobody (with or without a token) can make a server hold
100 MB uploads or keep hundreds of half-sent requests open.

- `BoundedBodyMixin` makes a handler read its body as a stream (tornado's
  ``stream_request_body``): a declared ``Content-Length`` over the limit gets 413 —
  far over it, at once without reading a byte; a little over it, after the body was
  read and thrown away (a proxy in front would otherwise answer 503); the caller is authenticated before the body is read;
  tornado stops reading a chunked or lying body at the limit and closes the
  connection; a body that takes longer than `body_timeout` closes the connection.
- `server_options` / `apply_to_http_server` give the tornado ``HTTPServer`` the
  timeouts of connections that are between requests or still sending headers
  (slowloris), which no handler sees.
- `stream_write_timeout` bounds, in the handlers (handlers.py), how long a streamed
  reply waits for a client that stopped reading.

The settings are traits of `HttpLimitTraits`, shared by both apps.
"""

from __future__ import annotations

import functools
import inspect

from traitlets import Float, HasTraits, Int


class HttpLimitTraits(HasTraits):
    max_request_bytes = Int(
        512 * 1024,
        help="""Largest accepted request body (bytes). A larger declared Content-Length
        gets 413 before any of the body is read (and before authentication); a chunked
        body is cut off at this size.""",
    ).tag(config=True)

    max_discarded_bytes = Int(
        4 * 1024 * 1024,
        help="""A body over `max_request_bytes` but not over this size is read and thrown
        away (never kept) before its 413, so that the client — or a proxy in front, such
        as JupyterHub's configurable-http-proxy, which turns a connection closed under
        it into a 503 — gets the 413. A larger declared body is refused from its header,
        without reading a byte, and the connection closed.""",
    ).tag(config=True)

    body_timeout = Float(
        15.0,
        help="""Seconds a client may take to send a request body; a slower one (a body
        dribbled a byte at a time) has its connection closed. 0: no limit.""",
    ).tag(config=True)

    idle_connection_timeout = Float(
        30.0,
        help="""Seconds a connection may stay open between requests or while sending
        its headers before the server closes it. On a Jupyter server this setting is
        server-wide (tornado has one per listening server; websockets are not
        affected); 0 leaves the server's own (tornado: 3600 s).""",
    ).tag(config=True)

    stream_write_timeout = Float(
        30.0,
        help="""Seconds a streamed reply's line may wait for the client to take it (its
        socket buffer full: a client that stopped reading) before the request is
        cancelled and the connection closed, so that it no longer holds the engine
        or an engine slot.""",
    ).tag(config=True)

    def http_server_options(self) -> dict:
        """Options for the campus service's own tornado ``HTTPServer``."""
        options = {
            "max_body_size": self.max_request_bytes,
            # The read buffer holds headers and one body: a little more than a body.
            "max_buffer_size": max(2 * self.max_request_bytes, 1024 * 1024),
        }
        if self.body_timeout > 0:
            options["body_timeout"] = self.body_timeout
        if self.idle_connection_timeout > 0:
            options["idle_connection_timeout"] = self.idle_connection_timeout
        return options

    def apply_to_http_server(self, http_server) -> None:
        """A Jupyter server's ``HTTPServer`` is the ServerApp's (its body size limit,
        512 MB for notebook uploads, must stay): only the idle/header timeout is set,
        for connections accepted from now on. Per-request body limits are set by
        `BoundedBodyMixin` on our own routes only."""
        params = getattr(http_server, "conn_params", None)
        if params is not None and self.idle_connection_timeout > 0:
            params.header_timeout = self.idle_connection_timeout


class BoundedBodyMixin:
    """For a tornado handler whose app (``self.copilot``) has `HttpLimitTraits`.

    Put it first in the bases. The body limits are checked before any ``prepare``
    of the handler runs (`_refusals_after_body`), whatever that ``prepare`` does; for
    handlers without their own, this mixin's ``prepare`` runs the base class's (which
    authenticates) and refuses anonymous callers.

    A refusal decided in ``prepare`` (401, 403, 404 ...) is answered once the body has
    arrived — read and **thrown away, never kept**: at most the limit, within
    `body_timeout`. Why not at once: closing a socket with unread data resets the
    connection, and the client would lose its 401/403. Only a body over the limit is
    not read at all (over `max_discarded_bytes`): its 413 is sent and the connection
    closed; a body over the limit but not over that is thrown away like the others."""

    _stream_request_body = True  # tornado: prepare() runs before the body is read

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "prepare" in cls.__dict__:
            cls.prepare = _refusals_after_body(cls.__dict__["prepare"])
        for verb in ("get", "post", "put", "delete", "patch"):
            if verb in cls.__dict__:
                setattr(cls, verb, _refused_first(cls.__dict__[verb]))

    def initialize(self, *args, **kwargs) -> None:
        super().initialize(*args, **kwargs)
        self.request.body = bytearray()
        self._body_limit_checked = False
        self._body_done = False  # set when a verb runs: tornado has read the whole body
        self._preparing = 0
        self._refusal: Exception | None = None

    def check_body_limits(self) -> None:
        if self._body_limit_checked:
            return
        self._body_limit_checked = True
        app = self.copilot
        limit = app.max_request_bytes
        connection = self.request.connection
        # Per request, before the body is read: tornado cuts the read off at the
        # limit (chunked bodies, or more bytes than declared) and closes slow ones.
        connection.set_max_body_size(limit)
        if app.body_timeout > 0:
            connection.set_body_timeout(app.body_timeout)
        declared = self.request.headers.get("Content-Length")
        if declared is None:
            return
        try:
            size = int(declared.strip())
        except ValueError:
            size = -1
        if size < 0:
            raise _error(400, f"invalid Content-Length: {declared[:40]!r}", at_once=True)
        if size > limit:
            too_large = _error(413, f"request body of {size} bytes exceeds the limit of {limit}")
            if size > app.max_discarded_bytes:
                too_large.at_once = True
                raise too_large
            connection.set_max_body_size(size)  # read it, throw it away, then say 413
            self.refuse_after_body(too_large)

    def refuse_after_body(self, error: Exception) -> None:
        """Answer `error` once the body has arrived (and been thrown away)."""
        self._refusal = error

    async def _prepare(self) -> None:
        # (The body limits were checked by `_refusals_after_body`, which wraps this.)
        result = super().prepare()
        if inspect.isawaitable(result):
            await result
        if self.current_user is None and self.request.method not in ("GET", "HEAD", "OPTIONS"):
            raise _error(403, "authentication required")  # what @web.authenticated says

    def data_received(self, chunk: bytes) -> None:
        if self._refusal is None and not self._finished:
            self.request.body.extend(chunk)

    def finish(self, *args, **kwargs):
        if not self._body_done and _has_body(self.request):
            # The rest of the body will not be read: tell the client not to reuse the
            # connection (tornado closes it after this reply).
            self.set_header("Connection", "close")
        return super().finish(*args, **kwargs)


def _refusals_after_body(prepare):
    """Wrap a ``prepare``: an HTTP error it raises is answered after the body (see
    `BoundedBodyMixin`), except a body-limit refusal, which is answered at once.
    Only the outermost ``prepare`` of a handler defers (the inner ones re-raise, so
    that the code after a failed ``super().prepare()`` never runs)."""
    from tornado import web

    @functools.wraps(prepare)
    async def prepared(self) -> None:
        self._preparing += 1
        try:
            # Every route, whatever its own prepare does (the health probe's does
            # nothing): without this, tornado's server-wide limit closed the connection
            # under the proxy, which answered 503.
            self.check_body_limits()
            result = prepare(self)
            if inspect.isawaitable(result):
                await result
        except web.HTTPError as exc:
            if self._preparing > 1 or getattr(exc, "at_once", False):
                raise
            if not self._body_limit_checked:
                raise
            self.refuse_after_body(exc)
        finally:
            self._preparing -= 1

    return prepared


def _has_body(request) -> bool:
    length = request.headers.get("Content-Length", "0").strip()
    return "Transfer-Encoding" in request.headers or length not in ("", "0")


def _refused_first(method):
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        self._body_done = True  # tornado calls a verb once the whole body is in
        if self._refusal is not None:
            raise self._refusal
        return method(self, *args, **kwargs)

    return checked


def _error(status: int, message: str, at_once: bool = False) -> Exception:
    from .handlers import CopilotError  # handlers imports this module

    error = CopilotError(status, message, field="body")
    error.at_once = at_once  # a body-limit refusal: answered without reading the body
    return error


BoundedBodyMixin.prepare = _refusals_after_body(BoundedBodyMixin._prepare)


def _inherited(verb: str):
    def method(self, *args, **kwargs):
        return getattr(super(BoundedBodyMixin, self), verb)(*args, **kwargs)  # tornado's 405

    method.__name__ = verb
    return method


# Verbs a handler does not define (405) are checked for a pending refusal too.
for _verb in ("get", "post", "put", "delete", "patch"):
    setattr(BoundedBodyMixin, _verb, _refused_first(_inherited(_verb)))
