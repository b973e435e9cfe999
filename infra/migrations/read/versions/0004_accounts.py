"""Account read models: accounts, the roles they hold, the audit trail of role changes,
account command outcomes and applied events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "account_applied_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("applied_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_account_applied_events_applied_at",
        "account_applied_events",
        ["applied_at"],
        unique=False,
    )
    op.create_table(
        "account_command_outcomes",
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("command", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("recorded_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_account_command_outcomes_recorded_at",
        "account_command_outcomes",
        ["recorded_at"],
        unique=False,
    )
    op.create_table(
        "account_role_changes",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_account_role_changes_account",
        "account_role_changes",
        ["account_id", "at", "event_id"],
        unique=False,
    )
    op.create_table(
        "account_view_roles",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("granted_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "role", "scope"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "account_views",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_key", sa.String(length=254, collation="utf8mb4_bin"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("verified", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("sessions_valid_after", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("last_mailed_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint("email_key"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("account_views")
    op.drop_table("account_view_roles")
    op.drop_index("ix_account_role_changes_account", table_name="account_role_changes")
    op.drop_table("account_role_changes")
    op.drop_index("ix_account_command_outcomes_recorded_at", table_name="account_command_outcomes")
    op.drop_table("account_command_outcomes")
    op.drop_index("ix_account_applied_events_applied_at", table_name="account_applied_events")
    op.drop_table("account_applied_events")
