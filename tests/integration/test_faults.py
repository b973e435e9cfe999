"""Faults inside the exactly-once loop on a real broker and MariaDB: a record whose handling
fails for good is dead-lettered alone while the rest of its batch is applied, a transient
fault is retried in the process (no restart, no rebalance), and health names a stalled
partition and counts what was dead-lettered."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from sqlalchemy import Table, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.registration import tables as w
from infra.bootstrap import (
    build_consumer_watch,
    build_decider,
    build_projector,
    decider_group,
    group_name,
)
from infra.db import make_engine
from infra.pipeline.exactly_once import BatchHandler, HandledBatch, Record
from infra.pipeline.faults import is_transient
from infra.pipeline.health import PartitionProgress
from infra.settings import Settings
from producers.dead_letters import read_dead_letters, replay
from projections.website import tables as r
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    Envelope,
)
from schemas.registration import (
    AttendeeRegistered,
    BadgeTypeSpec,
    ConventionCreated,
    ConventionOpened,
    Event,
)
from schemas.registry import wrap
from schemas.topics import Topics, registration_key
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    open_convention_with_quota,
    produce,
    read_topic,
    registration,
    running,
    send_commands,
    sold,
    statuses,
)

pytestmark = pytest.mark.integration


# --- handlers with a fault in them ------------------------------------------------------


def _registration_id(record: Record) -> str | None:
    try:
        payload = json.loads(record.value or b"")["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    value = payload.get("registration_id") if isinstance(payload, dict) else None
    return None if value is None else str(value)


class BugOnOneRegistration:
    """A bug that strikes whenever a batch holds one given registration: the real decider
    handles the batch first (so there are effects to roll back), then the bug raises."""

    def __init__(self, poisoned: uuid.UUID, error: Exception) -> None:
        self.poisoned = str(poisoned)
        self.error = error
        self.inner: BatchHandler | None = None
        self.failed_batch_sizes: list[int] = []

    def __call__(self, inner: BatchHandler) -> BatchHandler:
        self.inner = inner
        return self

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        assert self.inner is not None
        handled = await self.inner.handle(conn, tp, records)
        if any(_registration_id(record) == self.poisoned for record in records):
            self.failed_batch_sizes.append(len(records))
            raise self.error
        return handled


class LosesTheConnectionAtFirst:
    """The first `faults` batches fail with a lost connection after the real decider handled
    them (so their effects are rolled back and must be applied again, once)."""

    def __init__(self, faults: int) -> None:
        self.faults = faults
        self.raised = 0
        self.calls = 0
        self.inner: BatchHandler | None = None

    def __call__(self, inner: BatchHandler) -> BatchHandler:
        self.inner = inner
        return self

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        assert self.inner is not None
        self.calls += 1
        handled = await self.inner.handle(conn, tp, records)
        if self.raised < self.faults:
            self.raised += 1
            raise lost_connection()
        return handled


def lost_connection() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(2013, "Lost connection to server"))


# --- reading what happened --------------------------------------------------------------


async def registration_status(
    settings: Settings, registration_id: uuid.UUID
) -> tuple[str, str | None] | None:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        row = (
            await conn.execute(
                select(r.registrations.c.status, r.registrations.c.reason).where(
                    r.registrations.c.registration_id == str(registration_id)
                )
            )
        ).one_or_none()
    return None if row is None else (row.status, row.reason)


async def outcome_of(settings: Settings, command_id: uuid.UUID) -> tuple[str, str | None] | None:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        row = (
            await conn.execute(
                select(r.command_outcomes.c.outcome, r.command_outcomes.c.reason).where(
                    r.command_outcomes.c.command_id == str(command_id)
                )
            )
        ).one_or_none()
    return None if row is None else (row.outcome, row.reason)


async def positions(url: Any, table: Table, group: str) -> dict[tuple[str, int], dict[str, Any]]:
    """(topic, partition) -> that group's stored row, as a dict."""
    async with engine_for(url) as engine, engine.connect() as conn:
        rows = (await conn.execute(select(table).where(table.c.group_name == group))).all()
    return {(row.topic, int(row.partition_no)): dict(row._mapping) for row in rows}


