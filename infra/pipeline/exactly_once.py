"""The exactly-once consumer loop every decider and projector runs on.

Kafka delivers at least once; this loop makes the effects exactly once:
- the next offset of every partition is stored in MariaDB, in the same transaction as the
  effects of the records before it, and the consumer seeks there on assignment;
- on assignment the consumer bumps an epoch for (group, topic, partition), and every batch
  transaction first checks, under a row lock, that it still holds that epoch: a zombie that
  lost the partition finds a newer epoch, rolls back and gives the partition up;
- a record the handler cannot decode or handle goes to the dead-letter topic (with the error
  in its headers) before the transaction that moves past it commits;
- a transient fault (lost connection, deadlock, broker timeout) is retried in the process with
  backoff; any other failure of a batch makes the loop retry its records one at a time, so
  the one record that fails is dead-lettered alone and the rest are applied;
- a newly assigned partition stays paused until `on_assigned` has run (the decider publishes
  the partition's leftover outbox rows there), so order per partition survives a takeover.

aiokafka is used directly rather than a FastStream subscriber: the loop needs whole batches
per partition inside one database transaction, seeks from a rebalance listener, and must
never let Kafka's committed offsets run ahead of the database. Kafka's committed offsets are
written after each database commit for lag monitoring only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.metrics import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_BATCHES,
    CONSUMER_DEAD_LETTERS,
    CONSUMER_LAG,
    CONSUMER_RECORDS,
)
from infra.pipeline.faults import backoff_delay, is_transient
from producers.kafka import OutgoingRecord, publish_all
from producers.outbox import utcnow
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_CORRELATION_ID,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    UndecodableMessage,
    correlation_of,
    decode_envelope,
    header,
)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
AfterCommit = Callable[[], Awaitable[None]]
T = TypeVar("T")

log = structlog.get_logger(__name__)


class Fenced(Exception):
    """Another consumer took this partition over: the transaction must not commit."""


class _Interrupted(Exception):
    """The consumer is stopping while a transient fault was being retried."""


class OffsetBeyondEnd(RuntimeError):
    """The database says we are further along a partition than the broker holds."""


@dataclass
class DeadLetter:
    record: Record
    error: Exception


@dataclass
class HandledBatch:
    """What a handler did with one partition's records inside the open transaction.

    `committed` runs first once the transaction has committed (a handler that keeps state
    in memory takes the batch's changes in there); then `after_commit` (publishing)."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    after_commit: AfterCommit | None = None
    committed: Callable[[], None] | None = None


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
    """In the order a poll's batches are applied."""
    dead_letter_topic: str
    bootstrap_servers: str
    max_records: int = 500
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 20
    """Brokers that do not answer a waiting fetch early make every hop wait this long."""
    session_timeout_ms: int = 6000
    """How soon a dead member's partitions go to the others (Kafka's minimum by default)."""
    heartbeat_seconds: float = 5.0
    """How often a member stamps `seen_at` on the partitions it holds: readiness asks for a
    stamp younger than three of these on every partition."""
    max_poll_interval_ms: int = 30 * 60 * 1000
    """A transient fault is retried in the process for as long as it lasts; the group keeps
    the member meanwhile (health reports the stalled partition) instead of rebalancing."""
    lag_commit_seconds: float = 1.0
    """How often Kafka's committed offsets (for lag monitoring only) follow the database, and
    the lag metric is measured."""
    role: str = ""
    """The `role` label of this consumer's metrics (`decider.registration`); empty: the group."""


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
        now = utcnow()
        await conn.execute(
            update(self._table)
            .where(self._where(tp))
            .values(epoch=self._table.c.epoch + 1, progress_at=now, seen_at=now)
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

    async def beat(self, conn: AsyncConnection, owned: dict[TopicPartition, int]) -> None:
        """Say the partitions this member holds (at these epochs) are still being consumed."""
        now = utcnow()
        for tp, epoch in owned.items():
            await conn.execute(
                update(self._table)
                .where(self._where(tp), self._table.c.epoch == epoch)
                .values(seen_at=now)
            )

    async def advance(
        self, conn: AsyncConnection, tp: TopicPartition, next_offset: int, dead_letters: int = 0
    ) -> None:
        values: dict[str, Any] = {"next_offset": next_offset, "progress_at": utcnow()}
        if dead_letters:
            values["dead_letters"] = self._table.c.dead_letters + dead_letters
        await conn.execute(update(self._table).where(self._where(tp)).values(**values))


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
        self._next_beat = 0.0
        self._lag_offsets: dict[TopicPartition, int] = {}
        self._next_lag_commit = 0.0
        self._role = config.role or config.group
        self._next_offsets: dict[TopicPartition, int] = {}
        """Where each owned partition's stored position is: the lag metric's base."""
        self._claimed_ends: dict[TopicPartition, int] = {}
        """Each owned partition's end when claimed, until the broker reports a high watermark."""
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
            max_poll_interval_ms=config.max_poll_interval_ms,
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
            self._unmeasure(tp)
        if revoked:
            self._log.info("partitions_revoked", partitions=_names(revoked))

    async def claim(self, assigned: set[TopicPartition]) -> None:
        """Take newly assigned partitions: bump their epochs, seek to the stored offsets, run
        `on_assigned`, and only then let their records through."""
        try:
            self._consumer.pause(*assigned)
            ends = await self._consumer.end_offsets(list(assigned)) if assigned else {}
            epochs = {}
            positions = {}
            for tp in sorted(assigned):
                epoch, next_offset = await self._retrying(
                    f"claim {_name(tp)}", functools.partial(self._claim_one, tp)
                )
                end = ends.get(tp, 0)
                if next_offset > end and not await self._holds(tp, next_offset - 1):
                    raise OffsetBeyondEnd(
                        f"{tp.topic}[{tp.partition}]: the database has this group at offset "
                        f"{next_offset} but the broker ends at {end}. The broker was wiped or "
                        "replaced while the databases kept their positions; refill the broker "
                        "from the event archive or start with fresh databases."
                    )
                self._consumer.seek(tp, next_offset)
                epochs[tp] = epoch
                positions[tp] = next_offset
            if self._on_assigned is not None and assigned:
                on_assigned = self._on_assigned
                await self._retrying("take over", lambda: on_assigned(assigned))
            self._epochs.update(epochs)
            self._next_offsets.update(positions)
            self._claimed_ends.update({tp: ends.get(tp, 0) for tp in positions})
            self._consumer.resume(*assigned)
            if assigned:
                self._log.info(
                    "partitions_claimed",
                    partitions=_names(assigned),
                    epochs={_name(tp): epochs.get(tp) for tp in assigned},
                )
        except _Interrupted:
            return
        except BaseException as exc:  # a listener's exception would be swallowed by aiokafka
            self._fatal = exc
            self._stopping.set()

    async def _claim_one(self, tp: TopicPartition) -> tuple[int, int]:
        async with self._engine.begin() as conn:
            return await self._positions.claim(conn, tp)

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
                for tp in sorted(batches, key=self._priority):
                    if batches[tp]:
                        await self._process(tp, batches[tp])
                if time.monotonic() >= self._next_beat:
                    await self._beat()
                if not batches or time.monotonic() >= self._next_lag_commit:
                    self._measure_lag()
                    await self._commit_lag()
                if not batches:
                    await self._idle()
            if self._fatal is not None:
                raise self._fatal
            await self._idle()
            await self._commit_lag()
        finally:
            await self._consumer.stop()
            self._log.info("consumer_stopped")

    async def _beat(self) -> None:
        self._next_beat = time.monotonic() + self.config.heartbeat_seconds
        owned = dict(self._epochs)
        if not owned:
            return
        try:
            async with self._engine.begin() as conn:
                await self._positions.beat(conn, owned)
        except Exception as exc:  # a missed beat only delays readiness; the next one retries
            self._log.warning("heartbeat_failed", error=repr(exc))

    async def _idle(self) -> None:
        if self._on_idle is None:
            return
        try:
            await self._retrying("idle work", self._on_idle)
        except _Interrupted:
            return
        except Exception as exc:
            self._log.error("idle_work_failed", error=repr(exc))

    async def _process(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        with correlated(batch_correlation(records)):
            await self._process_batch(tp, records)
        CONSUMER_BATCH_SECONDS.labels(self._role, tp.topic).observe(time.perf_counter() - started)

    async def _process_batch(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        epoch = self._epochs.get(tp)
        if epoch is None:
            return
        try:
            handled = await self._retrying(
                f"batch {_name(tp)}", lambda: self._transaction(tp, epoch, records)
            )
        except Fenced as exc:
            CONSUMER_BATCHES.labels(self._role, tp.topic, "fenced").inc()
            self._fenced(tp, epoch, exc)
            return
        except _Interrupted:
            return
        except Exception as exc:
            CONSUMER_BATCHES.labels(self._role, tp.topic, "split").inc()
            self._log.warning(
                "batch_failed_retrying_one_by_one",
                partition=_name(tp),
                first_offset=records[0].offset,
                records=len(records),
                error=repr(exc),
            )
            for record in records:
                if not await self._process_alone(tp, epoch, record):
                    return
            return
        CONSUMER_BATCHES.labels(self._role, tp.topic, "committed").inc()
        await self._finish(tp, handled, records)

    async def _process_alone(self, tp: TopicPartition, epoch: int, record: Record) -> bool:
        """Apply one record, or dead-letter it if it fails for any reason but a transient
        one. False when the partition was lost or the consumer is stopping."""
        with correlated(record_correlation(record)):
            return await self._apply_alone(tp, epoch, record)

    async def _apply_alone(self, tp: TopicPartition, epoch: int, record: Record) -> bool:
        label = f"record {_name(tp)}@{record.offset}"
        try:
            try:
                handled = await self._retrying(
                    label, lambda: self._transaction(tp, epoch, [record])
                )
            except (Fenced, _Interrupted):
                raise
            except Exception as exc:
                self._log.error(
                    "record_failed",
                    partition=_name(tp),
                    offset=record.offset,
                    error=repr(exc),
                )
                failure = exc
                handled = await self._retrying(
                    label, lambda: self._transaction(tp, epoch, [record], failure=failure)
                )
        except Fenced as exc:
            self._fenced(tp, epoch, exc)
            return False
        except _Interrupted:
            return False
        await self._finish(tp, handled, [record])
        return True

    async def _transaction(
        self,
        tp: TopicPartition,
        epoch: int,
        records: Sequence[Record],
        *,
        failure: Exception | None = None,
    ) -> HandledBatch:
        """One transaction: check the epoch, apply the records (or, given the `failure` that
        applying them raised, only dead-letter them), and move the stored offset past them."""
        async with self._engine.begin() as conn:
            await self._positions.check_epoch(conn, tp, epoch)
            if failure is None:
                handled = await self._handler.handle(conn, tp, records)
            else:
                handled = HandledBatch(dead_letters=[DeadLetter(r, failure) for r in records])
            if handled.dead_letters:
                await self._send_dead_letters(handled.dead_letters)
            await self._positions.advance(
                conn, tp, records[-1].offset + 1, dead_letters=len(handled.dead_letters)
            )
        return handled

    async def _finish(
        self, tp: TopicPartition, handled: HandledBatch, records: Sequence[Record]
    ) -> None:
        """After the commit of `records`: the handler's bookkeeping, the metrics, and
        publishing; the offset is noted for the next lag-monitoring commit. A publishing
        failure that is not transient stops the consumer: going on would publish later
        decisions before these; whoever takes the partition over publishes them first."""
        next_offset = records[-1].offset + 1
        if handled.committed is not None:
            handled.committed()
        CONSUMER_RECORDS.labels(self._role, tp.topic, str(tp.partition)).inc(len(records))
        if handled.dead_letters:
            CONSUMER_DEAD_LETTERS.labels(self._role, tp.topic).inc(len(handled.dead_letters))
        if tp in self._next_offsets:
            self._next_offsets[tp] = next_offset
            self._measure_lag([tp])
        if handled.after_commit is not None:
            try:
                await self._retrying(f"publish {_name(tp)}", handled.after_commit)
            except _Interrupted:
                return
        self._lag_offsets[tp] = next_offset

    async def _commit_lag(self) -> None:
        """Kafka's committed offsets, for lag monitoring only, at most once a second (and
        whenever the consumer is idle): the database holds the positions that count."""
        self._next_lag_commit = time.monotonic() + self.config.lag_commit_seconds
        offsets = {tp: o for tp, o in self._lag_offsets.items() if tp in self._epochs}
        self._lag_offsets.clear()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            self._log.debug("lag_commit_skipped", partitions=_names(set(offsets)), error=str(exc))

    def _measure_lag(self, partitions: Sequence[TopicPartition] | None = None) -> None:
        """Set the lag gauge of the owned partitions (or of `partitions`): the partition's
        high watermark as the last fetch reported it, less the stored position."""
        assigned = self._consumer.assignment()
        for tp in self._next_offsets if partitions is None else partitions:
            if tp not in assigned:
                continue
            end = self._consumer.highwater(tp)
            if end is None:
                end = self._claimed_ends.get(tp, 0)
            lag = max(int(end) - self._next_offsets[tp], 0)
            CONSUMER_LAG.labels(self._role, tp.topic, str(tp.partition)).set(lag)

    def _unmeasure(self, tp: TopicPartition) -> None:
        """A partition no longer owned: its lag is its new owner's to report."""
        self._next_offsets.pop(tp, None)
        self._claimed_ends.pop(tp, None)
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(self._role, tp.topic, str(tp.partition))

    def _priority(self, tp: TopicPartition) -> tuple[int, int]:
        """Batches are applied in the order the config lists their topics: the website
        projector applies decisions before the pending registrations it shows meanwhile."""
        return self.config.topics.index(tp.topic), tp.partition

    def _fenced(self, tp: TopicPartition, epoch: int, exc: Fenced) -> None:
        if self._epochs.get(tp) == epoch:
            self._epochs.pop(tp, None)
            self._unmeasure(tp)
            self._consumer.pause(tp)
            self._log.warning("fenced_out", partition=_name(tp), reason=str(exc))

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` until it succeeds or fails for good: transient faults are retried
        with backoff while the consumer runs; stopping interrupts the wait."""
        failures = 0
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = backoff_delay(failures)
                failures += 1
                self._log.warning(
                    "transient_fault_retrying",
                    what=what,
                    attempt=failures,
                    retry_in=round(delay, 3),
                    error=repr(exc),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                raise _Interrupted(what)

    async def _send_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        outgoing = []
        for dead in dead_letters:
            record = dead.record
            self._log.warning(
                "dead_lettered",
                correlation_id=record_correlation(record),
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


def record_correlation(record: Record) -> str | None:
    """The correlation id a record travels with (header, else envelope), None if it has
    none: a record that is not an envelope can still be dead-lettered and logged."""
    found = header(record.headers, HEADER_CORRELATION_ID)
    if found:
        return found
    try:
        return correlation_of(record.headers, decode_envelope(record.value))
    except UndecodableMessage:
        return None


def batch_correlation(records: Sequence[Record]) -> str | None:
    """The one correlation id every record of a batch shares (headers only: a batch is read
    on the hot path), else None: each record's own lines then name their own."""
    found: str | None = None
    for record in records:
        correlation = header(record.headers, HEADER_CORRELATION_ID)
        if correlation is None or (found is not None and correlation != found):
            return None
        found = correlation
    return found


@contextlib.contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    """Every line logged meanwhile (by this loop and by the handler it calls) carries
    `correlation_id`, unless the line names one itself."""
    if correlation_id is None:
        yield
        return
    with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
        yield


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _names(tps: set[TopicPartition]) -> list[str]:
    return sorted(_name(tp) for tp in tps)
