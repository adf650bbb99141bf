"""Routes of the campus service, under its prefix (``/services/copilot/`` by default).

The student routes are those of the Jupyter server extension (same schemas, so a
user server relays them unchanged): ``status``, ``complete[?stream=1]``,
``explain[?stream=0]``, ``warm``, ``usage``. Staff routes (the console, `admin.py`):
``admin/usage``, ``admin/users/{name}/usage``, ``admin/policy[/history]``. ``metrics`` (Prometheus) and ``health`` (probes).
Every route but ``health`` needs a JupyterHub token (see `auth.py`).
"""

from __future__ import annotations

import json

from tornado import web

from ..backend import Caller
from ..errors import CopilotError
from ..handlers import CopilotRoutes
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
        # (Body limits are checked before this runs, for every route: limits.py.)
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
    from .admin import admin_routes

    return [
        ("health", HealthHandler),
        ("status", StatusHandler),
        ("complete", CompleteHandler),
        ("explain", ExplainHandler),
        ("warm", WarmHandler),
        *admin_routes(),  # usage, admin/usage, admin/users/*, admin/policy[/history]
        ("metrics", MetricsHandler),
        ("(.*)", NotFoundHandler),
    ]
