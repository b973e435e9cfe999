"""Rebuilding a projection from the event topics.

`reset_projection` empties a projection's tables and forgets its positions, so its projector
replays every record from the start through its normal exactly-once loop.

`rebuild_website` does the whole replay itself, an order of magnitude faster: it reads the
website projector's topics from the start to their ends with a plain consumer, folds every
record in memory into the final rows with the projector's own code (`ReadModelImage`), and
writes those rows and the positions reached in one transaction, so a projector started
afterwards resumes exactly after what the rebuild read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import MetaData, Table, delete, literal_column
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.bootstrap import decider_group, group_name, topics_of, website_sources
from infra.db import make_engine
from infra.pipeline.exactly_once import Record
from infra.settings import Settings
from projections.accounts import tables as account_tables
from projections.lodging import tables as lodging_tables
from projections.orders import tables as order_tables
from projections.progress import Progress
from projections.reporting import tables as reporting_tables
from projections.website import tables as website_tables
from projections.website.projector import ReadModelImage, WebsiteProjector

QUIET_SECONDS = 0.3
"""How long a partition read exactly up to its reported end must bring nothing more to be
done: the embedded broker reports the start of a partition's last batch as its end, so
there the last batch is still to come (and once read, the position is past the end)."""

ROWS_PER_CALL = 20_000
"""Rows handed to the driver at a time; it packs them into INSERTs of up to ~1 MB each."""


def projection_store(settings: Settings, name: str) -> tuple[MetaData, URL]:
    if name == "website":
        return website_tables.metadata, settings.db.read_url
    if name == "reporting":
        return reporting_tables.metadata, settings.db.reporting_url
    if name == "lodging":
        return lodging_tables.metadata, settings.db.read_url
    if name == "accounts":
        return account_tables.metadata, settings.db.read_url
    if name == "orders":
        return order_tables.metadata, settings.db.read_url
    raise ValueError(f"unknown projection {name!r}")


async def reset_projection(settings: Settings, name: str) -> None:
    """Empty the projection's tables and forget its projector's positions (only its own:
    the lodging projector shares the read database's positions table with the website's)."""
    metadata, url = projection_store(settings, name)
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))
            if "consumer_positions" not in metadata.tables:
                positions = website_tables.consumer_positions
                await conn.execute(
                    delete(positions).where(
                        positions.c.group_name == group_name(settings, f"projector.{name}")
                    )
                )
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class RebuildReport:
    records: int
    """Records read from every source topic."""
    events: int
    """Of those, records of the event topic."""
    set_aside: int
    """Events left out because the projector could not apply them (it dead-lettered them)."""
    rows: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def rebuild_website(settings: Settings, *, progress: Progress | None = None) -> RebuildReport:
    """Rebuild the website read model from the topics; stop the website projector first.

    The topics are folded event topic first, then the dead letters, then the commands: each
    partition in order, as the projector would; across topics the projector's effects do
    not depend on the order, and with the decisions known first most commands (already
    shown by their events) need no validation at all."""
    started = time.monotonic()
    topics = topics_of(settings)
    projector = WebsiteProjector(topics, decider_group(settings))
    image = ReadModelImage()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        sources = website_sources(topics)
        partitions = await topic_partitions(consumer, sources)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        bar = progress or Progress(stream=None)
        bar.start(sum(ends[tp] - starts[tp] for tp in partitions))
        reached = dict(starts)
        events = 0
        for topic in (topics.registration_events, topics.dead_letter, topics.registration_commands):
            mine = [tp for tp in partitions if tp.topic == topic]
            async for records in read_to_ends(consumer, mine, starts, ends):
                batch = projector.decode(records, pending_matters=image.pending_matters)
                image.apply(batch.changes)
                image.fold_events(batch.events)
                reached[TopicPartition(topic, records[0].partition)] = records[-1].offset + 1
                if topic == topics.registration_events:
                    events += len(records)
                bar.advance(len(records))
    finally:
        await consumer.stop()
    records_read = sum(reached[tp] - starts[tp] for tp in partitions)
    bar.phase("writing")
    rows = await _write(
        settings, image, reached, group_name(settings, "projector.website"), sources
    )
    report = RebuildReport(
        records=records_read,
        events=events,
        set_aside=image.set_aside,
        rows=rows,
        seconds=time.monotonic() - started,
    )
    bar.finish(report.records, report.seconds)
    return report


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: Sequence[str]
) -> list[TopicPartition]:
    """Every partition of these topics, asking the broker once more for one it has not
    reported yet."""
    found: list[TopicPartition] = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer.client.force_metadata_update()
            numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise RuntimeError(f"topic {topic} does not exist; run `butterfly topics`")
        found.extend(TopicPartition(topic, p) for p in sorted(numbers))
    return found


async def read_to_ends(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> AsyncIterator[list[Record]]:
    """Yield each partition's records in order, in chunks, until every partition is read up
    to its reported end and has then been quiet for `QUIET_SECONDS` (the reported end may
    be the start of the last batch rather than past it)."""
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    position = dict(starts)
    heard = {tp: time.monotonic() for tp in partitions}
    open_ = set(partitions)
    while open_:
        fetched: dict[TopicPartition, list[Record]] = await consumer.getmany(
            *open_, timeout_ms=100, max_records=20_000
        )
        now = time.monotonic()
        for tp, records in fetched.items():
            if records:
                heard[tp] = now
                position[tp] = records[-1].offset + 1
                yield records
        for tp in list(open_):
            if position[tp] >= ends[tp] and (
                position[tp] > ends[tp] or now - heard[tp] > QUIET_SECONDS
            ):
                open_.discard(tp)


async def _write(
    settings: Settings,
    image: ReadModelImage,
    reached: dict[TopicPartition, int],
    group: str,
    sources: Sequence[str],
) -> int:
    """Replace the read model's rows and set the group's positions in one transaction: a
    failure leaves the read model as it was. Each position's epoch is bumped, so a projector
    still running from before (a zombie) can no longer commit."""
    engine = make_engine(settings.db.read_url, pool_size=1)
    rows = 0
    try:
        async with engine.begin() as conn:
            for table, table_rows in image.tables():
                await conn.execute(delete(table))
                rows += await _insert(conn, table, table_rows)
            await _set_positions(conn, group, reached)
    finally:
        await engine.dispose()
    return rows


async def _insert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Multi-row INSERTs through the driver: SQLAlchemy's per-row parameter handling would
    cost more than the database's work."""
    compiled = insert(table).compile(dialect=conn.dialect)
    sql, columns = str(compiled), list(compiled.positiontup or ())
    for first in range(0, len(rows), ROWS_PER_CALL):
        chunk = rows[first : first + ROWS_PER_CALL]
        await conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in chunk])
    return len(rows)


async def _set_positions(
    conn: AsyncConnection, group: str, reached: dict[TopicPartition, int]
) -> None:
    positions = website_tables.consumer_positions
    now = datetime.now(UTC).replace(tzinfo=None)
    stmt = insert(positions)
    await conn.execute(
        stmt.on_duplicate_key_update(
            next_offset=stmt.inserted.next_offset,
            # a literal: a bound parameter after VALUES stops the driver packing the rows
            epoch=positions.c.epoch + literal_column("1"),
            progress_at=stmt.inserted.progress_at,
        ),
        [
            {
                "group_name": group,
                "topic": tp.topic,
                "partition_no": tp.partition,
                "next_offset": offset,
                "epoch": 1,
                "progress_at": now,
            }
            for tp, offset in sorted(reached.items())
        ],
    )
