"""What a registration's rejection is about (the option or promo code its reason names), and
whether its decision recorded an order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("registrations", sa.Column("reason_subject", sa.String(length=40), nullable=True))
    op.add_column(
        "registrations",
        sa.Column("has_order", sa.Boolean(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("registrations", "has_order")
    op.drop_column("registrations", "reason_subject")
