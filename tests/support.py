"""Helpers shared by integration and end-to-end tests: polling with a deadline, producing and
reading records, running a role in the background."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.bootstrap import ConsumerRole
from infra.db import make_engine
from infra.settings import Settings
from projections.website import tables as r
from schemas.envelope import Envelope
from schemas.registration import (
    BadgeTypeSpec,
    Command,
    CreateConvention,
    OpenConvention,
    RegisterAttendee,
)
from schemas.registry import wrap
from schemas.topics import Topics, registration_key

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` until `until(value)` holds; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


def command_envelope(command: Command, command_id: uuid.UUID | None = None) -> Envelope:
    return wrap(
        command,
        message_id=command_id or uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        key=registration_key(command.convention_id),
        actor="test",
    )


async def produce(
    settings: Settings, topic: str, records: list[tuple[str, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


async def send_commands(settings: Settings, *envelopes: Envelope) -> None:
    topic = Topics(settings.topic_prefix).registration_commands
    await produce(settings, topic, [(e.key, e.encode(), e.headers()) for e in envelopes])


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in `topic`, read without a consumer group: up to the reported
    end offsets and then until a fetch comes back empty (reported ends can lag)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, items in batch.items():
                records.extend(items)
                if items and items[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if not batch and not remaining:
                break
        return records
    finally:
        await consumer.stop()


@asynccontextmanager
async def running(role: ConsumerRole) -> AsyncIterator[asyncio.Task[None]]:
    """Run a consumer role in the background for the duration of the block."""
    task = asyncio.create_task(role.run())
    try:
        yield task
    finally:
        role.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)


@asynccontextmanager
async def engine_for(url: Any) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


def new_convention(quota: int = 3, convention_id: uuid.UUID | None = None) -> CreateConvention:
    return CreateConvention(
        convention_id=convention_id or uuid.uuid4(),
        name="Test Con",
        starts_on=date(2027, 5, 1),
        ends_on=date(2027, 5, 3),
        badge_types=(BadgeTypeSpec(code="STD", name="Standard", price_cents=0, quota=quota),),
        request_hash="test",
    )


def open_convention(convention_id: uuid.UUID) -> OpenConvention:
    return OpenConvention(convention_id=convention_id)


def registration(
    convention_id: uuid.UUID, email: str, registration_id: uuid.UUID | None = None
) -> tuple[RegisterAttendee, uuid.UUID]:
    rid = registration_id or uuid.uuid4()
    return (
        RegisterAttendee(
            convention_id=convention_id,
            registration_id=rid,
            email=email,
            name="Someone",
            badge_type="STD",
            request_hash=f"h-{rid}",
        ),
        rid,
    )


async def open_convention_with_quota(settings: Settings, quota: int) -> uuid.UUID:
    create = new_convention(quota)
    await send_commands(
        settings, command_envelope(create), command_envelope(open_convention(create.convention_id))
    )
    return create.convention_id


async def sold(settings: Settings, convention_id: uuid.UUID) -> int:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        value = (
            await conn.execute(
                select(r.badge_types.c.sold).where(
                    r.badge_types.c.convention_id == str(convention_id)
                )
            )
        ).scalar_one_or_none()
    return -1 if value is None else int(value)


async def statuses(settings: Settings, convention_id: uuid.UUID) -> dict[str, int]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = (
            await conn.execute(
                select(r.registrations.c.status, r.registrations.c.reason).where(
                    r.registrations.c.convention_id == str(convention_id)
                )
            )
        ).all()
    result: dict[str, int] = {}
    for row in rows:
        name = f"{row.status}:{row.reason}" if row.reason else row.status
        result[name] = result.get(name, 0) + 1
    return result
