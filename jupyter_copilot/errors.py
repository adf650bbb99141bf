"""Exceptions <-> HTTP replies, in one place (both servers and the relay between them).

Every error reply is JSON :class:`~jupyter_copilot.schema.ErrorReply`:
``{"error": message, "code": stable_code, "status": http_status, "field": name?,
"reason": why?}``. Programs (the frontend, the relay, admins' scripts) branch on
`code`, never on the message, which is for people and may change.

- :func:`to_http` turns what the services raise (policy refusals, engine and quota
  errors) into a :class:`CopilotError` with its status and code.
- :func:`from_http` turns a service's error reply back into the same exception, so
  a user server relaying to the campus service answers exactly what the service said.
"""

from __future__ import annotations

from typing import Optional

from tornado import web

from .engines.base import EngineError, retry_after_seconds
from .policy import FEATURES, PolicyRefusal

# The stable codes and the status each one goes with (the code says more than the status).
CODES = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "policy_off": 403,  # the course policy turns this feature off (`field` names it)
    "not_found": 404,
    "too_large": 413,
    "busy": 429,  # the engine (or the service's share of it) is full
    "rate_limited": 429,  # this student's rate or concurrency limit
    "quota": 429,  # this student's daily tokens are spent
    "engine_error": 502,
    "engine_crashed": 502,
    "unavailable": 503,  # loading, restarting or unreachable: try again later
    "internal": 500,
}
_DEFAULT_CODE = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "bad_request", 413: "too_large", 429: "busy", 503: "unavailable"}  # fmt: skip


def code_for_status(status: int) -> str:
    return _DEFAULT_CODE.get(status, "internal" if status == 500 else "engine_error")


class CopilotError(web.HTTPError):
    """An error reply: HTTP status, stable code, message (and the field it is about)."""

    def __init__(
        self,
        status: int,
        message: str,
        field: Optional[str] = None,
        retry_after: Optional[int] = None,
        code: Optional[str] = None,
        reason: Optional[str] = None,
    ) -> None:
        super().__init__(status, reason=None)
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.code = code or code_for_status(status)
        self.reason_text = reason


def to_http(exc: BaseException) -> CopilotError:
    """What a service raised, as the reply to send. Anything unknown is re-raised
    (tornado logs it and `write_error` answers a plain 500)."""
    from .hub.quotas import QuotaExceeded  # the quotas live with the campus service

    if isinstance(exc, CopilotError):
        return exc
    if isinstance(exc, PolicyRefusal):
        return CopilotError(403, str(exc), field=exc.feature, code="policy_off", reason=exc.reason)
    if isinstance(exc, QuotaExceeded):
        code = {"busy": "busy", "daily_tokens": "quota"}.get(exc.limit, "rate_limited")
        return CopilotError(429, str(exc), retry_after=exc.retry_after, code=code)
    if isinstance(exc, EngineError):
        return CopilotError(exc.status, str(exc), retry_after=getattr(exc, "retry_after", None),
                            code=exc.code)  # fmt: skip
    raise exc


def from_http(status: int, body: dict, retry_after: Optional[str]) -> Exception:
    """A service's error reply as the exception that `to_http` maps back to it."""
    message = str(body.get("error") or f"HTTP {status}")
    code = body.get("code") or code_for_status(status)
    field = body.get("field")
    if code == "policy_off" and field in FEATURES:
        return PolicyRefusal(field, str(body.get("reason") or message))
    if status < 500 or status == 503:
        default = {429: 2, 503: 5}.get(status)
        wait = retry_after_seconds(retry_after, default) if default else None
        return CopilotError(status, message, field=field, retry_after=wait, code=code)
    err = EngineError(message)
    err.status, err.code = 502, code if CODES.get(code) == 502 else "engine_error"
    return err
