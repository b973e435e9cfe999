"""`butterfly restore`: refill a wiped broker from the event archive, then move every consumer
group's stored positions onto the refilled topics.

The event topics are the system of record and the reporting projector archives every event it
reads from them, with the partition and offset it was read at. A broker that lost its records
(the embedded one keeps nothing across restarts) is refilled by producing each archived event
back to its topic and partition, in its original order there, with its key and headers. The
offsets this gives differ from the original ones wherever the original partition held
something the archive keeps once (a republished event) or not at all, so the archive's offsets
are rewritten to the new ones, and every stored position is mapped: a group stood before the
first archived event it had not read yet, and now stands before that same event in its new
place (at the new end when it had read them all). Command topics, the partner's feed and the
dead-letter topic come back empty: every command a decider stored a position past was
decided, so their positions start again at 0. Missing topics are created with the partition
count the old ones had (as the archive and the positions show), so keys keep their partitions.

A restore refuses a broker whose event topics already hold records, rather than skipping
them: it cannot tell whether the stored positions already point into those records (a second
run) or still into the lost ones, and guessing wrong would apply events twice or never.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata
from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from infra.db import make_engine
from infra.settings import Settings
from producers.kafka import ensure_topics, make_producer
from projections.progress import Progress
from projections.reporting import tables as reporting_tables
from projections.website import tables as read_tables
from schemas.envelope import Envelope
from schemas.topics import Topics

log = structlog.get_logger(__name__)

CHUNK = 2000
"""Archived events read, produced and acknowledged at a time."""
EMPTY_PROBE_MS = 1500
"""How long a partition is read before it counts as empty: the embedded broker's reported
end offsets lag behind its log, so emptiness is checked by reading."""

PartitionId = tuple[str, int]


class RestoreRefused(RuntimeError):
    """The broker or the archive is not in a state a restore can start from; nothing was
    changed."""


@dataclass
class PartitionRestore:
    """One event partition: the archived events' original offsets in order, and where each
    one landed (or would land) on the refilled partition."""

    old_offsets: list[int] = field(default_factory=list)
    new_offsets: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.new_offsets[-1] + 1 if self.new_offsets else 0

    def moved(self, old_position: int) -> int:
        """Where a group that stood at `old_position` stands now: before the first event it
        had not read, or at the end."""
        index = bisect_left(self.old_offsets, old_position)
        return self.new_offsets[index] if index < len(self.new_offsets) else self.end


@dataclass(frozen=True)
class PositionMove:
    database: str
    group: str
    topic: str
    partition: int
    old: int
    new: int
    note: str = ""

    def line(self) -> str:
        where = f"{self.topic}[{self.partition}]"
        text_ = f"{self.database:<9} {self.group:<44} {where:<44} {self.old:>8} -> {self.new:<8}"
        return f"{text_} {self.note}".rstrip()


@dataclass
class RestoreReport:
    dry_run: bool
    events: int = 0
    partitions: dict[PartitionId, int] = field(default_factory=dict)
    moves: list[PositionMove] = field(default_factory=list)
    created_topics: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        verb = "would restore" if self.dry_run else "restored"
        lines = [
            f"{verb} {self.events:,} event(s) from the archive in {self.seconds:.1f} s"
            + (" (dry run: nothing changed)" if self.dry_run else ""),
        ]
        if self.created_topics:
            lines.append(f"created topics: {', '.join(self.created_topics)}")
        for (topic, partition), count in sorted(self.partitions.items()):
            lines.append(f"  {topic}[{partition}]: {count:,} event(s)")
        lines.append(
            f"{'DATABASE':<9} {'GROUP':<44} {'PARTITION':<44} {'FROM':>8} -> {'TO':<8} NOTE"
        )
        lines.extend(move.line() for move in self.moves)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Positions:
    name: str
    engine: AsyncEngine
    table: Table


async def archived_events(settings: Settings) -> int:
    """How many events the archive holds; 0 when the reporting database or its archive does
    not exist yet (a first start)."""
    archive = reporting_tables.event_archive
    server = create_async_engine(settings.db.server_url(), poolclass=NullPool)
    try:
        async with server.connect() as conn:
            exists = (
                await conn.execute(
                    text(
                        "SELECT COUNT(*) FROM information_schema.tables "
                        "WHERE table_schema = :schema AND table_name = :table"
                    ),
                    {"schema": settings.db.reporting_name, "table": archive.name},
                )
            ).scalar_one()
    finally:
        await server.dispose()
    if not exists:
        return 0
    engine = create_async_engine(settings.db.reporting_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(archive))).scalar_one())
    finally:
        await engine.dispose()


async def nonempty_partitions(bootstrap: str, topics: Sequence[str]) -> list[PartitionId]:
    """The partitions of `topics` that hold at least one record (missing topics hold none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    present = [topic for topic in topics if topic in existing]
    if not present:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in present
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: set[PartitionId] = set()
        deadline = time.monotonic() + EMPTY_PROBE_MS / 1000
        while time.monotonic() < deadline and len(found) < len(partitions):
            batch = await consumer.getmany(timeout_ms=300)
            found.update((tp.topic, tp.partition) for tp, records in batch.items() if records)
        return sorted(found)
    finally:
        await consumer.stop()


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """How many partitions each of `topics` has on the broker (missing topics are left out)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        counts = {topic: len(consumer.partitions_for_topic(topic) or ()) for topic in topics}
        return {topic: count for topic, count in counts.items() if count}
    finally:
        await consumer.stop()


@asynccontextmanager
async def _position_stores(settings: Settings) -> AsyncIterator[list[_Positions]]:
    engines = {
        "write": make_engine(settings.db.write_url, pool_size=1),
        "read": make_engine(settings.db.read_url, pool_size=1),
        "reporting": make_engine(settings.db.reporting_url, pool_size=1),
    }
    table = read_tables.consumer_positions
    try:
        yield [_Positions(name, engine, table) for name, engine in engines.items()]
    finally:
        for engine in engines.values():
            await engine.dispose()


async def _read_positions(store: _Positions) -> list[tuple[str, str, int, int]]:
    t = store.table.c
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(t.group_name, t.topic, t.partition_no, t.next_offset).order_by(
                t.group_name, t.topic, t.partition_no
            )
        )
        return [(r.group_name, r.topic, int(r.partition_no), int(r.next_offset)) for r in rows]


async def _archive_layout(engine: AsyncEngine, event_topics: Sequence[str]) -> dict[str, int]:
    """Every archived topic with the number of partitions its events name."""
    a = reporting_tables.event_archive.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(a.topic, func.max(a.partition_no)).group_by(a.topic).order_by(a.topic)
        )
        layout = {str(topic): int(top) + 1 for topic, top in rows}
    strangers = sorted(set(layout) - set(event_topics))
    if strangers:
        raise RestoreRefused(
            f"the archive holds events of topics this stack does not have: {strangers} "
            "(another BUTTERFLY_TOPIC_PREFIX?)"
        )
    return layout


async def _archived(engine: AsyncEngine) -> AsyncIterator[list[tuple[str, str, int, int, str]]]:
    """Every archived event as (event_id, topic, partition, offset, envelope), in topic,
    partition and original offset order, a chunk at a time from one server-side cursor."""
    a = reporting_tables.event_archive.c
    query = select(a.event_id, a.topic, a.partition_no, a.source_offset, a.envelope).order_by(
        a.topic, a.partition_no, a.source_offset
    )
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=CHUNK))
        async for rows in result.partitions(CHUNK):
            yield [
                (
                    str(r.event_id),
                    str(r.topic),
                    int(r.partition_no),
                    int(r.source_offset),
                    str(r.envelope),
                )
                for r in rows
            ]


def _partitions_needed(
    layout: dict[str, int], positions: dict[str, list[tuple[str, str, int, int]]]
) -> dict[str, int]:
    """How many partitions each topic had, as far as the archive and the stored positions
    show (every partition of a topic some group consumes has a position)."""
    needed = dict(layout)
    for rows in positions.values():
        for _, topic, partition, _ in rows:
            needed[topic] = max(needed.get(topic, 0), partition + 1)
    return needed


def _check_partitions(needed: dict[str, int], have: dict[str, int]) -> None:
    """The refilled topics must have the partitions the old ones had: a convention's events
    and commands must keep landing on the partition its history is on."""
    short = {
        topic: f"{have[topic]} < {count}"
        for topic, count in needed.items()
        if topic in have and count > have[topic]
    }
    if short:
        raise RestoreRefused(
            f"the topics have fewer partitions than the archive and the stored positions name: "
            f"{short}; delete those topics (or wipe the broker) and restore again"
        )


async def restore(
    settings: Settings, *, dry_run: bool = False, progress: Progress | None = None
) -> RestoreReport:
    """Refill the event topics from the archive and move every stored position onto them
    (with `dry_run`, only say what would be done). Raises `RestoreRefused` before changing
    anything when the event topics already hold records."""
    started = time.monotonic()
    report = RestoreReport(dry_run=dry_run)
    topics = Topics(settings.topic_prefix)
    event_topics = topics.event_topics()
    bootstrap = settings.kafka_bootstrap_servers
    occupied = await nonempty_partitions(bootstrap, event_topics)
    if occupied:
        names = ", ".join(f"{topic}[{partition}]" for topic, partition in occupied)
        raise RestoreRefused(
            f"the event topics already hold records ({names}): restore refills a wiped broker "
            "only, and a second run must not produce the archive again; nothing was changed"
        )
    reporting = make_engine(settings.db.reporting_url, pool_size=2)
    try:
        async with _position_stores(settings) as stores:
            layout = await _archive_layout(reporting, event_topics)
            positions = {store.name: await _read_positions(store) for store in stores}
            needed = _partitions_needed(layout, positions)
            partitions = max(needed.values(), default=settings.partitions)
            existing = await topic_partitions(bootstrap, topics.all())
            _check_partitions(needed, {t: existing.get(t, partitions) for t in topics.all()})
            if not dry_run:
                report.created_topics = await ensure_topics(
                    bootstrap,
                    topics=topics.all(),
                    kept_forever=event_topics,
                    partitions=partitions,
                )
            restored = await _produce(
                bootstrap,
                reporting,
                report,
                idempotence=settings.kafka_idempotence,
                dry_run=dry_run,
                progress=progress,
            )
            archived_up_to = {
                (topic, partition): offset
                for group, topic, partition, offset in positions["reporting"]
                if group == f"{settings.topic_prefix}projector.reporting"
            }
            report.moves = [
                _move(store, row, restored, event_topics, topics.all(), archived_up_to)
                for store, rows in ((s, positions[s.name]) for s in stores)
                for row in rows
            ]
            if not dry_run:
                await _apply(reporting, stores, restored, report.moves)
    finally:
        await reporting.dispose()
    report.seconds = time.monotonic() - started
    if progress is not None:
        progress.finish(report.events, report.seconds)
    return report


async def _produce(
    bootstrap: str,
    reporting: AsyncEngine,
    report: RestoreReport,
    *,
    idempotence: bool,
    dry_run: bool,
    progress: Progress | None,
) -> dict[PartitionId, PartitionRestore]:
    """Produce every archived event to its partition in its original order, a chunk at a
    time, each chunk acknowledged before the next (with `dry_run`, only count them, each
    landing where it would on an empty partition)."""
    a = reporting_tables.event_archive
    async with reporting.connect() as conn:
        total = int((await conn.execute(select(func.count()).select_from(a))).scalar_one())
    if progress is not None:
        progress.start(total)
    restored: dict[PartitionId, PartitionRestore] = {}
    producer = None if dry_run else make_producer(bootstrap, idempotence=idempotence)
    if producer is not None:
        await producer.start()
    try:
        async for chunk in _archived(reporting):
            landed: list[int]
            if producer is None:
                landed = _predicted(restored, chunk)
            else:
                sent = []
                for _, topic, partition, _, raw in chunk:
                    envelope = Envelope.model_validate_json(raw)
                    sent.append(
                        await producer.send(
                            topic,
                            value=envelope.encode(),
                            key=envelope.key.encode(),
                            headers=envelope.headers(),
                            partition=partition,
                        )
                    )
                acks: list[RecordMetadata] = await asyncio.gather(*sent)
                landed = [ack.offset for ack in acks]
            for (event_id, topic, partition, offset, _), new in zip(chunk, landed, strict=True):
                part = restored.setdefault((topic, partition), PartitionRestore())
                part.event_ids.append(event_id)
                part.old_offsets.append(offset)
                part.new_offsets.append(new)
            report.events += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))
    finally:
        if producer is not None:
            await producer.stop()
    report.partitions = {tp: len(part.new_offsets) for tp, part in restored.items()}
    return restored


def _predicted(
    restored: dict[PartitionId, PartitionRestore], chunk: list[tuple[str, str, int, int, str]]
) -> list[int]:
    """Where a chunk's events land on partitions that were empty: one after another."""
    next_offset = {tp: len(part.new_offsets) for tp, part in restored.items()}
    landed = []
    for _, topic, partition, _, _ in chunk:
        offset = next_offset.get((topic, partition), 0)
        landed.append(offset)
        next_offset[(topic, partition)] = offset + 1
    return landed


def _move(
    store: _Positions,
    row: tuple[str, str, int, int],
    restored: dict[PartitionId, PartitionRestore],
    event_topics: Sequence[str],
    all_topics: Sequence[str],
    archived_up_to: dict[PartitionId, int],
) -> PositionMove:
    group, topic, partition, old = row
    if topic in event_topics:
        part = restored.get((topic, partition), PartitionRestore())
        new = part.moved(old)
        note = "at the end" if new == part.end else f"{part.end - new} event(s) still to read"
        archived = archived_up_to.get((topic, partition), 0)
        if old > archived:
            note += (
                f"; had read {old - archived} record(s) past the archive, whose events are "
                "not in the archive and were not restored"
            )
        return PositionMove(store.name, group, topic, partition, old, new, note)
    if topic in all_topics:
        return PositionMove(
            store.name, group, topic, partition, old, 0, "transient topic: starts again"
        )
    return PositionMove(
        store.name, group, topic, partition, old, old, "not a topic of this stack: left alone"
    )


async def _apply(
    reporting: AsyncEngine,
    stores: Sequence[_Positions],
    restored: dict[PartitionId, PartitionRestore],
    moves: Sequence[PositionMove],
) -> None:
    """Store the moved positions (bumping each epoch, so a consumer still running on the old
    broker is fenced out instead of writing an old position back) and the archive's new
    offsets, each database in one transaction."""
    for store in stores:
        mine = [m for m in moves if m.database == store.name]
        async with store.engine.begin() as conn:
            if store.name == "reporting":
                await _rewrite_archive_offsets(conn, restored)
            t = store.table
            for move in mine:
                await conn.execute(
                    update(t)
                    .where(
                        t.c.group_name == move.group,
                        t.c.topic == move.topic,
                        t.c.partition_no == move.partition,
                    )
                    .values(next_offset=move.new, epoch=t.c.epoch + 1)
                )


async def _rewrite_archive_offsets(
    conn: AsyncConnection, restored: dict[PartitionId, PartitionRestore]
) -> None:
    """The archive says where each event is on the topics as they are now, so a later restore
    orders and maps by offsets that mean something."""
    a = reporting_tables.event_archive
    statement = (
        update(a)
        .where(a.c.event_id == bindparam("moved_id"))
        .values(source_offset=bindparam("moved_to"))
    )
    rows = [
        {"moved_id": event_id, "moved_to": new}
        for part in restored.values()
        for event_id, old, new in zip(
            part.event_ids, part.old_offsets, part.new_offsets, strict=True
        )
        if old != new
    ]
    for start in range(0, len(rows), CHUNK):
        await conn.execute(statement, rows[start : start + CHUNK])
