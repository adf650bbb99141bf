"""The campus service's database (SQLAlchemy; SQLite embedded, PostgreSQL by URL):
one row per request, daily quotas, the course policy's versions. See docs/privacy.md
for what is stored and for how long."""

from .database import current_revision, head_revision, open_database, upgrade
from .legacy import migrate_json_state
from .policy_store import DatabasePolicy, history, record_version
from .usage_store import RequestRecord, ReportError, UsageStore, pseudonym, rows_to_csv

__all__ = [
    "DatabasePolicy",
    "ReportError",
    "RequestRecord",
    "UsageStore",
    "current_revision",
    "head_revision",
    "history",
    "migrate_json_state",
    "open_database",
    "pseudonym",
    "record_version",
    "rows_to_csv",
    "upgrade",
]
