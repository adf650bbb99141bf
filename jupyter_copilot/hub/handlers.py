"""Routes of the campus service, under its prefix (``/services/copilot/`` by default).

The student routes are those of the Jupyter server extension (same schemas, so a
user server relays them unchanged): ``status``, ``complete[?stream=1]``,
``explain[?stream=0]``, ``warm``, ``usage``. Staff routes: ``admin/usage``,
``admin/policy`` (GET, PUT). ``metrics`` (Prometheus) and ``health`` (probes).
Every route but ``health`` needs a JupyterHub token (see `auth.py`).
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from tornado import web

from .. import bounded_json
from ..backend import Caller
from ..errors import CopilotError
from ..handlers import CopilotRoutes
from ..policy import CoursePolicyDocument
from ..limits import BoundedBodyMixin
from .auth import HubUser, identify


class ServiceHandler(BoundedBodyMixin, CopilotRoutes, web.RequestHandler):
    """Every request is a hub user's; `prepare` finds out whose (or answers 401/403)."""

    hub_user: HubUser

    @property
    def user_name(self) -> str:
        return self.hub_user.name

    @property
    def caller(self) -> Caller:
        user = self.hub_user
        return Caller(name=user.name, groups=user.groups, admin=user.admin)

    async def prepare(self) -> None:
        self.check_body_limits()  # 413 before reading or authenticating (limits.py)
        self.hub_user = await identify(self, self.copilot.hub_auth)
        self.copilot.directory.seen(self.hub_user)

    def require_staff(self) -> None:
        if not self.copilot.is_staff(self.hub_user):
            groups = ", ".join(self.copilot.staff_groups) or "none"
            raise CopilotError(403, f"staff only (hub admins and groups: {groups})")

    def finish_json(self, data) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class StatusHandler(ServiceHandler):
    async def get(self) -> None:
        await self.serve_status()


class CompleteHandler(ServiceHandler):
    async def post(self) -> None:
        await self.serve_complete()


class ExplainHandler(ServiceHandler):
    async def post(self) -> None:
        await self.serve_explain()


class WarmHandler(ServiceHandler):
    async def post(self) -> None:
        await self.serve_warm()


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
        report["admission"] = app.slot_queue.snapshot()
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
            data = bounded_json.loads(self.request.body or b"{}")
            if isinstance(data, dict):
                data.setdefault("timezone", self.copilot.timezone)
            document = CoursePolicyDocument.model_validate(data)
        except bounded_json.BadJSON as exc:
            raise CopilotError(400, f"the policy: {exc}", field=exc.field) from None
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
