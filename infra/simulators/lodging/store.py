"""The bureau's own database: hotels, room blocks, reservations and an event outbox.

A stand-in for a third party, so its schema is created with `create_all` when the sim
starts rather than migrated like Butterfly's databases. It lives in `<db_prefix>_partner`
so each test stack (and `make run`) has its own.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.settings import Settings
from infra.simulators.serving import drop_database, open_database

metadata = MetaData()

conventions = Table(
    "conventions",
    metadata,
    Column("convention_id", String(64), primary_key=True),
    Column("next_sequence", BigInteger, nullable=False, server_default=text("1")),
)
"""One row per convention the bureau knows; locking it orders every change to that
convention's blocks and reservations, which is what makes its event sequence gap-free."""

hotels = Table(
    "hotels",
    metadata,
    Column("convention_id", String(64), nullable=False),
    Column("code", String(16), nullable=False),
    Column("name", String(100), nullable=False),
    PrimaryKeyConstraint("convention_id", "code"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("convention_id", String(64), nullable=False),
    Column("hotel", String(16), nullable=False),
    Column("room_type", String(16), nullable=False),
    Column("night", Date, nullable=False),
    Column("size", Integer, nullable=False),
    Column("booked", Integer, nullable=False, server_default=text("0")),
    Column("rate_cents", Integer, nullable=False),
    Column("release_date", Date, nullable=False),
    PrimaryKeyConstraint("convention_id", "hotel", "room_type", "night"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("ack", String(16), primary_key=True),
    Column("convention_id", String(64), nullable=False, index=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("hotel", String(16), nullable=False),
    Column("room_type", String(16), nullable=False),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    Column("guests", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    UniqueConstraint("idempotency_key", name="uq_reservations_idempotency_key"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("convention_id", String(64), nullable=False),
    Column("body", JSON, nullable=False),
    Column("published_at", DATETIME(fsp=6), nullable=True, index=True),
)
"""Events written in the transaction that caused them and published after it commits; a
row still unpublished when the sim stops is published when it starts again."""


def database_name(settings: Settings) -> str:
    return f"{settings.db_prefix}_partner"


async def open_store(settings: Settings) -> AsyncEngine:
    """Create the bureau's database and tables if missing, and an engine on it."""
    return await open_database(settings, database_name(settings), metadata, pool_size=10)


async def drop_store(settings: Settings) -> None:
    """Drop the bureau's database, for a fresh `make run` and for tests cleaning up."""
    await drop_database(settings, database_name(settings))
