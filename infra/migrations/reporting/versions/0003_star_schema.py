"""The star schema analysts query, and the read-only `analyst` database user.

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-20 00:00:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import context, op
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
ANALYST = "'analyst'@'%'"
GRANTS_LOCK = "butterfly.analyst_grants"
GRANTS_LOCK_SECONDS = 60
STAR_TABLES = (
    "dim_convention",
    "dim_badge_type",
    "dim_option",
    "dim_hotel",
    "dim_date",
    "dim_account",
    "fact_registrations",
    "fact_order_lines",
    "fact_payments",
    "fact_refunds",
    "fact_waitlist_entries",
    "fact_lodging_nights",
    "fact_block_nights",
    "fact_daily_sales",
)
"""Frozen here as this revision made them: a migration never follows later code."""


def upgrade() -> None:
    op.create_table(
        "dim_convention",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("opened_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("closed_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("convention_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "dim_badge_type",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("badge_type", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "badge_type"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "dim_option",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("option_code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("convention_id", "option_code"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "dim_hotel",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("hotel_code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "hotel_code"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "dim_date",
        sa.Column("date_key", sa.Date(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("quarter", sa.SmallInteger(), nullable=False),
        sa.Column("month", sa.SmallInteger(), nullable=False),
        sa.Column("day", sa.SmallInteger(), nullable=False),
        sa.Column("iso_week", sa.SmallInteger(), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column("is_weekend", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("date_key"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "dim_account",
        sa.Column("account_key", sa.String(64), nullable=False),
        sa.Column("first_seen_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("account_key"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "fact_registrations",
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("badge_type", sa.String(40), nullable=False),
        sa.Column("account_key", sa.String(64), nullable=False),
        sa.Column("signed_in", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("tier", sa.String(200), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("decided_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("cancelled_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal_cents", sa.BigInteger(), nullable=False),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("registration_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_fact_registrations_convention", "fact_registrations", ["convention_id", "created_at"]
    )
    op.create_table(
        "fact_order_lines",
        sa.Column("line_id", sa.String(80), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("variant", sa.String(40), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_status", sa.String(20), nullable=False),
        sa.Column("ordered_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("ordered_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("line_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_fact_order_lines_convention", "fact_order_lines", ["convention_id", "kind", "code"]
    )
    op.create_index("ix_fact_order_lines_order", "fact_order_lines", ["order_id"])
    op.create_table(
        "fact_payments",
        sa.Column("payment_key", sa.String(36), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("paid_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("payment_key"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_fact_payments_convention", "fact_payments", ["convention_id", "paid_at"])
    op.create_table(
        "fact_refunds",
        sa.Column("refund_id", sa.String(36), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("issued_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("completed_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("refund_id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_fact_refunds_convention", "fact_refunds", ["convention_id", "issued_at"])
    op.create_table(
        "fact_waitlist_entries",
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("variant", sa.String(40), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("account_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("joined_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("joined_on", sa.Date(), nullable=False),
        sa.Column("offered_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("ended_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("registration_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("entry_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_fact_waitlist_entries_convention",
        "fact_waitlist_entries",
        ["convention_id", "kind", "code"],
    )
    op.create_table(
        "fact_lodging_nights",
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("hotel_code", sa.String(16), nullable=False),
        sa.Column("room_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("guests", sa.SmallInteger(), nullable=False),
        sa.Column("rate_cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "night"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_fact_lodging_nights_hotel",
        "fact_lodging_nights",
        ["convention_id", "hotel_code", "night"],
    )
    op.create_table(
        "fact_block_nights",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("hotel_code", sa.String(16), nullable=False),
        sa.Column("room_type", sa.String(16), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("rate_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "hotel_code", "room_type", "night"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "fact_daily_sales",
        sa.Column("convention_id", sa.String(36), nullable=False),
        sa.Column("badge_type", sa.String(40), nullable=False),
        sa.Column("sale_date", sa.Date(), nullable=False),
        sa.Column("registrations", sa.Integer(), nullable=False),
        sa.Column("cancellations", sa.Integer(), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("convention_id", "badge_type", "sale_date"),
        **TABLE_OPTIONS,
    )
    grant_analyst()


def analyst_password() -> str:
    """From the migration's config when the caller put it there, else from the settings."""
    password = context.config.attributes.get("analyst_password")
    if password is None:
        from infra.settings import get_settings

        password = get_settings().analyst_password
    return str(password)


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@contextmanager
def grants_lock(bind: sa.Connection) -> Iterator[None]:
    """Holds the server-wide named lock every change to the analyst's grants takes. Several
    migrations run at once on one server (parallel tests, a replay beside the live database):
    without it, two of them list the same stale grant and the second one's REVOKE fails."""
    taken = bind.execute(
        sa.text("SELECT GET_LOCK(:name, :seconds)"),
        {"name": GRANTS_LOCK, "seconds": GRANTS_LOCK_SECONDS},
    ).scalar_one()
    if taken != 1:
        raise RuntimeError(
            f"the analyst's grants stayed locked for {GRANTS_LOCK_SECONDS} s by another migration"
        )
    try:
        yield
    finally:
        bind.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": GRANTS_LOCK})


def grant_analyst() -> None:
    """Create the user once per server, and grant it SELECT on this database's star tables
    only (never the archive, whose payloads hold e-mails, nor the consumer positions). Each
    database is granted on its own, so several (tests, replays) share the one user. Grants
    left behind by databases since dropped are revoked: the server keeps them otherwise."""
    bind = op.get_bind()
    password = _literal(analyst_password())
    quote = bind.dialect.identifier_preparer.quote_identifier
    database = bind.execute(sa.text("SELECT DATABASE()")).scalar_one()
    with grants_lock(bind):
        op.execute(f"CREATE USER IF NOT EXISTS {ANALYST} IDENTIFIED BY {password}")
        op.execute(f"ALTER USER {ANALYST} IDENTIFIED BY {password}")
        for table in STAR_TABLES:
            op.execute(f"GRANT SELECT ON {quote(database)}.{quote(table)} TO {ANALYST}")
        stale = bind.execute(
            sa.text(
                "SELECT Db, Table_name FROM mysql.tables_priv "
                "WHERE User = 'analyst' AND Host = '%' "
                "AND Db NOT IN (SELECT SCHEMA_NAME FROM information_schema.SCHEMATA)"
            )
        ).all()
        for db, table in stale:
            op.execute(f"REVOKE ALL PRIVILEGES ON {quote(db)}.{quote(table)} FROM {ANALYST}")


def downgrade() -> None:
    bind = op.get_bind()
    quote = bind.dialect.identifier_preparer.quote_identifier
    database = bind.execute(sa.text("SELECT DATABASE()")).scalar_one()
    with grants_lock(bind):
        granted = bind.execute(
            sa.text(
                "SELECT Table_name FROM mysql.tables_priv "
                "WHERE User = 'analyst' AND Host = '%' AND Db = :db"
            ),
            {"db": database},
        ).scalars()
        for table in list(granted):
            op.execute(f"REVOKE ALL PRIVILEGES ON {quote(database)}.{quote(table)} FROM {ANALYST}")
    for table in reversed(STAR_TABLES):
        op.drop_table(table)
