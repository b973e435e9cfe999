"""Order read models: what a convention sells (order policy, price tiers, options and their
variants, promo codes) and every registration's orders, order lines, payments, refunds and
waitlist places, with the orders projector's applied events.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "option_variants",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("option_code", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "option_code", "code"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "options",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("max_per_registration", sa.Integer(), nullable=False),
        sa.Column("badge_types", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "code"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "order_applied_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("applied_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_order_applied_events_applied_at", "order_applied_events", ["applied_at"], unique=False
    )
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("variant", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=200), nullable=True),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "line_no"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_order_lines_registration", "order_lines", ["registration_id"], unique=False)
    op.create_table(
        "order_policies",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("hold_minutes", sa.Integer(), nullable=False),
        sa.Column("offer_minutes", sa.Integer(), nullable=False),
        sa.Column("refund_percent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first", sa.Boolean(), nullable=False),
        sa.Column("subtotal_cents", sa.BigInteger(), nullable=False),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("promo_code", sa.String(length=40), nullable=True),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("hold_until", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_orders_convention", "orders", ["convention_id", "status", "created_at"], unique=False
    )
    op.create_index(
        "ix_orders_registration", "orders", ["registration_id", "created_at"], unique=False
    )
    op.create_table(
        "payments",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("recorded_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_payments_registration", "payments", ["registration_id", "recorded_at"], unique=False
    )
    op.create_table(
        "price_tiers",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("badge_type", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("until", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("sold", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "badge_type", "position"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "promo_codes",
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off_cents", sa.BigInteger(), nullable=True),
        sa.Column("badge_types", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("valid_from", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("valid_until", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "code"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issued_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("completed_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("refund_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_refunds_registration", "refunds", ["registration_id", "issued_at"], unique=False
    )
    op.create_table(
        "waitlist_entries",
        sa.Column("entry_id", sa.String(length=36), nullable=False),
        sa.Column("convention_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("variant", sa.String(length=40), nullable=True),
        sa.Column("stock", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_key", sa.String(length=254, collation="utf8mb4_bin"), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("registration_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("offer_expires_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("accepted_registration_id", sa.String(length=36), nullable=True),
        sa.Column("joined_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("entry_id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_waitlist_account", "waitlist_entries", ["account_id"], unique=False)
    op.create_index("ix_waitlist_email_key", "waitlist_entries", ["email_key"], unique=False)
    op.create_index(
        "ix_waitlist_line",
        "waitlist_entries",
        ["convention_id", "stock", "status", "seq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_waitlist_line", table_name="waitlist_entries")
    op.drop_index("ix_waitlist_email_key", table_name="waitlist_entries")
    op.drop_index("ix_waitlist_account", table_name="waitlist_entries")
    op.drop_table("waitlist_entries")
    op.drop_index("ix_refunds_registration", table_name="refunds")
    op.drop_table("refunds")
    op.drop_table("promo_codes")
    op.drop_table("price_tiers")
    op.drop_index("ix_payments_registration", table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_orders_registration", table_name="orders")
    op.drop_index("ix_orders_convention", table_name="orders")
    op.drop_table("orders")
    op.drop_table("order_policies")
    op.drop_index("ix_order_lines_registration", table_name="order_lines")
    op.drop_table("order_lines")
    op.drop_index("ix_order_applied_events_applied_at", table_name="order_applied_events")
    op.drop_table("order_applied_events")
    op.drop_table("options")
    op.drop_table("option_variants")