def headers_of(record: Record) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers or ()}


async def owned(role: Any) -> dict[TopicPartition, int]:
    return dict(role.consumer.owned)


# --- 1. a bug in the decider for one command of a batch ----------------------------------


@pytest.mark.parametrize(
    "bug",
    [
        pytest.param(RuntimeError("bug"), id="runtime-error"),
        pytest.param(
            IntegrityError("INSERT INTO x", {}, Exception(1062, "Duplicate entry")),
            id="integrity-error",
        ),
    ],
)
async def test_a_command_the_decider_fails_on_is_dead_lettered_alone(
    make_settings: StackFactory, bug: Exception
) -> None:
    assert not is_transient(bug)
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    decider = decider_group(settings)
    convention_id = await open_convention_with_quota(settings, 10)
    sent = [registration(convention_id, f"b{i}@example.org") for i in range(6)]
    envelopes = [command_envelope(command) for command, _ in sent]
    poisoned_envelope, (_, poisoned) = envelopes[2], sent[2]
    await send_commands(settings, *envelopes)

    async with running(build_projector(settings, "website")) as projector:
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"pending": 6},
            what="every registration shown pending",
        )
        faulty = BugOnOneRegistration(poisoned, bug)
        async with running(build_decider(settings, wrap_handler=faulty)) as task:
            result = await eventually(
                lambda: statuses(settings, convention_id),
                lambda s: s == {"confirmed": 5, "rejected:invalid": 1},
                what="five confirmed and the poisoned one answered invalid",
            )
            assert result == {"confirmed": 5, "rejected:invalid": 1}
            assert await registration_status(settings, poisoned) == ("rejected", "invalid")
            assert await outcome_of(settings, poisoned_envelope.message_id) == (
                "rejected",
                "invalid",
            )
            for envelope in envelopes[:2] + envelopes[3:]:
                assert await outcome_of(settings, envelope.message_id) == ("accepted", None)
            assert await sold(settings, convention_id) == 5
            assert not task.done(), "the decider stopped instead of dead-lettering"
            assert not projector.done()

    assert faulty.failed_batch_sizes, "the fault never struck"
    assert max(faulty.failed_batch_sizes) > 1, "the poisoned command was never in a batch"
    assert faulty.failed_batch_sizes[-1] == 1, "the poisoned command was not retried alone"

    letters = await read_topic(settings, topics.dead_letter)
    assert len(letters) == 1
    [letter] = letters
    assert letter.value == poisoned_envelope.encode()
    found = headers_of(letter)
    assert found[HEADER_ERROR] == str(bug)
    assert found[HEADER_ERROR_CLASS] == type(bug).__name__
    assert found[HEADER_SOURCE_TOPIC] == topics.registration_commands
    assert found[HEADER_CONSUMER_GROUP] == decider
    [command_record] = [
        c
        for c in await read_topic(settings, topics.registration_commands)
        if _registration_id(c) == str(poisoned)
    ]
    assert int(found[HEADER_SOURCE_PARTITION]) == command_record.partition
    assert int(found[HEADER_SOURCE_OFFSET]) == command_record.offset

    stored = await positions(settings.db.write_url, w.consumer_positions, decider)
    dead = {tp: row["dead_letters"] for tp, row in stored.items() if row["dead_letters"]}
    assert dead == {(topics.registration_commands, command_record.partition): 1}
    async with engine_for(settings.db.write_url) as engine:
        assert await count(engine, w.decided_commands) == 2 + 5
        assert await count(engine, w.registrations) == 5
        assert (
            await count(engine, w.registrations, w.registrations.c.registration_id == str(poisoned))
            == 0
        )
    events = await read_topic(settings, topics.registration_events)
    assert str(poisoned) not in {_registration_id(e) for e in events}
    assert len(events) == 2 + 5


