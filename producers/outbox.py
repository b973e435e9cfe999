"""The transactional outbox: events are written beside the state that decided them, published
after commit, and republished by the relay if the publishing process died first."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.metrics import OUTBOX_RELAYED
from infra.pipeline.faults import backoff_delay, is_transient
from producers.kafka import OutgoingRecord, publish_all

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


async def stage(
    conn: AsyncConnection,
    outbox: Table,
    records: Sequence[tuple[str, OutgoingRecord]],
    *,
    partition: int | None = None,
) -> None:
    """Write (event_id, record) pairs into the outbox inside the caller's transaction;
    `partition` is the input partition whose decisions they are."""
    if not records:
        return
    now = utcnow()
    await conn.execute(
        insert(outbox),
        [
            {
                "event_id": event_id,
                "topic": record.topic,
                "partition_no": partition,
                "message_key": record.key,
                "headers": json.dumps([[k, v.decode()] for k, v in record.headers]),
                "value": record.value,
                "created_at": now,
            }
            for event_id, record in records
        ],
    )


async def mark_published(conn: AsyncConnection, outbox: Table, event_ids: Sequence[str]) -> None:
    if event_ids:
        await conn.execute(
            update(outbox).where(outbox.c.event_id.in_(event_ids)).values(published_at=utcnow())
        )


class OutboxRelay:
    """Publishes outbox rows still unpublished after `grace` (their publisher died),
    oldest first."""

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        producer: AIOKafkaProducer,
        *,
        grace: timedelta = timedelta(seconds=3),
        batch_size: int = 500,
        interval: float = 1.0,
        keep_published: timedelta = timedelta(days=1),
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._producer = producer
        self._grace = grace
        self._batch_size = batch_size
        self._interval = interval
        self._keep_published = keep_published
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def relay_once(
        self, *, grace: timedelta | None = None, partitions: Collection[int] | None = None
    ) -> int:
        """Publish one batch of stale rows, of the given input partitions only if named;
        returns how many were published."""
        cutoff = utcnow() - (self._grace if grace is None else grace)
        o = self._outbox.c
        query = (
            select(o.event_id, o.topic, o.message_key, o.headers, o.value)
            .where(o.published_at.is_(None), o.created_at <= cutoff)
            .order_by(o.seq)
            .limit(self._batch_size)
        )
        if partitions is not None:
            query = query.where(o.partition_no.in_(list(partitions)))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        await publish_all(
            self._producer,
            (
                OutgoingRecord(
                    row.topic,
                    row.message_key,
                    row.value,
                    [(k, v.encode()) for k, v in json.loads(row.headers)],
                )
                for row in rows
            ),
        )
        async with self._engine.begin() as conn:
            await mark_published(conn, self._outbox, [row.event_id for row in rows])
        OUTBOX_RELAYED.labels(self._outbox.name).inc(len(rows))
        log.info("outbox_relayed", count=len(rows))
        return len(rows)

    async def drain(
        self, *, grace: timedelta | None = None, partitions: Collection[int] | None = None
    ) -> int:
        total = 0
        while count := await self.relay_once(grace=grace, partitions=partitions):
            total += count
        return total

    async def purge_published(self) -> int:
        """Forget rows published long ago: the event topics are the record, not the outbox."""
        cutoff = utcnow() - self._keep_published
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(self._outbox)
                .where(self._outbox.c.published_at < cutoff)
                .execution_options(synchronize_session=False)
            )
        return int(result.rowcount or 0)

    async def run(self) -> None:
        """Relay and purge every `interval` until stopped. A transient fault (the database
        or the broker away) is logged and tried again after a growing wait, as the consumers
        do; anything else ends the role, for its supervisor to start it again."""
        log.info("relay_started")
        failures = 0
        while not self._stopping.is_set():
            wait = self._interval
            try:
                await self.drain()
                if purged := await self.purge_published():
                    log.info("outbox_purged", count=purged)
                failures = 0
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                wait = backoff_delay(failures, cap=self._interval * 10)
                log.warning(
                    "relay_transient_fault",
                    outbox=self._outbox.name,
                    attempt=failures,
                    retry_in=round(wait, 3),
                    error=repr(exc),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
        log.info("relay_stopped")
