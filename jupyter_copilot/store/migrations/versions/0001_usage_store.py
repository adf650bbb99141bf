"""The usage store: requests, their groups, daily tokens, policy versions, settings.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "copilot_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("feature", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("generated_tokens", sa.Integer, nullable=False),
        sa.Column("engine_seconds", sa.Float, nullable=False),
        sa.Column("wh", sa.Float, nullable=False),
        sa.Column("gco2e", sa.Float, nullable=False),
    )
    op.create_index("ix_copilot_requests_day", "copilot_requests", ["day"])
    op.create_index("ix_copilot_requests_user_day", "copilot_requests", ["user", "day"])
    op.create_index("ix_copilot_requests_at", "copilot_requests", ["at"])
    op.create_table(
        "copilot_request_groups",
        sa.Column(
            "request_id",
            sa.Integer,
            sa.ForeignKey("copilot_requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("group", sa.String(255), primary_key=True),
    )
    op.create_index("ix_copilot_request_groups_group", "copilot_request_groups", ["group"])
    op.create_table(
        "copilot_daily_tokens",
        sa.Column("user", sa.String(255), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "copilot_policy_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_table(
        "copilot_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "copilot_settings",
        "copilot_policy_versions",
        "copilot_daily_tokens",
        "copilot_request_groups",
        "copilot_requests",
    ):
        op.drop_table(table)