async def test_a_command_projected_after_its_dead_letter_is_not_left_pending(
    make_settings: StackFactory,
) -> None:
    """The website projector reads the command topic and the dead-letter topic as separate
    partitions, so it may see a dead letter before the command it holds (the command
    partition lagging, or a rebuild replaying both topics from the start). The dead letter
    here carries exactly the headers the decider's consumer writes."""
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = uuid.uuid4()
    command, registration_id = registration(convention_id, "late@example.org")
    envelope = command_envelope(command)
    await produce(
        settings,
        topics.dead_letter,
        [
            (
                envelope.key,
                envelope.encode(),
                [
                    *envelope.headers(),
                    (HEADER_ERROR, b"bug"),
                    (HEADER_ERROR_CLASS, b"RuntimeError"),
                    (HEADER_SOURCE_TOPIC, topics.registration_commands.encode()),
                    (HEADER_SOURCE_PARTITION, b"0"),
                    (HEADER_SOURCE_OFFSET, b"0"),
                    (HEADER_CONSUMER_GROUP, decider_group(settings).encode()),
                ],
            )
        ],
    )
    async with running(build_projector(settings, "website")) as task:
        await eventually(
            lambda: outcome_of(settings, envelope.message_id),
            lambda o: o == ("rejected", "invalid"),
            what="the dead-lettered command answered invalid",
        )
        await send_commands(settings, envelope)
        status = await eventually(
            lambda: registration_status(settings, registration_id),
            lambda s: s is not None,
            what="the registration row projected",
        )
        assert not task.done()
    assert await outcome_of(settings, envelope.message_id) == ("rejected", "invalid")
    assert status == ("rejected", "invalid")


# --- 2. an event whose projection fails in the database ----------------------------------


def event_envelope(event: Event, causation_id: uuid.UUID | None = None) -> Envelope:
    return wrap(
        event,
        message_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=causation_id or uuid.uuid4(),
        key=registration_key(event.convention_id),
        actor="test",
    )


def registered(convention_id: uuid.UUID, email: str) -> tuple[AttendeeRegistered, uuid.UUID]:
    rid = uuid.uuid4()
    event = AttendeeRegistered(
        convention_id=convention_id,
        registration_id=rid,
        email=email,
        name="Someone",
        badge_type="STD",
        request_hash=f"h-{rid}",
    )
    return event, rid


async def test_a_dead_lettered_command_replayed_after_the_fix_is_decided(
    make_settings: StackFactory,
) -> None:
    """A dead-lettered command was never recorded as decided: once the bug is gone, `butterfly
    dlq replay` sends it back and it is decided, its `invalid` answer replaced by the real one."""
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 10)
    sent = [registration(convention_id, f"fix{i}@example.org") for i in range(3)]
    envelopes = [command_envelope(command) for command, _ in sent]
    poisoned_envelope, (_, poisoned) = envelopes[1], sent[1]
    await send_commands(settings, *envelopes)

    async with running(build_projector(settings, "website")):
        faulty = BugOnOneRegistration(poisoned, RuntimeError("bug"))
        async with running(build_decider(settings, wrap_handler=faulty)):
            await eventually(
                lambda: statuses(settings, convention_id),
                lambda s: s == {"confirmed": 2, "rejected:invalid": 1},
                what="the poisoned command answered invalid",
            )
        letters = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)
        assert [letter.value for letter in letters] == [poisoned_envelope.encode()]

        async with running(build_decider(settings)):
            assert await replay(settings.kafka_bootstrap_servers, letters) == 1
            await eventually(
                lambda: statuses(settings, convention_id),
                lambda s: s == {"confirmed": 3},
                what="the replayed command decided",
            )
        assert await outcome_of(settings, poisoned_envelope.message_id) == ("accepted", None)
        assert await sold(settings, convention_id) == 3
    async with engine_for(settings.db.write_url) as engine:
        assert await count(engine, w.decided_commands) == 2 + 3


