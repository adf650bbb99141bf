"""Routes of the campus service, under its prefix (``/services/copilot/`` by default).

The student routes are those of the Jupyter server extension (same schemas, so a
user server relays them unchanged): ``status``, ``complete[?stream=1]``,
``explain[?stream=0]``, ``warm``, ``usage``. Staff routes: ``admin/usage``,
``admin/policy`` (GET, PUT). ``metrics`` (Prometheus) and ``health`` (probes).
Every route but ``health`` needs a JupyterHub token (see `auth.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, aclosing

from pydantic import ValidationError
from tornado import web

from ..engines.base import CancelToken
from ..explain import FEATURE_OF_KIND
from ..handlers import CopilotError, CopilotRequestMixin, _error_from, explain_reply
from ..policy import CoursePolicyDocument
from ..schema import (
    CompleteReply,
    CompleteRequest,
    ExplainReply,
    ExplainRequest,
    StreamChunk,
    WarmRequest,
)
from .auth import HubUser, identify
from .quotas import QuotaExceeded

_OUTCOMES = {
    403: "refused",
    429: "rate_limited",
    503: "unavailable",
    413: "too_large",
    400: "bad_request",
}


class ServiceHandler(CopilotRequestMixin, web.RequestHandler):
    """Every request is a hub user's; `prepare` finds out whose (or answers 401/403)."""

    hub_user: HubUser

    @property
    def copilot(self):
        return self.settings["copilot"]

    @property
    def user_name(self) -> str:
        return self.hub_user.name

    async def prepare(self) -> None:
        self.hub_user = await identify(self, self.copilot.hub_auth)
        self.copilot.directory.seen(self.hub_user)

    def require_staff(self) -> None:
        if not self.copilot.is_staff(self.hub_user):
            groups = ", ".join(self.copilot.staff_groups) or "none"
            raise CopilotError(403, f"staff only (hub admins and groups: {groups})")

    def finish_json(self, data) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def wants_stream(self, default: bool) -> bool:
        value = self.get_query_argument("stream", "1" if default else "0").lower()
        return value not in ("0", "false", "no")

    async def generate(
        self,
        feature: str,
        start: Callable[[CancelToken], AsyncIterator[StreamChunk]],
        stream: bool,
    ) -> StreamChunk | None:
        """Admit (quotas), run `start`'s chunks, stream them or return the last one;
        count the outcome and latency in the metrics."""
        app, metrics = self.copilot, self.copilot.metrics
        started = time.perf_counter()
        seen: dict = {}
        try:
            with app.admit(self.hub_user, feature):
                cancel = CancelToken()
                watcher = self.watch_disconnect(cancel)
                metrics.in_flight.inc()
                try:
                    chunks = _observed(start(cancel), seen, started)
                    if stream:
                        await self.stream_chunks(chunks)
                    else:
                        await _drain(chunks)
                finally:
                    metrics.in_flight.dec()
                    watcher.cancel()
        except QuotaExceeded as exc:
            outcome = {"busy": "busy", "daily_tokens": "quota"}.get(exc.limit, "rate_limited")
            metrics.requests.labels(feature, outcome).inc()
            raise CopilotError(429, str(exc), retry_after=exc.retry_after) from None
        except Exception as exc:  # noqa: BLE001 - counted, then re-raised (mapped or as is)
            err = exc if isinstance(exc, CopilotError) else _error_from(exc)
            metrics.requests.labels(feature, _OUTCOMES.get(err.status_code, "error")).inc()
            raise err from None
        last: StreamChunk | None = seen.get("last")
        if last is None or (last.error and not last.error.startswith("cancelled")):
            outcome = "error"
        elif last.error:
            outcome = "cancelled"
        else:
            outcome = "ok"
            metrics.latency.labels(feature).observe(time.perf_counter() - started)
        if "first" in seen:
            metrics.first_token.labels(feature).observe(seen["first"])
        metrics.requests.labels(feature, outcome).inc()
        return last


async def _observed(chunks: AsyncIterator[StreamChunk], seen: dict, started: float):
    async with aclosing(chunks) as inner:
        async for chunk in inner:
            if chunk.text and "first" not in seen:
                seen["first"] = time.perf_counter() - started
            seen["last"] = chunk
            yield chunk


async def _drain(chunks) -> None:
    async with aclosing(chunks) as inner:
        async for _ in inner:
            pass


class StatusHandler(ServiceHandler):
    async def get(self) -> None:
        self.finish(self.copilot.status(self.hub_user).model_dump_json())


class CompleteHandler(ServiceHandler):
    async def post(self) -> None:
        req = self.parse(CompleteRequest)
        service = self.copilot.completions
        stream = self.wants_stream(default=False)
        last = await self.generate(
            "completion", lambda cancel: service.complete(req, self.user_name, cancel), stream
        )
        if stream:
            return
        if last is None or (last.error and not last.error.startswith("cancelled")):
            raise CopilotError(502, (last and last.error) or "no completion was produced")
        reply = CompleteReply(id=req.request_id, text=last.text, model=service.card.id,
                              mode=service.mode_for(req), timing=last.timing,
                              stop_reason="cancelled" if last.error else None)  # fmt: skip
        self.finish(reply.model_dump_json())


