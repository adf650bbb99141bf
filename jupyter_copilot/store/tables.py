"""The usage store's tables (SQLAlchemy Core). Schema changes go through a new
alembic revision in `migrations/versions/`, never through `create_all`.

What a row holds is what the DPO page (docs/privacy.md) lists: counts, times and the
policy mode, never code, prompts or answers.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per request the service answered (or refused after admission, or lost to a
# cancel): the unit of every report, of export and of erasure.
requests = Table(
    "copilot_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=False), nullable=False),  # UTC, naive
    Column("day", String(10), nullable=False),  # YYYY-MM-DD in the service's timezone
    Column("user", String(255), nullable=False),
    Column("feature", String(32), nullable=False),
    Column("mode", String(8), nullable=False),  # the policy mode in force: on | hint
    Column("outcome", String(16), nullable=False),  # ok | cancelled | error | reused | imported
    # Aggregated rows migrated from the old JSON state count several requests.
    Column("requests", Integer, nullable=False, default=1),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("generated_tokens", Integer, nullable=False, default=0),
    Column("engine_seconds", Float, nullable=False, default=0.0),
    Column("wh", Float, nullable=False, default=0.0),
    Column("gco2e", Float, nullable=False, default=0.0),
    Index("ix_copilot_requests_day", "day"),
    Index("ix_copilot_requests_user_day", "user", "day"),
    Index("ix_copilot_requests_at", "at"),
)

# The JupyterHub groups (courses) the student was in at the time of the request.
request_groups = Table(
    "copilot_request_groups",
    metadata,
    Column(
        "request_id",
        Integer,
        ForeignKey("copilot_requests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("group", String(255), primary_key=True),
    Index("ix_copilot_request_groups_group", "group"),
)

# Tokens charged to each student per local day: the daily quota, shared by every
# replica of the service (updated with `tokens = tokens + n`, atomically).
daily_tokens = Table(
    "copilot_daily_tokens",
    metadata,
    Column("user", String(255), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("tokens", BigInteger, nullable=False, default=0),
)

# Every version of the course policy: the newest row is in force; all rows are the
# history shown in the console (who changed what, when).
policy_versions = Table(
    "copilot_policy_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=False), nullable=False),  # UTC, naive
    Column("author", String(255), nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("document", Text, nullable=False),  # CoursePolicyDocument JSON
)

# Service-wide values: the pseudonymisation key, the JSON-state migration mark.
settings = Table(
    "copilot_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
