"""Who held a registration before each transfer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:00:00
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
    op.create_table(
        "registration_transfers",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("from_account_id", sa.String(length=36), nullable=True),
        sa.Column("from_email_key", sa.String(length=254, collation="utf8mb4_bin"), nullable=True),
        sa.Column("to_account_id", sa.String(length=36), nullable=False),
        sa.Column("transferred_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_registration_transfers_from_account",
        "registration_transfers",
        ["from_account_id", "transferred_at"],
    )
    op.create_index(
        "ix_registration_transfers_from_email",
        "registration_transfers",
        ["from_email_key", "transferred_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_registration_transfers_from_email", "registration_transfers")
    op.drop_index("ix_registration_transfers_from_account", "registration_transfers")
    op.drop_table("registration_transfers")
