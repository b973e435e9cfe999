"""Lodging read models: hotel nights with our own pickup, room requests, syncs,
reconciliations, the lottery and its entries, command outcomes and applied events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "lodging_applied_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("applied_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_lodging_applied_events_applied_at",
        "lodging_applied_events",
        ["applied_at"],
        unique=False,
    )
    op.create_table(
        "lodging_command_outcomes",
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("command", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("subject_id", sa.String(length=36), nullable=True),
        sa.Column("recorded_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_lodging_command_outcomes_recorded_at",
        "lodging_command_outcomes",
        ["recorded_at"],
        unique=False,
    )
    op.create_table(
        "lodging_hotel_nights",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("hotel", sa.String(length=16), nullable=False),
        sa.Column("room_type", sa.String(length=16), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column(
            "hotel_name", sa.String(length=200), server_default=sa.text("''"), nullable=False
        ),
        sa.Column(
            "description", sa.String(length=200), server_default=sa.text("''"), nullable=False
        ),
        sa.Column("size", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rate_cents", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.Column("booked", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("listed_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("convention_id", "hotel", "room_type", "night"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "lodging_lottery",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=True),
        sa.Column("opened_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("drawn_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("convention_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "lodging_lottery_entries",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("hotels", sa.String(length=200), nullable=False),
        sa.Column("room_type", sa.String(length=16), nullable=False),
        sa.Column("check_in", sa.Date(), nullable=False),
        sa.Column("check_out", sa.Date(), nullable=False),
        sa.Column("guests", sa.Text(), nullable=False),
        sa.Column("entered_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("hotel", sa.String(length=16), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("draw", sa.Integer(), nullable=True),
        sa.Column("waitlist_position", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("convention_id", "registration_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_lodging_lottery_entries_draw",
        "lodging_lottery_entries",
        ["convention_id", "draw"],
        unique=False,
    )
    op.create_table(
        "lodging_reconciliations",
        sa.Column("reconciliation_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("drifts", mysql.LONGTEXT(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("requested_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("reconciled_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("reconciliation_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_lodging_reconciliations_convention",
        "lodging_reconciliations",
        ["convention_id", "requested_at"],
        unique=False,
    )
    op.create_table(
        "lodging_requests",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hotels", sa.String(length=200), nullable=False),
        sa.Column(
            "declined", sa.String(length=400), server_default=sa.text("'[]'"), nullable=False
        ),
        sa.Column("hotel", sa.String(length=16), nullable=True),
        sa.Column("room_type", sa.String(length=16), nullable=False),
        sa.Column("check_in", sa.Date(), nullable=False),
        sa.Column("check_out", sa.Date(), nullable=False),
        sa.Column("guests", sa.Text(), nullable=False),
        sa.Column("ack", sa.String(length=64), nullable=True),
        sa.Column("total_cents", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("waitlist_position", sa.Integer(), nullable=True),
        sa.Column("parked_step", sa.String(length=16), nullable=True),
        sa.Column("parked_error", sa.String(length=500), nullable=True),
        sa.Column("cancelled_by", sa.String(length=16), nullable=True),
        sa.Column("released", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("lottery_draw", sa.Integer(), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("accepted", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_lodging_requests_by_status",
        "lodging_requests",
        ["convention_id", "status", "created_at", "request_id"],
        unique=False,
    )
    op.create_index(
        "ix_lodging_requests_listing",
        "lodging_requests",
        ["convention_id", "created_at", "request_id"],
        unique=False,
    )
    op.create_index(
        "ix_lodging_requests_registration", "lodging_requests", ["registration_id"], unique=False
    )
    op.create_table(
        "lodging_syncs",
        sa.Column("sync_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_night", sa.Date(), nullable=True),
        sa.Column("last_night", sa.Date(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("requested_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("finished_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("sync_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_lodging_syncs_convention",
        "lodging_syncs",
        ["convention_id", "status", "finished_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_lodging_syncs_convention", table_name="lodging_syncs")
    op.drop_table("lodging_syncs")
    op.drop_index("ix_lodging_requests_registration", table_name="lodging_requests")
    op.drop_index("ix_lodging_requests_listing", table_name="lodging_requests")
    op.drop_index("ix_lodging_requests_by_status", table_name="lodging_requests")
    op.drop_table("lodging_requests")
    op.drop_index("ix_lodging_reconciliations_convention", table_name="lodging_reconciliations")
    op.drop_table("lodging_reconciliations")
    op.drop_index("ix_lodging_lottery_entries_draw", table_name="lodging_lottery_entries")
    op.drop_table("lodging_lottery_entries")
    op.drop_table("lodging_lottery")
    op.drop_table("lodging_hotel_nights")
    op.drop_index("ix_lodging_command_outcomes_recorded_at", table_name="lodging_command_outcomes")
    op.drop_table("lodging_command_outcomes")
    op.drop_index("ix_lodging_applied_events_applied_at", table_name="lodging_applied_events")
    op.drop_table("lodging_applied_events")
