"""The console's routes of the campus service (usage reports, RGPD, policy editor).

- ``GET usage``: a student's own usage (by day and feature) and quota; staff may
  ask for anyone's with ``?user=``.
- ``GET admin/usage?group=G&from=YYYY-MM-DD&to=YYYY-MM-DD&by=day,feature[&format=csv]``:
  `{"rows": [...]}` summed by the database; per-student rows are pseudonymised
  unless `show_student_names` (an admin's setting).
- ``GET|DELETE admin/users/{name}/usage``: export (JSON or ``?format=csv``) and
  erasure of one student's rows.
- ``GET|PUT admin/policy``: the course policy in force; PUT records who changed it.
- ``GET admin/policy/history``: every version, newest first (who, when, what).

Every route here is staff-only except ``usage`` (the student's own numbers): a
student's token gets 403 whatever the parameters.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from tornado import web

from .. import bounded_json
from ..errors import CopilotError
from ..policy import BOUNDED_BY, FEATURES, CoursePolicyDocument
from ..store import DatabasePolicy, ReportError, history, record_version, rows_to_csv
from ..store.policy_store import summarise
from .handlers import ServiceHandler

MAX_POLICY_BYTES = 256 * 1024  # a policy with hundreds of rules is ~100 KB
_NAME = re.compile(r"^[^/\x00-\x1f]{1,255}$")


class ReportHandler(ServiceHandler):
    def report_args(self) -> dict:
        return {
            "group": self.get_query_argument("group", None) or None,
            "start": self.get_query_argument("from", None) or None,
            "end": self.get_query_argument("to", None) or None,
        }

    def run_report(self, **kwargs) -> list[dict]:
        try:
            return self.copilot.store.report(**kwargs)
        except ReportError as exc:
            raise CopilotError(400, str(exc), field=exc.field) from None

    def finish_rows(self, body: dict, rows: list[dict], filename: str) -> None:
        if self.get_query_argument("format", "json") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{filename}.csv"')
            self.finish(rows_to_csv(rows))
            return
        self.finish_json({**body, "rows": rows})


class OwnUsageHandler(ReportHandler):
    """A student's own numbers: by day and feature, totals, today's quota."""

    async def get(self) -> None:
        app = self.copilot
        name = self.get_query_argument("user", self.user_name)
        if name != self.user_name and not app.is_staff(self.hub_user):
            raise CopilotError(403, f"{self.user_name!r} may not read the usage of {name!r}")
        args = self.report_args()
        args.pop("group")
        # Each request once (a student in two courses has it under both groups).
        rows = self.run_report(by=("day", "feature"), user=name, pseudonymise=False,
                               by_group=False, **args)  # fmt: skip
        totals = app.store.totals(user=name, **args)
        groups = app.directory.groups_of(name) or (
            self.hub_user.groups if name == self.user_name else frozenset()
        )
        self.finish_rows(
            {
                "user": name,
                "total": {**totals, "energy_wh": totals["wh"], "co2e_g": totals["gco2e"]},
                "factors": {"watts": app.store.factors.watts,
                            "grams_co2e_per_kwh": app.store.factors.grams_co2e_per_kwh},
                "quota": app.quotas.remaining(name, groups),
            },  # fmt: skip
            rows,
            f"copilot-usage-{name}",
        )


class AdminUsageHandler(ReportHandler):
    async def get(self) -> None:
        self.require_staff()
        app = self.copilot
        by = self.get_query_argument("by", "day,feature").split(",")
        args = self.report_args()
        rows = self.run_report(by=by, pseudonymise=not app.show_student_names, **args)
        self.finish_rows(
            {
                "by": [d for d in by if d],
                "group": args["group"], "from": args["start"], "to": args["end"],
                "pseudonymised": not app.show_student_names and "user" in by,
                "factors": {"watts": app.store.factors.watts,
                            "grams_co2e_per_kwh": app.store.factors.grams_co2e_per_kwh},
                "groups": known_groups(app),
                # Each request once, whatever its groups (all courses, these days).
                "total": app.store.totals(start=args["start"], end=args["end"]),
                "in_flight": app._in_flight,
                # Engine slots, the waiting queue, drops and (with seats) seat changes.
                "admission": app.slot_queue.snapshot(),
            },  # fmt: skip
            rows,
            "copilot-usage",
        )


class UserDataHandler(ServiceHandler):
    """RGPD: one student's rows (export) or their erasure; staff only."""

    async def get(self, name: str) -> None:
        self.require_staff()
        name = _user_name(name)
        rows, quota = self.copilot.store.export_user(name)
        if self.get_query_argument("format", "json") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition",
                            f'attachment; filename="copilot-export-{name}.csv"')  # fmt: skip
            self.finish(rows_to_csv(rows))
            return
        self.finish_json({"user": name, "rows": rows, "daily_tokens": quota})

    async def delete(self, name: str) -> None:
        self.require_staff()
        name = _user_name(name)
        erased = self.copilot.store.erase_user(name)
        self.finish_json({"user": name, "erased_requests": erased})


