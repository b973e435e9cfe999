"""The exactly-once pipeline on a real broker and MariaDB: decider, outbox, projector."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition
from sqlalchemy import select, update

from consumers.registration import tables as w
from infra.bootstrap import build_decider, build_projector
from infra.pipeline.exactly_once import (
    BatchHandler,
    HandledBatch,
    OffsetBeyondEnd,
    PositionStore,
    Record,
)
from infra.settings import Settings
from projections.rebuild import reset_projection
from projections.website import tables as r
from schemas.envelope import HEADER_CONSUMER_GROUP, HEADER_ERROR, HEADER_SOURCE_OFFSET
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    open_convention,
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


async def test_a_rush_confirms_exactly_the_quota(make_settings: StackFactory) -> None:
    settings = await make_settings()
    convention_id = await open_convention_with_quota(settings, 3)
    emails = [f"p{i}@example.org" for i in range(8)] + ["P1@example.org"]
    await send_commands(
        settings, *(command_envelope(registration(convention_id, e)[0]) for e in emails)
    )
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        result = await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: sum(s.values()) == len(emails) and "pending" not in s,
            what="every registration decided",
        )
    assert result == {"confirmed": 3, "rejected:sold_out": 5, "rejected:already_registered": 1}
    assert await sold(settings, convention_id) == 3


async def test_redelivered_commands_and_events_change_nothing(make_settings: StackFactory) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 5)
    command, registration_id = registration(convention_id, "once@example.org")
    envelope = command_envelope(command)
    await send_commands(settings, envelope, envelope)

    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(lambda: sold(settings, convention_id), lambda n: n == 1, what="sold 1")
        await send_commands(settings, envelope)
        events = await eventually(
            lambda: read_topic(settings, topics.registration_events),
            lambda records: len(records) >= 3,
            what="three events",
        )
        registered = [e for e in events if dict(e.headers)["type"] == b"AttendeeRegistered"]
        assert len(registered) == 1
        await produce(
            settings,
            topics.registration_events,
            [(registered[0].key.decode(), registered[0].value, list(registered[0].headers))],
        )
        marker, _ = registration(convention_id, "later@example.org")
        await send_commands(settings, command_envelope(marker))
        await eventually(
            lambda: sold(settings, convention_id),
            lambda n: n == 2,
            what="the later registration counted",
        )

    async with engine_for(settings.db.write_url) as engine:
        assert await count(engine, w.decided_commands) == 4
        assert await count(engine, w.registrations) == 2
    assert await sold(settings, convention_id) == 2
    assert await statuses(settings, convention_id) == {"confirmed": 2}
    events = await read_topic(settings, topics.registration_events)
    ids = [json.loads(e.value)["message_id"] for e in events]
    assert len(ids) == 5
    assert len(set(ids)) == 4
    assert str(registration_id) in {
        json.loads(e.value)["payload"].get("registration_id") for e in events
    }


class CrashAfterCommit:
    """Dies after the database commit and before the events are published or Kafka commits."""

    def __init__(self, inner: BatchHandler) -> None:
        self.inner = inner

    async def handle(
        self, conn: object, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        handled = await self.inner.handle(conn, tp, records)  # type: ignore[arg-type]

        async def crash() -> None:
            raise RuntimeError("killed between the database commit and the Kafka commit")

        return HandledBatch(handled.dead_letters, crash if handled.after_commit else None)


async def test_a_decider_killed_after_its_commit_resumes_without_loss_or_doubles(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 2)
    envelopes = [
        command_envelope(registration(convention_id, f"k{i}@example.org")[0]) for i in range(4)
    ]
    await send_commands(settings, *envelopes)

    crashing = build_decider(settings, wrap_handler=CrashAfterCommit)
    with pytest.raises(RuntimeError, match="killed between"):
        async with running(crashing) as task:
            await asyncio.wait_for(task, 60)
    async with engine_for(settings.db.write_url) as engine:
        decided = await count(engine, w.decided_commands)
        assert decided >= 2
        assert await count(engine, w.outbox, w.outbox.c.published_at.is_(None)) >= 1

    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 2, "rejected:sold_out": 2},
            what="every registration decided once",
        )
    async with engine_for(settings.db.write_url) as engine:
        assert await count(engine, w.decided_commands) == 6
        assert await count(engine, w.outbox, w.outbox.c.published_at.is_(None)) == 0
    events = await read_topic(settings, topics.registration_events)
    ids = [json.loads(e.value)["message_id"] for e in events]
    assert len(set(ids)) == 6
    assert await sold(settings, convention_id) == 2


async def test_a_poison_message_goes_to_the_dead_letter_topic(make_settings: StackFactory) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 2)
    key = str(convention_id)
    await produce(
        settings,
        topics.registration_commands,
        [
            (key, b"\xff not json at all", []),
            (key, json.dumps({"message_id": "nope"}).encode(), []),
            (
                key,
                command_envelope(open_convention(convention_id))
                .encode()
                .replace(b'"OpenConvention"', b'"LaunchRockets"'),
                [],
            ),
        ],
    )
    good, _ = registration(convention_id, "after@example.org")
    await send_commands(settings, command_envelope(good))
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 1},
            what="the good command decided",
        )
        letters = await eventually(
            lambda: read_topic(settings, topics.dead_letter),
            lambda records: len(records) >= 3,
            what="dead letters",
        )
    by_group: dict[bytes, list[Record]] = {}
    for letter in letters:
        by_group.setdefault(dict(letter.headers)[HEADER_CONSUMER_GROUP], []).append(letter)
    assert list(by_group) == [f"{settings.topic_prefix}decider.registration".encode()], (
        "commands are dead-lettered by the decider alone, not again by the website projector"
    )
    dead = by_group[f"{settings.topic_prefix}decider.registration".encode()]
    assert len(dead) == 3
    errors = [dict(d.headers)[HEADER_ERROR].decode() for d in dead]
    assert any("not JSON" in e for e in errors)
    assert any("invalid envelope" in e for e in errors)
    assert any("LaunchRockets" in e for e in errors)
    assert all(HEADER_SOURCE_OFFSET in dict(d.headers) for d in dead)


async def test_a_fenced_out_zombie_cannot_write(make_settings: StackFactory) -> None:
    settings = await make_settings(partitions=1)
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 5)
    zombie = build_decider(settings)
    async with running(zombie), running(build_projector(settings, "website")):
        await eventually(
            lambda: _owned(zombie),
            lambda owned: len(owned) == 1,
            what="the decider owns the partition",
        )
        await eventually(
            lambda: _convention_status(settings, convention_id),
            lambda s: s == "open",
            what="convention open",
        )
        tp = TopicPartition(topics.registration_commands, 0)
        async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
            await PositionStore(w.consumer_positions, zombie.consumer.config.group).claim(conn, tp)
        command, _ = registration(convention_id, "zombie@example.org")
        await send_commands(settings, command_envelope(command))
        await eventually(
            lambda: _owned(zombie),
            lambda owned: not owned,
            what="the zombie gives the partition up",
        )
        async with engine_for(settings.db.write_url) as engine:
            assert await count(engine, w.registrations) == 0
            assert await count(engine, w.decided_commands) == 2


async def _owned(role: object) -> dict[TopicPartition, int]:
    return role.consumer.owned  # type: ignore[attr-defined,no-any-return]


async def _convention_status(settings: Settings, convention_id: uuid.UUID) -> str | None:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        value = (
            await conn.execute(
                select(r.conventions.c.status).where(
                    r.conventions.c.convention_id == str(convention_id)
                )
            )
        ).scalar_one_or_none()
    return None if value is None else str(value)


async def _snapshot(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        snapshot = {}
        for table in (
            r.conventions,
            r.badge_types,
            r.registrations,
            r.check_in_scans,
            r.command_outcomes,
            r.applied_events,
        ):
            rows = (await conn.execute(select(table))).all()
            snapshot[table.name] = sorted(tuple(row) for row in rows)
    return snapshot


async def test_dropping_the_read_model_and_replaying_rebuilds_the_same_rows(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    convention_id = await open_convention_with_quota(settings, 2)
    await send_commands(
        settings,
        *(command_envelope(registration(convention_id, f"r{i}@x.org")[0]) for i in range(4)),
    )
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 2, "rejected:sold_out": 2},
            what="decisions",
        )
    before = await _snapshot(settings)
    assert len(before["registrations"]) == 4

    await reset_projection(settings, "website")
    assert (await _snapshot(settings))["registrations"] == []
    async with running(build_projector(settings, "website")):
        after = await eventually(
            lambda: _snapshot(settings),
            lambda s: s == before,
            timeout=30,
            what="the rebuilt read model to equal the original",
        )
    assert after == before


async def test_a_position_beyond_the_end_of_a_partition_stops_the_consumer(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    topics = Topics(settings.topic_prefix)
    group = f"{settings.topic_prefix}projector.website"
    async with engine_for(settings.db.read_url) as engine, engine.begin() as conn:
        for topic in (topics.registration_events, topics.registration_commands):
            await PositionStore(r.consumer_positions, group).claim(conn, TopicPartition(topic, 0))
        await conn.execute(update(r.consumer_positions).values(next_offset=1000))
    with pytest.raises(OffsetBeyondEnd, match="broker ends at"):
        async with running(build_projector(settings, "website")) as task:
            await asyncio.wait_for(task, 60)
