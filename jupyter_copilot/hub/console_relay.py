"""The console's routes on the student's (or teacher's) own Jupyter server:
``/copilot/console/<route>`` relays ``usage`` and ``admin/...`` to the campus service
with the user's own JupyterHub token. The user server decides nothing: the service
checks the token and answers 403 to anyone who is not staff (`hub/admin.py`).

Without a campus service (one Jupyter server, one person) only ``usage`` exists:
the server's own counters since it started, in the service's reply shape.
"""

from __future__ import annotations

import json
from datetime import date

import httpx
from tornado import web

from ..handlers import CopilotError, CopilotHandler

MAX_RELAYED_BYTES = 256 * 1024  # a course policy; reports are GETs
ALLOWED = ("usage", "admin/usage", "admin/policy", "admin/policy/history", "admin/users/")


class ConsoleRelayHandler(CopilotHandler):
    @web.authenticated
    async def get(self, route: str) -> None:
        await self._relay("GET", route)

    @web.authenticated
    async def put(self, route: str) -> None:
        await self._relay("PUT", route)

    @web.authenticated
    async def delete(self, route: str) -> None:
        await self._relay("DELETE", route)

    async def _relay(self, method: str, route: str) -> None:
        if not (route in ALLOWED or route.startswith("admin/users/")):
            raise CopilotError(404, f"no such console route: {route}")
        # Behind the campus service the backend is the relay, whose client holds the
        # user's token; on a single server there is no service to ask.
        service = getattr(self.copilot.backend, "client", None) if self.copilot.hub_service_url else None
        if service is None:
            if route == "usage" and method == "GET":
                self.finish(json.dumps(local_usage(self.copilot, self.user_name)))
                return
            raise CopilotError(404, "the console's staff views need the campus service "
                               "(c.CopilotApp.hub_service_url)")  # fmt: skip
        # bytes: the bounded body arrives as a bytearray (limits.py), which httpx would
        # take for a synchronous stream.
        body = bytes(self.request.body or b"")
        if len(body) > MAX_RELAYED_BYTES:
            raise CopilotError(413, f"at most {MAX_RELAYED_BYTES} bytes")
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        try:
            # The service client's own connection pool and headers (the user's token).
            reply = await service._client.request(
                method, service.url + route, params=query,
                content=body if method == "PUT" else None,
                headers={"Content-Type": "application/json"} if method == "PUT" else None,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise CopilotError(502, f"the copilot service did not answer: {exc}") from None
        self.set_status(reply.status_code)
        for header in ("Content-Type", "Content-Disposition", "Retry-After"):
            if header in reply.headers:
                self.set_header(header, reply.headers[header])
        self.finish(reply.content)


def local_usage(app, user: str) -> dict:
    """A single server's counters since it started, as rows of today."""
    report = app.usage.report(user)
    today = date.today().isoformat()
    rows = [
        {"day": today, "feature": feature, "requests": c["requests"],
         "prompt_tokens": c["prompt_tokens"], "cached_tokens": c.get("cached_tokens", 0),
         "generated_tokens": c["generated_tokens"], "engine_seconds": c["engine_seconds"],
         "wh": c["energy_wh"], "gco2e": c["co2e_g"]}
        for feature, c in report.get("features", {}).items()
    ]  # fmt: skip
    total = report.get("total", {})
    return {"user": user, "rows": rows, "factors": report.get("factors"),
            "total": {**total, "wh": total.get("energy_wh", 0), "gco2e": total.get("co2e_g", 0)},
            "local": True}  # fmt: skip


CONSOLE_ROUTES = [(r"/copilot/console/(.+)", ConsoleRelayHandler)]
