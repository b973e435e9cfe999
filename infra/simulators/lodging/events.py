"""Publishing the bureau's events from its outbox to its own topic, keyed by convention id.

Events are published only after the transaction that wrote them committed, and marked
published only once the broker acknowledged them; whatever is left unpublished (a crash, a
broker outage, an event held back to arrive out of order) goes out on the next pass or the
next start, so none is lost. The format is the bureau's own, not Butterfly's envelope:

    {"event_id", "type", "convention_id", "sequence", "occurred_at", "ack", "data"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.simulators.lodging import store
from infra.simulators.lodging.faults import Faults

log = structlog.get_logger("partner.events")

TOPIC_SUFFIX = "partner.lodging.events"
BATCH = 500
IDLE_POLL_SECONDS = 0.2
RETRY_SECONDS = 1.0


def topic_name(topic_prefix: str) -> str:
    return f"{topic_prefix}{TOPIC_SUFFIX}"


async def ensure_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    """Create the bureau's topic if missing; it keeps its records forever, like a partner
    feed a consumer may have to replay from the start."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs={"retention.ms": "-1", "retention.bytes": "-1"},
                    )
                ]
            )
    finally:
        await admin.close()


class OutboxPublisher:
    """Publishes outbox rows in the order they were written, except those the faults hold
    back (published after later ones) or duplicate (published twice, same event id)."""

    def __init__(
        self, engine: AsyncEngine, producer: AIOKafkaProducer, topic: str, faults: Faults
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.topic = topic
        self.faults = faults
        self._wake = asyncio.Event()
        self._stopping = False
        self._held_until: dict[int, float] = {}

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                busy = await self.publish_pending()
            except (KafkaError, SQLAlchemyError, OSError) as error:
                log.warning("partner_publish_failed_retrying", error=repr(error))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_SECONDS):
                        await self._wait_for_stop()
                continue
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_POLL_SECONDS):
                        await self._wake.wait()

    async def _wait_for_stop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()

    async def publish_pending(self) -> bool:
        """One pass over the unpublished rows; True if a full batch went out (more may wait)."""
        o = store.outbox.c
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(o.id, o.convention_id, o.body)
                    .where(o.published_at.is_(None))
                    .order_by(o.id)
                    .limit(BATCH)
                )
            ).all()
        now = time.monotonic()
        sent: list[int] = []
        acks: list[asyncio.Future[Any]] = []
        for row in rows:
            if self._held_back(row.id, now):
                continue
            value = json.dumps(row.body, separators=(",", ":")).encode()
            headers = [("type", str(row.body["type"]).encode())]
            copies = 2 if self.faults.duplicate_event() else 1
            for _ in range(copies):
                acks.append(
                    await self.producer.send(
                        self.topic, value=value, key=row.convention_id.encode(), headers=headers
                    )
                )
            sent.append(row.id)
        if not sent:
            return False
        await asyncio.gather(*acks)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(store.outbox)
                .where(o.id.in_(sent))
                .values(published_at=datetime.now(UTC).replace(tzinfo=None))
            )
        for row_id in sent:
            self._held_until.pop(row_id, None)
        log.info("partner_events_published", count=len(sent), copies=len(acks))
        return len(rows) == BATCH

    def _held_back(self, row_id: int, now: float) -> bool:
        """Whether to leave a row for a later pass: chosen once per row (by the faults),
        and held until its delay is over."""
        until = self._held_until.get(row_id)
        if until is None:
            if not self.faults.hold_event_back():
                return False
            until = now + self.faults.config.reorder_delay_seconds
            self._held_until[row_id] = until
            log.info("partner_event_held_back", outbox_id=row_id, seconds=until - now)
        return now < until
