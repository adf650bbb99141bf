"""The campus service's database, seen from the service: its settings (a traits
mixin of `CopilotHubService`), the usage ledger that writes one row per request,
and the start-up steps (migrate, import the old JSON state once, purge old rows).

Why a row is written in the request's own path (one short transaction, about a
millisecond on SQLite in WAL mode): what the console counts and what the quota
charges are then exactly what was committed, and `kill -9` loses nothing counted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from traitlets import Bool, Float, HasTraits, Int, Unicode, default

from ..policy import CoursePolicy
from ..store import RequestRecord, UsageStore, migrate_json_state
from ..usage import UsageLedger

log = logging.getLogger("jupyter_copilot.hub")


class StorageTraits(HasTraits):
    db_url = Unicode(
        help="""SQLAlchemy URL of the service's database: usage rows, daily quotas,
        the course policy's history. Default: an SQLite file next to the (old) state
        file, or `copilot-service.sqlite` in the working directory. Several replicas
        of the service share one PostgreSQL database, e.g.
        postgresql+psycopg://copilot:secret@db-host/copilot.""",
    ).tag(config=True)

    retention_days = Int(
        365,
        help="""Days usage rows are kept; older rows (and old quota counters) are
        deleted at start and then daily (0: keep forever). See docs/privacy.md.""",
    ).tag(config=True)

    show_student_names = Bool(
        False,
        help="""Per-student reports name students (True) or show a stable pseudonym
        (False, the default). Only an admin sets this; export and erasure always work
        by name.""",
    ).tag(config=True)

    purge_interval = Float(
        86400.0, help="Seconds between purges of rows older than `retention_days`."
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        state = getattr(self, "state_file", "")
        folder = Path(state).expanduser().parent if state else Path(os.getcwd())
        return f"sqlite:///{folder / 'copilot-service.sqlite'}"


class StoredLedger(UsageLedger):
    """The in-memory counters (Prometheus `/metrics`, per process) plus one database
    row per request, committed with its charge to the student's daily quota."""

    store: UsageStore | None = None
    policy: CoursePolicy | None = None
    groups_of = None

    def record(self, user: str, feature: str, **counts) -> None:
        super().record(user, feature, **counts)
        if self.store is None:
            return
        groups = tuple(self.groups_of(user)) if self.groups_of else ()
        mode = self.policy.mode(feature, user) if self.policy and feature in _POLICY_FEATURES \
            else "on"  # fmt: skip
        if counts.get("error"):
            outcome = "error"
        elif counts.get("cancelled"):
            outcome = "cancelled"
        elif not counts.get("prompt_tokens") and not counts.get("generated_tokens"):
            outcome = "reused"  # served from the editor's last suggestion, no engine call
        else:
            outcome = "ok"
        try:
            self._store_row(user, feature, groups, mode, outcome, counts)
        except Exception as exc:  # noqa: BLE001 - the answer is sent; say it was not counted
            log.error("jupyter-copilot: usage row of %s not stored: %s: %s", user,
                      type(exc).__name__, str(exc)[:300])  # fmt: skip

    def _store_row(self, user, feature, groups, mode, outcome, counts) -> None:
        self.store.record(
            RequestRecord(
                user=user, feature=feature, groups=groups, mode=mode, outcome=outcome,
                prompt_tokens=int(counts.get("prompt_tokens", 0)),
                cached_tokens=int(counts.get("cached_tokens", 0)),
                generated_tokens=int(counts.get("generated_tokens", 0)),
                engine_seconds=float(counts.get("engine_seconds", 0.0)),
                # Several requests share one busy engine second (batching): energy
                # counts this request's share, as the in-memory report does.
                energy_seconds=float(counts.get("engine_seconds", 0.0)) * self._sharing(),
            )
        )  # fmt: skip


_POLICY_FEATURES = ("completion", "explain_cell", "explain_error")


def open_store(app) -> UsageStore:
    """Open (and migrate) the database; import the old JSON state file once."""
    store = UsageStore.open(app.db_url, timezone=app.timezone, factors=app.energy_factors())
    if app.state_file:
        migrate_json_state(store, app.state_file)
    purged = store.purge(app.retention_days)
    if purged:
        log.info("jupyter-copilot: %d usage rows older than %d days deleted", purged,
                 app.retention_days)  # fmt: skip
    return store