async def test_an_event_the_read_model_refuses_is_dead_lettered_alone(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    projector_group = group_name(settings, "projector.website")
    convention_id = uuid.uuid4()
    created = ConventionCreated(
        convention_id=convention_id,
        name="Fault Con",
        starts_on=date(2027, 5, 1),
        ends_on=date(2027, 5, 3),
        badge_types=(BadgeTypeSpec(code="STD", name="Standard", price_cents=0, quota=10),),
        request_hash="test",
    )
    too_long = "x" * 288 + "@example.org"
    assert len(too_long) == 300  # the read model's column holds 254
    poison_event, poison_id = registered(convention_id, too_long)
    poison = event_envelope(poison_event)
    goods = [registered(convention_id, f"g{i}@example.org") for i in range(3)]
    good_envelopes = [event_envelope(event) for event, _ in goods]
    batch = [
        event_envelope(created),
        event_envelope(ConventionOpened(convention_id=convention_id)),
        good_envelopes[0],
        poison,
        good_envelopes[1],
        good_envelopes[2],
    ]
    await produce(
        settings, topics.registration_events, [(e.key, e.encode(), e.headers()) for e in batch]
    )

    async with running(build_projector(settings, "website")) as task:
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 3},
            what="the good registrations around the poison projected",
        )
        letters = await eventually(
            lambda: read_topic(settings, topics.dead_letter),
            lambda records: len(records) >= 1,
            what="the poison event dead-lettered",
        )
        later_event, later_id = registered(convention_id, "later@example.org")
        later = event_envelope(later_event)
        await produce(settings, topics.registration_events, [(later.key, later.encode(), [])])
        await eventually(
            lambda: registration_status(settings, later_id),
            lambda s: s == ("confirmed", None),
            what="an event after the poison projected",
        )
        assert await sold(settings, convention_id) == 4
        assert not task.done(), "the projector stopped instead of dead-lettering"

    assert len(letters) == 1
    [letter] = letters
    assert letter.value == poison.encode()
    found = headers_of(letter)
    assert found[HEADER_CONSUMER_GROUP] == projector_group
    assert found[HEADER_SOURCE_TOPIC] == topics.registration_events
    assert found[HEADER_ERROR_CLASS] == DataError.__name__
    assert "1406" in found[HEADER_ERROR] or "too long" in found[HEADER_ERROR].lower()
    [event_record] = [
        e
        for e in await read_topic(settings, topics.registration_events)
        if _registration_id(e) == str(poison_id)
    ]
    assert int(found[HEADER_SOURCE_PARTITION]) == event_record.partition
    assert int(found[HEADER_SOURCE_OFFSET]) == event_record.offset
    assert len(await read_topic(settings, topics.dead_letter)) == 1

    assert await registration_status(settings, poison_id) is None
    assert await outcome_of(settings, poison.causation_id or poison.message_id) is None
    for envelope in good_envelopes:
        assert await outcome_of(settings, envelope.causation_id or envelope.message_id) == (
            "accepted",
            None,
        )
    async with engine_for(settings.db.read_url) as engine:
        assert (
            await count(
                engine, r.applied_events, r.applied_events.c.event_id == str(poison.message_id)
            )
            == 0
        )
        assert await count(engine, r.applied_events) == len(batch) - 1 + 1
    stored = await positions(settings.db.read_url, r.consumer_positions, projector_group)
    tp = (topics.registration_events, event_record.partition)
    assert stored[tp]["dead_letters"] == 1
    assert stored[tp]["next_offset"] == event_record.offset + 3 + 1
    assert sum(row["dead_letters"] for row in stored.values()) == 1


# --- 3. transient faults ----------------------------------------------------------------


