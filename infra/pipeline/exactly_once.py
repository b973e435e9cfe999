"""The exactly-once consumer loop every decider and projector runs on.

Kafka delivers at least once; this loop makes the effects exactly once:
- the next offset of every partition is stored in MariaDB, in the same transaction as the
  effects of the records before it, and the consumer seeks there on assignment;
- on assignment the consumer bumps an epoch for (group, topic, partition), and every batch
  transaction first checks, under a row lock, that it still holds that epoch: a zombie that
  lost the partition finds a newer epoch, rolls back and gives the partition up;
- a record the handler cannot decode or handle goes to the dead-letter topic (with the error
  in its headers) before the transaction that moves past it commits.

aiokafka is used directly rather than a FastStream subscriber: the loop needs whole batches
per partition inside one database transaction, seeks from a rebalance listener, and must
never let Kafka's committed offsets run ahead of the database. Kafka's committed offsets are
written after each database commit for lag monitoring only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from producers.kafka import OutgoingRecord, publish_all
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
AfterCommit = Callable[[], Awaitable[None]]

log = structlog.get_logger(__name__)


class Fenced(Exception):
    """Another consumer took this partition over: the transaction must not commit."""


class OffsetBeyondEnd(RuntimeError):
    """The database says we are further along a partition than the broker holds."""


@dataclass
class DeadLetter:
    record: Record
    error: Exception


@dataclass
class HandledBatch:
    """What a handler did with one partition's records inside the open transaction."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    after_commit: AfterCommit | None = None


class BatchHandler(Protocol):
    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        """Apply the records' effects through `conn` (its transaction is open); raise only
        for faults worth retrying (database, broker), never for a bad record."""
        ...


@dataclass(frozen=True)
class ConsumerConfig:
    group: str
    topics: tuple[str, ...]
    dead_letter_topic: str
    bootstrap_servers: str
    max_records: int = 500
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 20
    """Brokers that do not answer a waiting fetch early make every hop wait this long."""
    session_timeout_ms: int = 6000
    """How soon a dead member's partitions go to the others (Kafka's minimum by default)."""


class PositionStore:
    """Stored offsets and fencing epochs in one `consumer_positions` table."""

    def __init__(self, table: Table, group: str) -> None:
        self._table = table
        self._group = group

    def _where(self, tp: TopicPartition) -> Any:
        t = self._table.c
        return (
            (t.group_name == self._group) & (t.topic == tp.topic) & (t.partition_no == tp.partition)
        )

    async def claim(self, conn: AsyncConnection, tp: TopicPartition) -> tuple[int, int]:
        """Bump the epoch of a newly assigned partition; returns (epoch, next_offset)."""
        await conn.execute(
            insert(self._table)
            .values(
                group_name=self._group,
                topic=tp.topic,
                partition_no=tp.partition,
                next_offset=0,
                epoch=0,
            )
            .prefix_with("IGNORE")
        )
        await conn.execute(
            update(self._table).where(self._where(tp)).values(epoch=self._table.c.epoch + 1)
        )
        row = (
            await conn.execute(
                select(self._table.c.epoch, self._table.c.next_offset).where(self._where(tp))
            )
        ).one()
        return int(row.epoch), int(row.next_offset)

    async def check_epoch(self, conn: AsyncConnection, tp: TopicPartition, epoch: int) -> None:
        row = (
            await conn.execute(select(self._table.c.epoch).where(self._where(tp)).with_for_update())
        ).one_or_none()
        if row is None or int(row.epoch) != epoch:
            raise Fenced(f"{tp.topic}[{tp.partition}] epoch {epoch} is no longer current")

    async def advance(self, conn: AsyncConnection, tp: TopicPartition, next_offset: int) -> None:
        await conn.execute(
            update(self._table).where(self._where(tp)).values(next_offset=next_offset)
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ExactlyOnceConsumer) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._runner.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.claim(assigned)


