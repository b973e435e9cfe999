"""The decider's state, outbox and consumer positions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "conventions",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("convention_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "badge_types",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "code"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "registrations",
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("badge_type", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("active_key", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("registration_id"),
        sa.UniqueConstraint("active_key"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_registrations_convention_email",
        "registrations",
        ["convention_id", "email_key"],
    )
    op.create_table(
        "decided_commands",
        sa.Column("command_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(400), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("value", mysql.LONGBLOB(), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("published_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "seq"])
    op.create_table(
        "consumer_positions",
        sa.Column("group_name", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("partition_no", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "topic", "partition_no"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("consumer_positions")
    op.drop_table("outbox")
    op.drop_table("decided_commands")
    op.drop_table("registrations")
    op.drop_table("badge_types")
    op.drop_table("conventions")