class ExplainHandler(ServiceHandler):
    async def post(self) -> None:
        req = self.parse(ExplainRequest)
        feature = FEATURE_OF_KIND[req.kind]
        explainer = self.copilot.explainer

        def start(cancel: CancelToken):
            self.copilot.completions.check_ready()  # 503 before any work while down
            return explainer.explain(req, self.user_name, cancel)

        stream = self.wants_stream(default=True)
        last = await self.generate(feature, start, stream)
        if stream:
            return
        if last is None:
            raise CopilotError(502, "no explanation was produced")
        reply = explain_reply(req, last, explainer.card.id)
        self.finish(reply.model_dump_json())


class WarmHandler(ServiceHandler):
    async def post(self) -> None:
        req = self.parse(WarmRequest)
        app = self.copilot
        if app.policy.mode("completion", self.user_name) == "off":
            raise CopilotError(403, "completion is turned off", field="completion")
        held = ExitStack()  # the admission is released when warming ends, not now
        try:
            held.enter_context(app.admit(self.hub_user, "warm"))
        except QuotaExceeded as exc:
            raise CopilotError(429, str(exc), retry_after=exc.retry_after) from None

        async def warm() -> None:
            with held:
                await app.completions.warm(req)

        # Fire and forget: warming must never make the notebook wait.
        asyncio.ensure_future(warm())
        self.set_status(202)
        self.finish_json({"accepted": True})


class UsageHandler(ServiceHandler):
    """A student's own usage and quota; staff may name another user (``?user=``)."""

    async def get(self) -> None:
        app = self.copilot
        name = self.get_query_argument("user", self.user_name)
        if name != self.user_name and not app.is_staff(self.hub_user):
            raise CopilotError(403, f"{self.user_name!r} may not read the usage of {name!r}")
        report = app.ledger.report(name)
        report["user"] = name
        report["quota"] = app.quotas.remaining(name, app.directory.groups_of(name))
        self.finish_json(report)


class AdminUsageHandler(ServiceHandler):
    """Everyone's usage: totals, per feature, per student and per course (group)."""

    async def get(self) -> None:
        self.require_staff()
        app = self.copilot
        report = app.ledger.report(groups_of=app.directory.groups_of)
        report["in_flight"] = app._in_flight
        report["engine"] = {"url": app.engine_url, "state": app.engine.status().state}
        self.finish_json(report)


class AdminPolicyHandler(ServiceHandler):
    """GET: the policy in force (and, with ``?user=``, what it means for that user now).
    PUT: replace it (validated first; written to the policy file when there is one)."""

    async def get(self) -> None:
        self.require_staff()
        self.finish_json(self._describe())

    async def put(self) -> None:
        self.require_staff()
        try:
            data = json.loads(self.request.body or b"{}")
            if isinstance(data, dict):
                data.setdefault("timezone", self.copilot.timezone)
            document = CoursePolicyDocument.model_validate(data)
        except json.JSONDecodeError as exc:
            raise CopilotError(400, f"the policy is not valid JSON: {exc}", field="body") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise CopilotError(400, f"{field}: {first.get('msg')}", field=field) from None
        self.copilot.policy_source.replace(document)
        self.finish_json(self._describe())

    def _describe(self) -> dict:
        app = self.copilot
        source = app.policy_source
        described = {
            "policy": source.document().model_dump(mode="json"),
            "source": str(source.path) if source.path else "memory",
            "error": source.error,
            "loaded_at": source.loaded_at,
        }
        user = self.get_query_argument("user", None)
        if user:
            described["user"] = user
            described["groups"] = sorted(app.directory.groups_of(user))
            described["features"] = app.policy.features(user)
        return described


class MetricsHandler(ServiceHandler):
    async def prepare(self) -> None:
        if self.copilot.authenticate_prometheus:
            await super().prepare()
            self.require_staff()

    async def get(self) -> None:
        from .metrics import CONTENT_TYPE

        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.copilot.metrics.exposition())


class HealthHandler(ServiceHandler):
    async def prepare(self) -> None:
        pass  # probes (Kubernetes, JupyterHub) carry no token

    async def get(self) -> None:
        self.finish_json({"ok": True, "engine": self.copilot.engine.status().state})


class NotFoundHandler(ServiceHandler):
    async def get(self, *args) -> None:
        raise CopilotError(404, f"no such copilot route: {self.request.path}")

    post = put = get


def routes() -> list[tuple[str, type[web.RequestHandler]]]:
    return [
        ("health", HealthHandler),
        ("status", StatusHandler),
        ("complete", CompleteHandler),
        ("explain", ExplainHandler),
        ("warm", WarmHandler),
        ("usage", UsageHandler),
        ("admin/usage", AdminUsageHandler),
        ("admin/policy", AdminPolicyHandler),
        ("metrics", MetricsHandler),
        ("(.*)", NotFoundHandler),
    ]