def _user_name(raw: str) -> str:
    from urllib.parse import unquote

    name = unquote(raw)
    if not _NAME.match(name):
        raise CopilotError(400, "not a user name", field="name")
    return name


class PolicyHandler(ServiceHandler):
    """GET: the policy in force (and, with ``?user=``, what it means for that user).
    PUT: replace it, validated first; the database records who did it, when, what."""

    async def get(self) -> None:
        self.require_staff()
        self.finish_json(self.describe())

    async def put(self) -> None:
        self.require_staff()
        if len(self.request.body or b"") > MAX_POLICY_BYTES:
            raise CopilotError(413, f"a policy is at most {MAX_POLICY_BYTES} bytes", field="body")
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
        save_policy(self.copilot, document, author=self.user_name)
        self.finish_json(self.describe())

    def describe(self) -> dict:
        app = self.copilot
        source = app.policy_source
        described = {
            "policy": source.document().model_dump(mode="json"),
            "source": str(source.path) if source.path else "database",
            "error": source.error,
            "loaded_at": source.loaded_at,
            "features": list(FEATURES),
            # A feature never more open than these (the console's form follows it).
            "bounded_by": {f: list(bounds) for f, bounds in BOUNDED_BY.items()},
            "groups": known_groups(app),
            "timezone": app.timezone,
        }
        user = self.get_query_argument("user", None)
        if user:
            described["user"] = user
            described["groups_of_user"] = sorted(app.directory.groups_of(user))
            described["features_of_user"] = app.policy.features(user)
        return described


class PolicyHistoryHandler(ServiceHandler):
    async def get(self) -> None:
        self.require_staff()
        try:
            limit = int(self.get_query_argument("limit", "50"))
        except ValueError:
            raise CopilotError(400, "limit is a number", field="limit") from None
        self.finish_json({"versions": history(self.copilot.store, limit)})


def save_policy(app, document: CoursePolicyDocument, author: str) -> None:
    """Put `document` in force and record the change (who, when, what)."""
    source = app.policy_source
    if isinstance(source, DatabasePolicy):
        source.replace(document, author=author)
        return
    summary = summarise(source.document(), document)
    source.replace(document)  # the policy file (shared by replicas, e.g. a ConfigMap)
    record_version(app.store, document, author, summary)


def known_groups(app) -> list[str]:
    """Course groups the console offers: those seen on tokens, in usage and in rules."""
    groups = set(app.directory.all_groups())
    groups.update(app.store.groups())
    for rule in app.policy_source.document().rules:
        groups.update(rule.groups)
    groups.difference_update(app.staff_groups)
    return sorted(g for g in groups if g)



def admin_routes() -> list[tuple[str, type[web.RequestHandler]]]:
    return [
        ("usage", OwnUsageHandler),
        ("admin/usage", AdminUsageHandler),
        (r"admin/users/([^/]+)/usage", UserDataHandler),
        ("admin/policy", PolicyHandler),
        ("admin/policy/history", PolicyHistoryHandler),
    ]