class ExactlyOnceConsumer:
    def __init__(
        self,
        config: ConsumerConfig,
        *,
        engine: AsyncEngine,
        positions: Table,
        handler: BatchHandler,
        producer: AIOKafkaProducer,
        on_assigned: Callable[[set[TopicPartition]], Awaitable[None]] | None = None,
        on_idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self._engine = engine
        self._positions = PositionStore(positions, config.group)
        self._handler = handler
        self._producer = producer
        self._on_assigned = on_assigned
        self._on_idle = on_idle
        self._epochs: dict[TopicPartition, int] = {}
        self._fatal: BaseException | None = None
        self._stopping = asyncio.Event()
        self._log = log.bind(group=config.group)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=config.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.max_records,
            isolation_level="read_uncommitted",
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.session_timeout_ms // 6,
        )

    @property
    def owned(self) -> dict[TopicPartition, int]:
        return dict(self._epochs)

    def stop(self) -> None:
        self._stopping.set()

    def forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._epochs.pop(tp, None)
        if revoked:
            self._log.info("partitions_revoked", partitions=_names(revoked))

    async def claim(self, assigned: set[TopicPartition]) -> None:
        try:
            ends = await self._consumer.end_offsets(list(assigned)) if assigned else {}
            for tp in sorted(assigned):
                async with self._engine.begin() as conn:
                    epoch, next_offset = await self._positions.claim(conn, tp)
                end = ends.get(tp, 0)
                if next_offset > end and not await self._holds(tp, next_offset - 1):
                    raise OffsetBeyondEnd(
                        f"{tp.topic}[{tp.partition}]: the database has this group at offset "
                        f"{next_offset} but the broker ends at {end}. The broker was wiped or "
                        "replaced while the databases kept their positions; refill the broker "
                        "from the event archive or start with fresh databases."
                    )
                self._consumer.seek(tp, next_offset)
                self._epochs[tp] = epoch
            if assigned:
                self._log.info(
                    "partitions_claimed",
                    partitions=_names(assigned),
                    epochs={_name(tp): self._epochs.get(tp) for tp in assigned},
                )
            if self._on_assigned is not None:
                await self._on_assigned(assigned)
        except BaseException as exc:  # a listener's exception would be swallowed by aiokafka
            self._fatal = exc
            self._stopping.set()

    async def _holds(self, tp: TopicPartition, offset: int) -> bool:
        """Whether the broker still has the record at `offset`: reported end offsets can
        lag behind (the embedded broker reports the start of its last batch), so a stored
        position past the reported end is checked against the log itself."""
        probe = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers, enable_auto_commit=False
        )
        await probe.start()
        try:
            probe.assign([tp])
            probe.seek(tp, offset)
            batch = await probe.getmany(tp, timeout_ms=2000)
            return any(record.offset >= offset for record in batch.get(tp, []))
        finally:
            await probe.stop()

    async def run(self) -> None:
        self._consumer.subscribe(list(self.config.topics), listener=_Rebalance(self))
        await self._consumer.start()
        self._log.info("consumer_started", topics=self.config.topics)
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_records
                )
                if self._fatal is not None:
                    raise self._fatal
                for tp, records in batches.items():
                    if records:
                        await self._process(tp, records)
                if not batches and self._on_idle is not None:
                    await self._on_idle()
            if self._fatal is not None:
                raise self._fatal
            if self._on_idle is not None:
                await self._on_idle()
        finally:
            await self._consumer.stop()
            self._log.info("consumer_stopped")

    async def _process(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        epoch = self._epochs.get(tp)
        if epoch is None:
            return
        try:
            async with self._engine.begin() as conn:
                await self._positions.check_epoch(conn, tp, epoch)
                handled = await self._handler.handle(conn, tp, records)
                if handled.dead_letters:
                    await self._send_dead_letters(handled.dead_letters)
                await self._positions.advance(conn, tp, records[-1].offset + 1)
        except Fenced as exc:
            if self._epochs.get(tp) == epoch:
                self._epochs.pop(tp, None)
                self._consumer.pause(tp)
                self._log.warning("fenced_out", partition=_name(tp), reason=str(exc))
            return
        if handled.after_commit is not None:
            await handled.after_commit()
        try:
            await self._consumer.commit({tp: records[-1].offset + 1})
        except KafkaError as exc:
            self._log.debug("lag_commit_skipped", partition=_name(tp), error=str(exc))

    async def _send_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        outgoing = []
        for dead in dead_letters:
            record = dead.record
            self._log.warning(
                "dead_lettered",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                error=str(dead.error),
            )
            headers = [
                *list(record.headers or ()),
                (HEADER_ERROR, str(dead.error)[:2000].encode()),
                (HEADER_ERROR_CLASS, type(dead.error).__name__.encode()),
                (HEADER_SOURCE_TOPIC, record.topic.encode()),
                (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
                (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
                (HEADER_CONSUMER_GROUP, self.config.group.encode()),
            ]
            key = (record.key or b"").decode(
                errors="replace"
            ) or f"{record.topic}-{record.partition}"
            outgoing.append(
                OutgoingRecord(self.config.dead_letter_topic, key, record.value or b"", headers)
            )
        await publish_all(self._producer, outgoing)


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _names(tps: set[TopicPartition]) -> list[str]:
    return sorted(_name(tp) for tp in tps)
