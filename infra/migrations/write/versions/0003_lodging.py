"""Lodging: the lodging decider's conventions, registrations, blocks, room requests, lottery
entries, decided commands and outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lodging_blocks",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("hotel", sa.String(length=16), nullable=False),
        sa.Column("room_type", sa.String(length=16), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("hotel_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("rate_cents", sa.BigInteger(), nullable=False),
        sa.Column("booked", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sequence", sa.BigInteger(), server_default=sa.text("-1"), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "hotel", "room_type", "night"),
    )
    op.create_table(
        "lodging_conventions",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("partition_no", sa.Integer(), nullable=True),
        sa.Column(
            "lottery", sa.String(length=16), server_default=sa.text("'closed'"), nullable=False
        ),
        sa.Column("lottery_seed", sa.BigInteger(), nullable=True),
        sa.Column("sync_id", sa.String(length=36), nullable=True),
        sa.Column("synced_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("reconciliation_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("convention_id"),
    )
    op.create_index(
        "ix_lodging_conventions_work", "lodging_conventions", ["partition_no"], unique=False
    )
    op.create_table(
        "lodging_decided_commands",
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("decided_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
    )
    op.create_index(
        "ix_lodging_decided_commands_decided_at",
        "lodging_decided_commands",
        ["decided_at"],
        unique=False,
    )
    op.create_table(
        "lodging_lottery_entries",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("hotels", sa.Text(), nullable=False),
        sa.Column("stay", sa.Text(), nullable=False),
        sa.Column("entered_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "registration_id"),
    )
    op.create_table(
        "lodging_outbox",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("message_key", sa.String(length=400), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column(
            "value", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=False
        ),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("published_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("partition_no", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_lodging_outbox_partition_unpublished",
        "lodging_outbox",
        ["partition_no", "published_at", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_lodging_outbox_unpublished", "lodging_outbox", ["published_at", "seq"], unique=False
    )
    op.create_table(
        "lodging_registrations",
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("registration_id"),
    )
    op.create_table(
        "lodging_requests",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("partition_no", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hotels", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("hotel", sa.String(length=16), nullable=True),
        sa.Column("stay", sa.Text(), nullable=False),
        sa.Column("ack", sa.String(length=64), nullable=True),
        sa.Column("total_cents", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("lottery_draw", sa.Integer(), nullable=True),
        sa.Column("next_step", sa.String(length=16), nullable=True),
        sa.Column("release_pending", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("parked_step", sa.String(length=16), nullable=True),
        sa.Column("parked_error", sa.String(length=500), nullable=True),
        sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sequence", sa.BigInteger(), server_default=sa.text("-1"), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(
        "ix_lodging_requests_convention",
        "lodging_requests",
        ["convention_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_lodging_requests_registration", "lodging_requests", ["registration_id"], unique=False
    )
    op.create_index(
        "ix_lodging_requests_work", "lodging_requests", ["next_step", "partition_no"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_lodging_requests_work", table_name="lodging_requests")
    op.drop_index("ix_lodging_requests_registration", table_name="lodging_requests")
    op.drop_index("ix_lodging_requests_convention", table_name="lodging_requests")
    op.drop_table("lodging_requests")
    op.drop_table("lodging_registrations")
    op.drop_index("ix_lodging_outbox_unpublished", table_name="lodging_outbox")
    op.drop_index("ix_lodging_outbox_partition_unpublished", table_name="lodging_outbox")
    op.drop_table("lodging_outbox")
    op.drop_table("lodging_lottery_entries")
    op.drop_index("ix_lodging_decided_commands_decided_at", table_name="lodging_decided_commands")
    op.drop_table("lodging_decided_commands")
    op.drop_index("ix_lodging_conventions_work", table_name="lodging_conventions")
    op.drop_table("lodging_conventions")
    op.drop_table("lodging_blocks")
