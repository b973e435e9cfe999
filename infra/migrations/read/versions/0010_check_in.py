"""Check-in at the door: each registration's ticket serial and winning scan, and every scan
decided.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.add_column(
        "registrations",
        sa.Column("ticket_serial", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("registrations", sa.Column("checked_in_at", mysql.DATETIME(fsp=6), nullable=True))
    op.add_column(
        "registrations", sa.Column("checked_in_station", sa.String(length=60), nullable=True)
    )
    # Registrations transferred before serials were counted: one per transfer recorded.
    op.execute(
        "UPDATE registrations SET ticket_serial = (SELECT COUNT(*) FROM registration_transfers"
        " WHERE registration_transfers.registration_id = registrations.registration_id)"
    )
    op.create_table(
        "check_in_scans",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("station", sa.String(length=60), nullable=False),
        sa.Column("scanned_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("outcome", sa.String(length=30), nullable=False),
        sa.Column("winner_station", sa.String(length=60), nullable=True),
        sa.Column("winner_scanned_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("decided_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("scan_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_check_in_scans_station",
        "check_in_scans",
        ["convention_id", "station", "scanned_at"],
    )
    op.create_index("ix_check_in_scans_registration", "check_in_scans", ["registration_id"])


def downgrade() -> None:
    op.drop_index("ix_check_in_scans_registration", "check_in_scans")
    op.drop_index("ix_check_in_scans_station", "check_in_scans")
    op.drop_table("check_in_scans")
    op.drop_column("registrations", "checked_in_station")
    op.drop_column("registrations", "checked_in_at")
    op.drop_column("registrations", "ticket_serial")
