"""A partition taken over keeps its events in decision order; published marks survive a
failed transaction; de-duplication records go only once past the retention horizon.

No relay runs in these tests: whatever the outbox holds unpublished is published by a
decider, so the order on the topic is the decider's doing alone.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.registration import tables as w
from infra.bootstrap import build_decider
from infra.pipeline.exactly_once import BatchHandler, HandledBatch, Record
from infra.pipeline.faults import is_transient
from infra.pipeline.retention import DedupRetention, Purge, dedup_horizon
from infra.settings import Settings
from producers.outbox import utcnow
from projections.website import tables as r
from schemas.envelope import Envelope
from schemas.registration import CancelRegistration, CloseConvention
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    new_convention,
    open_convention,
    read_topic,
    registration,
    running,
    send_commands,
)

pytestmark = pytest.mark.integration


# helpers ------------------------------------------------------------------------------------


class OutboxRow:
    def __init__(self, row: Any) -> None:
        self.event_id: str = row.event_id
        self.seq: int = int(row.seq)
        self.partition_no: int | None = row.partition_no
        self.created_at: datetime = row.created_at
        self.published_at: datetime | None = row.published_at


async def outbox_rows(settings: Settings) -> list[OutboxRow]:
    o = w.outbox.c
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        rows = (
            await conn.execute(
                select(o.event_id, o.seq, o.partition_no, o.created_at, o.published_at).order_by(
                    o.seq
                )
            )
        ).all()
    return [OutboxRow(row) for row in rows]


async def decided(settings: Settings) -> int:
    async with engine_for(settings.db.write_url) as engine:
        return await count(engine, w.decided_commands)


async def unpublished(settings: Settings) -> int:
    async with engine_for(settings.db.write_url) as engine:
        return await count(engine, w.outbox, w.outbox.c.published_at.is_(None))


def event_id_of(record: Record) -> str:
    return str(json.loads(record.value)["message_id"])


async def topic_events(settings: Settings) -> list[Record]:
    return await read_topic(settings, Topics(settings.topic_prefix).registration_events)


def first_occurrences_by_partition(records: Sequence[Record]) -> dict[int, list[str]]:
    """Per partition of the events topic, the event ids in offset order, each at its first
    occurrence (a republished event is a later copy, ignored by every consumer)."""
    by_partition: dict[int, list[Record]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    result: dict[int, list[str]] = {}
    for partition, items in by_partition.items():
        seen: set[str] = set()
        ordered: list[str] = []
        for record in sorted(items, key=lambda rec: rec.offset):
            event_id = event_id_of(record)
            if event_id not in seen:
                seen.add(event_id)
                ordered.append(event_id)
        result[partition] = ordered
    return result


async def open_conventions(settings: Settings, n: int, quota: int) -> list[uuid.UUID]:
    envelopes: list[Envelope] = []
    ids = []
    for _ in range(n):
        create = new_convention(quota)
        ids.append(create.convention_id)
        envelopes += [
            command_envelope(create),
            command_envelope(open_convention(create.convention_id)),
        ]
    await send_commands(settings, *envelopes)
    return ids


# 1. order survives a takeover ---------------------------------------------------------------


class CrashOnSecondPublish:
    """Publishes the first batch as usual; after the second batch's commit, "dies" before
    publishing (its after_commit raises, which stops the consumer with that error)."""

    def __init__(self, inner: BatchHandler) -> None:
        self.inner = inner
        self.batches = 0

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        handled = await self.inner.handle(conn, tp, records)
        self.batches += 1
        if self.batches < 2:
            return handled

        async def crash() -> None:
            raise RuntimeError("killed between the database commit and the publication")

        return HandledBatch(handled.dead_letters, crash)


async def test_a_partition_taken_over_keeps_its_events_in_decision_order(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=3)
    conventions = await open_conventions(settings, 3, quota=4)
    first: list[Envelope] = []
    registered: list[uuid.UUID] = []
    for i in range(4):
        for n, cid in enumerate(conventions):
            command, rid = registration(cid, f"first{i}-{n}@example.org")
            registered.append(rid)
            first.append(command_envelope(command))
    await send_commands(settings, *first)
    sent = 2 * len(conventions) + len(first)

    crashing = build_decider(settings, max_records=3, wrap_handler=CrashOnSecondPublish)
    with pytest.raises(RuntimeError, match="killed between"):
        async with running(crashing) as task:
            await eventually_done(task)
    at_crash = await outbox_rows(settings)
    leftovers = [row for row in at_crash if row.published_at is None]
    assert leftovers, "the crashed batch left its events unpublished in the outbox"
    on_topic = {event_id_of(rec) for rec in await topic_events(settings)}
    assert {row.event_id for row in leftovers} - on_topic, (
        "the crashed batch's events were not published before the takeover"
    )
    assert await decided(settings) < sent, "some commands are left for the new owner"

    more: list[Envelope] = []
    for i in range(3):
        for n, cid in enumerate(conventions):
            more.append(command_envelope(registration(cid, f"more{i}-{n}@example.org")[0]))
    more.append(
        command_envelope(
            CancelRegistration(convention_id=conventions[0], registration_id=registered[0])
        )
    )
    more += [command_envelope(CloseConvention(convention_id=cid)) for cid in conventions]
    await send_commands(settings, *more)
    sent += len(more)

    async with running(build_decider(settings)):
        await eventually(
            lambda: decided(settings), lambda n: n == sent, what="every command decided"
        )
        await eventually(
            lambda: unpublished(settings), lambda n: n == 0, what="every event marked published"
        )

    rows = await outbox_rows(settings)
    seq = {row.event_id: row.seq for row in rows}
    records = await topic_events(settings)
    published = {event_id_of(rec) for rec in records}
    assert published == set(seq), (
        f"missing from the topic: {sorted(set(seq) - published)}; "
        f"not in the outbox: {sorted(published - set(seq))}"
    )
    for partition, ids in first_occurrences_by_partition(records).items():
        assert ids == sorted(ids, key=seq.__getitem__), (
            f"events partition {partition} is not in decision (outbox seq) order"
        )

    # The new owner published every leftover before staging anything it decided itself.
    leftover_ids = {row.event_id for row in leftovers}
    known_at_crash = {row.event_id for row in at_crash}
    for command_partition in {row.partition_no for row in leftovers}:
        republished = [
            row
            for row in rows
            if row.event_id in leftover_ids and row.partition_no == command_partition
        ]
        decided_after = [
            row
            for row in rows
            if row.event_id not in known_at_crash and row.partition_no == command_partition
        ]
        assert decided_after, (
            f"command partition {command_partition} got new decisions after the takeover"
        )
        assert all(row.published_at is not None for row in republished)
        assert max(row.published_at for row in republished if row.published_at) <= min(
            row.created_at for row in decided_after
        )


async def eventually_done(task: asyncio.Task[None]) -> None:
    """Wait for a role that is expected to stop by itself, with a deadline."""
    await asyncio.wait_for(task, 60)


# 2. published marks -------------------------------------------------------------------------


async def test_every_published_event_is_marked_published(make_settings: StackFactory) -> None:
    settings = await make_settings(partitions=3)
    conventions = await open_conventions(settings, 2, quota=3)
    envelopes = [
        command_envelope(registration(cid, f"mark{i}@example.org")[0])
        for cid in conventions
        for i in range(5)
    ]
    await send_commands(settings, *envelopes)
    sent = 2 * len(conventions) + len(envelopes)
    async with running(build_decider(settings, max_records=2)):
        await eventually(lambda: decided(settings), lambda n: n == sent, what="all decided")
        await eventually(
            lambda: unpublished(settings), lambda n: n == 0, what="every event marked published"
        )
    rows = await outbox_rows(settings)
    assert len(rows) == sent
    ids = [event_id_of(rec) for rec in await topic_events(settings)]
    assert sorted(ids) == sorted(row.event_id for row in rows), "each event published once"


def deadlock() -> OperationalError:
    return OperationalError(
        "COMMIT", {}, Exception(1213, "Deadlock found when trying to get lock (injected)")
    )


class FailOneTransactionCarryingMarks:
    """Lets the decider handle a batch, then makes its transaction fail with a deadlock,
    once: the first time that transaction would have marked earlier events published. The
    transaction rolls back, marks and all; the consumer retries the batch."""

    def __init__(self, inner: BatchHandler) -> None:
        self.inner = inner
        self.rolled_back_marks: set[str] = set()

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        before = await self._marked(conn)
        handled = await self.inner.handle(conn, tp, records)
        if not self.rolled_back_marks:
            marked_here = await self._marked(conn) - before
            if marked_here:
                self.rolled_back_marks = marked_here
                raise deadlock()
        return handled

    @staticmethod
    async def _marked(conn: AsyncConnection) -> set[str]:
        o = w.outbox.c
        rows = await conn.execute(select(o.event_id).where(o.published_at.is_not(None)))
        return set(rows.scalars())


async def test_a_failed_transaction_does_not_lose_published_marks(
    make_settings: StackFactory,
) -> None:
    assert is_transient(deadlock()), "the injected fault is one the consumer retries"
    settings = await make_settings(partitions=1)
    (convention_id,) = await open_conventions(settings, 1, quota=5)
    envelopes = [
        command_envelope(registration(convention_id, f"roll{i}@example.org")[0]) for i in range(8)
    ]
    await send_commands(settings, *envelopes)
    sent = 2 + len(envelopes)
    wrappers: list[FailOneTransactionCarryingMarks] = []

    def wrap(inner: BatchHandler) -> BatchHandler:
        wrappers.append(FailOneTransactionCarryingMarks(inner))
        return wrappers[0]

    async with running(build_decider(settings, max_records=1, wrap_handler=wrap)):
        await eventually(lambda: decided(settings), lambda n: n == sent, what="all decided")
        await eventually(
            lambda: unpublished(settings), lambda n: n == 0, what="every event marked published"
        )
    (wrapper,) = wrappers
    assert wrapper.rolled_back_marks, (
        "the fault was injected into a transaction that carried published marks"
    )
    rows = await outbox_rows(settings)
    assert len(rows) == sent
    assert all(row.published_at is not None for row in rows)
    ids = [event_id_of(rec) for rec in await topic_events(settings)]
    assert len(ids) == len(set(ids)), "no event was published twice"
    assert set(ids) == {row.event_id for row in rows}


# 3. retention -------------------------------------------------------------------------------


def test_the_dedup_horizon() -> None:
    assert dedup_horizon(timedelta(days=7), None) is None
    assert dedup_horizon(timedelta(0), None) is None
    assert dedup_horizon(timedelta(days=7), timedelta(days=1)) == timedelta(days=7)
    assert dedup_horizon(timedelta(days=1), timedelta(days=7)) == timedelta(days=7)
    assert dedup_horizon(timedelta(days=2), timedelta(days=2)) == timedelta(days=2)


def retention(settings: Settings, engine: Any, purges: list[Purge]) -> DedupRetention:
    return DedupRetention(
        engine,
        purges,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        command_topic=Topics(settings.topic_prefix).registration_commands,
        keep=timedelta(days=1),
        batch=2,
    )


async def test_retention_purges_only_decided_commands_past_the_horizon(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    now = utcnow()
    old = [str(uuid.uuid4()) for _ in range(5)]
    new = [str(uuid.uuid4()) for _ in range(3)]
    stamped = [(c, now - timedelta(days=3, minutes=i)) for i, c in enumerate(old)] + [
        (new[0], now - timedelta(hours=23)),
        (new[1], now - timedelta(minutes=1)),
        (new[2], now),
    ]
    async with engine_for(settings.db.write_url) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                insert(w.decided_commands),
                [{"command_id": c, "decided_at": at} for c, at in stamped],
            )
        purge = retention(
            settings, engine, [Purge(w.decided_commands, w.decided_commands.c.decided_at)]
        )
        assert await purge.purge_older_than(timedelta(days=1)) == len(old)
        async with engine.connect() as conn:
            left = set((await conn.execute(select(w.decided_commands.c.command_id))).scalars())
        assert left == set(new)
        assert await purge.purge_older_than(timedelta(days=1)) == 0


async def test_retention_purges_only_applied_events_and_outcomes_past_the_horizon(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    now = utcnow()
    old_events = [str(uuid.uuid4()) for _ in range(3)]
    new_events = [str(uuid.uuid4()) for _ in range(2)]
    old_outcomes = [str(uuid.uuid4()) for _ in range(4)]
    new_outcomes = [str(uuid.uuid4()) for _ in range(2)]
    async with engine_for(settings.db.read_url) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                insert(r.applied_events),
                [{"event_id": e, "applied_at": now - timedelta(days=2)} for e in old_events]
                + [
                    {"event_id": new_events[0], "applied_at": now - timedelta(hours=1)},
                    {"event_id": new_events[1], "applied_at": now},
                ],
            )
            await conn.execute(
                insert(r.command_outcomes),
                [
                    {
                        "command_id": c,
                        "outcome": "accepted",
                        "reason": None,
                        "subject_id": str(uuid.uuid4()),
                        "recorded_at": at,
                    }
                    for c, at in [(c, now - timedelta(days=1, minutes=5)) for c in old_outcomes]
                    + [
                        (new_outcomes[0], now - timedelta(hours=20)),
                        (new_outcomes[1], now),
                    ]
                ],
            )
        purge = retention(
            settings,
            engine,
            [
                Purge(r.applied_events, r.applied_events.c.applied_at),
                Purge(r.command_outcomes, r.command_outcomes.c.recorded_at),
            ],
        )
        assert await purge.purge_older_than(timedelta(days=1)) == len(old_events) + len(
            old_outcomes
        )
        async with engine.connect() as conn:
            events_left = set((await conn.execute(select(r.applied_events.c.event_id))).scalars())
            outcomes_left = set(
                (await conn.execute(select(r.command_outcomes.c.command_id))).scalars()
            )
        assert events_left == set(new_events)
        assert outcomes_left == set(new_outcomes)
