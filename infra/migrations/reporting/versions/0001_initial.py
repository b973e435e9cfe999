"""The event archive and consumer positions.

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
        "event_archive",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("partition_no", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("message_key", sa.String(400), nullable=False),
        sa.Column("occurred_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("correlation_id", sa.String(36), nullable=False),
        sa.Column("causation_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("payload", mysql.LONGTEXT(), nullable=False),
        sa.Column("envelope", mysql.LONGTEXT(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_event_archive_order",
        "event_archive",
        ["topic", "partition_no", "source_offset"],
    )
    op.create_index("ix_event_archive_type", "event_archive", ["event_type", "occurred_at"])
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
    op.drop_table("event_archive")
