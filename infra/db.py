"""Engines, the consumer-position table shared by every exactly-once consumer, and helpers."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


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
