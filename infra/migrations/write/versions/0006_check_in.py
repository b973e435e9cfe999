"""Check-in at the door: each registration's ticket serial (its transfers so far) and the
scan it was checked in by.

The write database keeps no history of transfers, so a registration transferred before this
revision starts at serial 0 here (its events say more): `butterfly rebuild write` names any
such row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "registrations",
        sa.Column("ticket_serial", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "registrations", sa.Column("checked_in_station", sa.String(length=60), nullable=True)
    )
    op.add_column("registrations", sa.Column("checked_in_at", mysql.DATETIME(fsp=6), nullable=True))
    op.add_column(
        "registrations", sa.Column("check_in_scan_id", sa.String(length=36), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("registrations", "check_in_scan_id")
    op.drop_column("registrations", "checked_in_at")
    op.drop_column("registrations", "checked_in_station")
    op.drop_column("registrations", "ticket_serial")
