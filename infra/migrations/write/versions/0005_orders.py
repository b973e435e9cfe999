"""Orders: what a convention sells beyond seats (its catalogue), the registrations' e-mail and
name (for the mails decisions send), their orders, refunds and the waitlists.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conventions", sa.Column("catalogue", mysql.MEDIUMTEXT(), nullable=True))
    op.add_column("registrations", sa.Column("email", sa.String(length=254), nullable=True))
    op.add_column("registrations", sa.Column("name", sa.String(length=200), nullable=True))
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first", sa.Boolean(), nullable=False),
        sa.Column("hold_until", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("terms", mysql.MEDIUMTEXT(), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("settled_payments", mysql.MEDIUMTEXT(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_orders_registration", "orders", ["registration_id"], unique=False)
    op.create_index("ix_orders_convention", "orders", ["convention_id"], unique=False)
    op.create_index("ix_orders_due", "orders", ["status", "hold_until"], unique=False)
    op.create_table(
        "waitlist_entries",
        sa.Column("entry_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("stock", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("registration_id", sa.String(length=36), nullable=True),
        sa.Column("offer_expires_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    op.create_index(
        "ix_waitlist_line", "waitlist_entries", ["convention_id", "stock", "seq"], unique=False
    )
    op.create_index(
        "ix_waitlist_offers_due",
        "waitlist_entries",
        ["status", "offer_expires_at"],
        unique=False,
    )
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issued_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("refund_id"),
    )
    op.create_index("ix_refunds_status", "refunds", ["status", "issued_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_refunds_status", table_name="refunds")
    op.drop_table("refunds")
    op.drop_index("ix_waitlist_offers_due", table_name="waitlist_entries")
    op.drop_index("ix_waitlist_line", table_name="waitlist_entries")
    op.drop_table("waitlist_entries")
    op.drop_index("ix_orders_due", table_name="orders")
    op.drop_index("ix_orders_convention", table_name="orders")
    op.drop_index("ix_orders_registration", table_name="orders")
    op.drop_table("orders")
    op.drop_column("registrations", "name")
    op.drop_column("registrations", "email")
    op.drop_column("conventions", "catalogue")
