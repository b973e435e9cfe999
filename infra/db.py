"""Engines, the consumer-position table shared by every exactly-once consumer, and helpers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGBLOB, insert
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def make_engine(url: URL, *, pool_size: int = 10) -> AsyncEngine:
    """No pre-ping: it costs a round trip per checkout on every hot path. A connection that
    died is invalidated by the error it raises; the caller retries (or restarts)."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
    )


def consumer_positions_table(metadata: MetaData) -> Table:
    """Where a consumer group stands in each partition, the epoch that fences zombies, when
    the partition last moved, how many of its records were dead-lettered, and when its owner
    last said it holds it (`seen_at`, a heartbeat: readiness reads it)."""
    return Table(
        "consumer_positions",
        metadata,
        Column("group_name", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("partition_no", Integer, nullable=False),
        Column("next_offset", BigInteger, nullable=False, server_default=text("0")),
        Column("epoch", BigInteger, nullable=False, server_default=text("0")),
        Column("progress_at", DATETIME(fsp=6), nullable=True),
        Column("dead_letters", BigInteger, nullable=False, server_default=text("0")),
        Column("seen_at", DATETIME(fsp=6), nullable=True),
        PrimaryKeyConstraint("group_name", "topic", "partition_no"),
    )


def outbox_table(metadata: MetaData, name: str = "outbox") -> Table:
    """A decider's transactional outbox. `partition_no` is the command partition whose
    decisions staged the row: whoever takes that partition over publishes its leftovers
    before deciding anything new."""
    return Table(
        name,
        metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("message_key", String(400), nullable=False),
        Column("headers", Text, nullable=False),
        Column("value", LargeBinary().with_variant(LONGBLOB(), "mysql"), nullable=False),
        Column("created_at", DATETIME(fsp=6), nullable=False),
        Column("published_at", DATETIME(fsp=6), nullable=True),
        Column("partition_no", Integer, nullable=True),
        Index(f"ix_{name}_unpublished", "published_at", "seq"),
        Index(f"ix_{name}_partition_unpublished", "partition_no", "published_at", "seq"),
    )


def decided_commands_table(metadata: MetaData, name: str = "decided_commands") -> Table:
    """The commands a decider has decided, so a redelivered one is decided once."""
    return Table(
        name,
        metadata,
        Column("command_id", String(36), primary_key=True),
        Column("decided_at", DATETIME(fsp=6), nullable=False),
        Index(f"ix_{name}_decided_at", "decided_at"),
    )


def add_consumer_progress_columns() -> None:
    """Migration step shared by the three databases: when each partition last moved, how
    many of its records went to the dead-letter topic, and its owner's last heartbeat."""
    from alembic import op

    op.add_column("consumer_positions", Column("progress_at", DATETIME(fsp=6), nullable=True))
    op.add_column(
        "consumer_positions",
        Column("dead_letters", BigInteger, nullable=False, server_default=text("0")),
    )
    op.add_column("consumer_positions", Column("seen_at", DATETIME(fsp=6), nullable=True))


async def decided_among(conn: AsyncConnection, decided: Table, ids: Collection[str]) -> set[str]:
    """Which of these command ids a decider has decided already (`decided_commands_table`)."""
    if not ids:
        return set()
    query = select(decided.c.command_id).where(decided.c.command_id.in_(list(ids)))
    return set((await conn.execute(query)).scalars())


async def upsert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, or replace every column but the primary key of those already there."""
    if not rows:
        return
    statement = insert(table)
    keys = {column.name for column in table.primary_key.columns}
    await conn.execute(
        statement.on_duplicate_key_update(
            {name: statement.inserted[name] for name in rows[0] if name not in keys}
        ),
        rows,
    )


def merged_metadata(*parts: MetaData) -> MetaData:
    """One database's tables declared by several components (the write database holds the
    registration and lodging deciders' tables), as one metadata for Alembic."""
    merged = MetaData()
    for part in parts:
        for table in part.tables.values():
            table.to_metadata(merged)
    return merged
