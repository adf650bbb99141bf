"""Who is asking: a JupyterHub token -> a hub user (name, groups, admin), via HubAuth.

A student's server sends the student's own ``JUPYTERHUB_API_TOKEN``. The service asks
the Hub who owns it (``GET /hub/api/user``; HubAuth caches the answer for
`cache_max_age` seconds, so most requests cost no round trip) and accepts it only if:

- it is a user's token (not a service's),
- it carries the scope ``access:services!service=<name>`` (granted to students by a
  role and put in their servers' tokens by ``c.Spawner.server_token_scopes``),
- and, when the request names a user (``X-Copilot-User``, sent by the relay), that
  user is the token's owner: one student's token never acts for another.

The identity comes from the token only; nothing in a request body can change it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from jupyterhub.services.auth import HubAuth
from tornado import web

from ..errors import CopilotError
from . import USER_HEADER


@dataclass(frozen=True)
class HubUser:
    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False  # a JupyterHub admin

    def is_staff(self, staff_groups: Iterable[str]) -> bool:
        return self.admin or bool(self.groups & set(staff_groups))


class UserDirectory:
    """The groups of each student seen recently, for the course policy and the
    per-course usage report (both are asked about a user name, not a token)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, HubUser] = {}

    def seen(self, user: HubUser) -> None:
        with self._lock:
            self._users[user.name] = user

    def groups_of(self, name: str | None) -> frozenset[str]:
        with self._lock:
            user = self._users.get(name or "")
        return user.groups if user else frozenset()

    def all_groups(self) -> set[str]:
        """Every group of the users seen (the console's list of courses)."""
        with self._lock:
            return {g for user in self._users.values() for g in user.groups}

    def __len__(self) -> int:
        return len(self._users)


def make_hub_auth(api_url: str, api_token: str, service_name: str, cache_seconds: int) -> HubAuth:
    return HubAuth(
        api_url=api_url,
        api_token=api_token,
        cache_max_age=cache_seconds,
        access_scopes={f"access:services!service={service_name}"},
    )


async def identify(handler: web.RequestHandler, hub_auth: HubAuth) -> HubUser:
    """The hub user behind the request's token, or a 401/403 `CopilotError`."""
    token = hub_auth.get_token(handler, in_cookie=False)
    if not token:
        raise CopilotError(401, "no token: send 'Authorization: token <JUPYTERHUB_API_TOKEN>'")
    try:
        model = await hub_auth.user_for_token(token, sync=False)
    except web.HTTPError as exc:  # HubAuth reports an unreachable Hub this way
        raise CopilotError(503, f"cannot check the token with JupyterHub: {exc.log_message}",
                           retry_after=5) from None  # fmt: skip
    if not model:
        raise CopilotError(401, "this token is not valid (unknown, expired or revoked)")
    name = model.get("name", "")
    if model.get("kind", "user") != "user":
        raise CopilotError(403, f"{model.get('kind')} {name!r} is not a JupyterHub user")
    if not hub_auth.check_scopes(hub_auth.access_scopes, model):
        wanted = ", ".join(sorted(hub_auth.access_scopes))
        raise CopilotError(
            403,
            f"the token of {name!r} lacks the scope {wanted} (add it to the students' role "
            "and to c.Spawner.server_token_scopes)",
        )
    claimed = handler.request.headers.get(USER_HEADER)
    if claimed and claimed != name:
        raise CopilotError(403, f"this token belongs to {name!r}, not to {claimed!r}")
    return HubUser(name=name, groups=frozenset(model.get("groups") or ()),
                   admin=bool(model.get("admin")))  # fmt: skip