async def test_transient_faults_are_retried_in_place_without_a_rebalance(
    make_settings: StackFactory,
) -> None:
    assert is_transient(lost_connection())
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    group = decider_group(settings)
    convention_id = await open_convention_with_quota(settings, 10)
    envelopes = [
        command_envelope(registration(convention_id, f"t{i}@example.org")[0]) for i in range(4)
    ]
    await send_commands(settings, *envelopes)

    flaky = LosesTheConnectionAtFirst(faults=3)
    role = build_decider(settings, wrap_handler=flaky)
    async with running(build_projector(settings, "website")), running(role) as task:
        first = await eventually(
            lambda: owned(role), lambda o: len(o) == 3, what="the decider owns every partition"
        )
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 4},
            what="every registration decided",
        )
        assert flaky.raised == 3
        assert flaky.calls > 3
        assert not task.done(), "the decider stopped on a transient fault"
        assert await owned(role) == first, "the decider lost or re-claimed a partition"

    assert set(first.values()) == {1}
    stored = await positions(settings.db.write_url, w.consumer_positions, group)
    assert {tp: row["epoch"] for tp, row in stored.items()} == {
        (tp.topic, tp.partition): epoch for tp, epoch in first.items()
    }
    assert sum(row["dead_letters"] for row in stored.values()) == 0
    assert await read_topic(settings, topics.dead_letter) == []
    async with engine_for(settings.db.write_url) as engine:
        assert await count(engine, w.decided_commands) == 2 + 4
        assert await count(engine, w.registrations) == 4
        assert await count(engine, w.outbox, w.outbox.c.published_at.is_(None)) == 0
    events = await read_topic(settings, topics.registration_events)
    ids = [json.loads(e.value)["message_id"] for e in events]
    assert len(ids) == len(set(ids)) == 2 + 4
    assert await sold(settings, convention_id) == 4


# --- 4. health --------------------------------------------------------------------------


async def test_health_names_a_stalled_partition_until_its_consumer_catches_up(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(stall_seconds=1.0)
    topics = Topics(settings.topic_prefix)
    group = decider_group(settings)
    watch = build_consumer_watch(settings, make_engine(settings.db.read_url, pool_size=2))

    async def decider_progress() -> list[PartitionProgress]:
        return [p for p in await watch.progress() if p.group == group]

    try:
        convention_id = await open_convention_with_quota(settings, 10)
        await send_commands(
            settings,
            *(
                command_envelope(registration(convention_id, f"h{i}@example.org")[0])
                for i in range(3)
            ),
        )
        [sent] = {c.partition for c in await read_topic(settings, topics.registration_commands)}

        first = await decider_progress()
        assert {p.partition for p in first} == {0, 1, 2}
        lagging = [p for p in first if p.lag > 0]
        assert [p.partition for p in lagging] == [sent]
        assert not any(p.stalled for p in first), "the first look only starts the clock"

        stalled = await eventually(
            decider_progress,
            lambda ps: any(p.stalled for p in ps),
            timeout=10,
            interval=0.2,
            what="the lagging partition called stalled",
        )
        assert [(p.partition, p.lag > 0) for p in stalled if p.stalled] == [(sent, True)]
        assert all(p.progress_at is None and p.dead_letters == 0 for p in stalled)
        assert [p.as_json()["stalled"] for p in stalled if p.partition == sent] == [True]

        await produce(
            settings, topics.registration_commands, [(str(convention_id), b"not json", [])]
        )
        async with running(build_decider(settings)) as task:
            caught_up = await eventually(
                decider_progress,
                lambda ps: (
                    all(p.lag == 0 and not p.stalled for p in ps)
                    and sum(p.dead_letters for p in ps) == 1
                ),
                timeout=20,
                interval=0.1,
                what="the decider caught up, one dead letter counted",
            )
            assert not task.done()
        assert {p.partition: p.dead_letters for p in caught_up} == {
            p: int(p == sent) for p in (0, 1, 2)
        }
        moved = next(p for p in caught_up if p.partition == sent)
        assert moved.progress_at is not None
        assert moved.next_offset == 2 + 3 + 1
        assert moved.as_json()["dead_letters"] == 1
        assert moved.as_json()["lag"] == 0
    finally:
        await watch.close()
