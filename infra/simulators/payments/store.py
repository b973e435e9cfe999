"""The provider's own database: payments, refunds and the notifications still to deliver.

A stand-in for a third party, so its schema is created with `create_all` when the sim starts
rather than migrated like Butterfly's databases. It lives in `<db_prefix>_payments`, so each
test stack (and `make run`) has its own, and what it promised (a late notification, a retry)
survives its restarts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.settings import Settings
from infra.simulators.serving import drop_database, open_database

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(40), primary_key=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("registration_id", String(64), nullable=False),
    Column("convention_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("refunded_cents", BigInteger, nullable=False, server_default=text("0")),
    Column("currency", String(3), nullable=False),
    Column("description", String(500), nullable=False),
    Column("notify_url", String(2000), nullable=False),
    Column("status", String(20), nullable=False),
    Column("outcome", String(16), nullable=True),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
)
"""`status`: requires_action (created, waiting for the card), processing (the card never
answered), succeeded or failed. `outcome` is what the attendee's card was told to do."""

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(40), primary_key=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("payment_id", String(40), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("reference", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    UniqueConstraint("idempotency_key", name="uq_refunds_idempotency_key"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("notification_id", String(40), nullable=False, index=True),
    Column("payment_id", String(40), nullable=False, index=True),
    Column("type", String(40), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("body", Text, nullable=False),
    Column("due_at", DATETIME(fsp=6), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("delivered_at", DATETIME(fsp=6), nullable=True),
    Column("gave_up_at", DATETIME(fsp=6), nullable=True),
)
"""One row per delivery to make: a notification sent twice (the `duplicate` outcome) has two
rows with the same `notification_id`. `body` is the exact JSON sent; it is signed afresh on
every attempt. A row is pending while neither `delivered_at` nor `gave_up_at` is set."""


def database_name(settings: Settings) -> str:
    return f"{settings.db_prefix}_payments"


async def open_store(settings: Settings) -> AsyncEngine:
    """Create the provider's database and tables if missing, and an engine on it."""
    return await open_database(settings, database_name(settings), metadata, pool_size=5)


async def drop_store(settings: Settings) -> None:
    """Drop the provider's database, for a fresh `make run` and for tests cleaning up."""
    await drop_database(settings, database_name(settings))
