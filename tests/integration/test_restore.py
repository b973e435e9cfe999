"""A wiped broker refilled from the event archive: the read models, the decider's state and the
archive are what they were, nothing is applied twice, and the next registrations are decided
where the old ones left off (no seat sold again). A dry run changes nothing."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, inspect, select, update
from sqlalchemy.engine import URL

from infra.bootstrap import build_decider, build_projector, group_name
from infra.restore import RestoreRefused, nonempty_partitions, restore, topic_partitions
from infra.services import EmbeddedBroker, free_port
from infra.settings import Settings
from producers.kafka import make_producer
from projections.reporting import tables as reporting_tables
from projections.website import tables as r
from schemas.envelope import decode_envelope
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    open_convention_with_quota,
    read_topic,
    registration,
    running,
    send_commands,
    sold,
    statuses,
)

pytestmark = pytest.mark.integration

PROJECTORS = ("website", "orders", "reporting")


@asynccontextmanager
async def the_pipeline(settings: Settings) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(build_decider(settings)))
        for name in PROJECTORS:
            await stack.enter_async_context(running(build_projector(settings, name)))
        yield


async def _table_rows(url: URL) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table but the consumer positions, as sorted text; the archive
    without its offsets, which a restore rewrites to the refilled topics' own."""
    async with engine_for(url) as engine, engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        rows: dict[str, list[tuple[str, ...]]] = {}
        for name in sorted(set(names) - {"consumer_positions", "alembic_version"}):
            table = await conn.run_sync(
                lambda sync, n=name: Table(n, MetaData(), autoload_with=sync)  # type: ignore[misc]
            )
            columns = [c for c in table.c if c.name != "source_offset"]
            result = await conn.execute(select(*columns))
            rows[name] = sorted(tuple(str(v) for v in row) for row in result)
        return rows


async def snapshot(settings: Settings) -> dict[str, dict[str, list[tuple[str, ...]]]]:
    return {
        "write": await _table_rows(settings.db.write_url),
        "read": await _table_rows(settings.db.read_url),
        "reporting": await _table_rows(settings.db.reporting_url),
    }


async def positions(settings: Settings) -> dict[tuple[str, str, str, int], int]:
    found = {}
    for database, url in (
        ("write", settings.db.write_url),
        ("read", settings.db.read_url),
        ("reporting", settings.db.reporting_url),
    ):
        async with engine_for(url) as engine, engine.connect() as conn:
            t = r.consumer_positions.c
            for row in await conn.execute(
                select(t.group_name, t.topic, t.partition_no, t.next_offset)
            ):
                found[(database, row.group_name, row.topic, int(row.partition_no))] = int(
                    row.next_offset
                )
    return found


async def settled(settings: Settings) -> bool:
    """Every projector has read every event on the registration events topic."""
    topic = Topics(settings.topic_prefix).registration_events
    ends: dict[int, int] = {}
    records = await read_topic(settings, topic)
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    stored = await positions(settings)
    for name in PROJECTORS:
        group = group_name(settings, f"projector.{name}")
        reached = {p: o for (_, g, t, p), o in stored.items() if g == group and t == topic}
        if any(reached.get(p, 0) < end for p, end in ends.items()):
            return False
    async with engine_for(settings.db.reporting_url) as engine:
        archived = await count(engine, reporting_tables.event_archive)
    return archived == len({decode_envelope(record.value).message_id for record in records})


async def dry_run_cli(settings: Settings) -> str:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
        "BUTTERFLY_DB_PREFIX": settings.db_prefix,
        "BUTTERFLY_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        "restore",
        "--dry-run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_a_wiped_broker_is_refilled_from_the_archive(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings(partitions=2)
    first = await open_convention_with_quota(settings, 5)
    second = await open_convention_with_quota(settings, 1)
    taken = [registration(first, f"early{i}@example.org") for i in range(3)]
    taken.append(registration(second, "only@example.org"))
    await send_commands(settings, *(command_envelope(command) for command, _ in taken))
    async with the_pipeline(settings):
        await eventually(
            lambda: statuses(settings, first), lambda s: s == {"confirmed": 3}, what="decisions"
        )
        await eventually(lambda: settled(settings), bool, what="every projector at the end")
        await republish_first_event(settings, first)
        fourth, _ = registration(first, "fourth@example.org")
        await send_commands(settings, command_envelope(fourth))
        await eventually(
            lambda: statuses(settings, first), lambda s: s == {"confirmed": 4}, what="the 4th"
        )
        await eventually(lambda: settled(settings), bool, what="every projector at the end")
    before = await snapshot(settings)
    behind = group_name(settings, "projector.orders")
    await set_back(settings, behind)
    stored = await positions(settings)
    events = await count_events(settings)

    broker = EmbeddedBroker(free_port(), tmp_path / "tansu.log")
    await broker.start()
    try:
        wiped = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})

        printed = await dry_run_cli(wiped)
        assert f"would restore {events} event(s)" in printed
        assert "projector.website" in printed
        assert await topic_partitions(broker.bootstrap, Topics(wiped.topic_prefix).all()) == {}
        assert await positions(wiped) == stored
        assert await snapshot(wiped) == before

        report = await restore(wiped)
        assert report.events == events
        moved = await positions(wiped)
        topics = Topics(wiped.topic_prefix)
        for (database, group, topic, partition), offset in moved.items():
            restored = report.partitions.get((topic, partition), 0)
            if topic == topics.registration_events and group == behind:
                assert offset == min(1, restored), (group, topic, partition)
            elif topic == topics.registration_events:
                assert offset == restored, (group, topic, partition)
            else:
                assert offset == 0, (database, group, topic, partition)
        assert await snapshot(wiped) == before
        assert await archived_offsets(wiped) == await topic_offsets(wiped)
        with pytest.raises(RestoreRefused, match="already hold records"):
            await restore(wiped)

        async with the_pipeline(wiped):
            await eventually(lambda: settled(wiped), bool, what="the restarted roles to claim")
            await asyncio.sleep(1)
            assert await snapshot(wiped) == before, "a restored event was applied again"

            late, _ = registration(first, "late@example.org")
            again, _ = registration(first, "early0@example.org")
            over, _ = registration(first, "over@example.org")
            await send_commands(wiped, command_envelope(late))
            await eventually(
                lambda: statuses(wiped, first),
                lambda s: s == {"confirmed": 5},
                what="the next registration",
            )
            await send_commands(wiped, command_envelope(again), command_envelope(over))
            await eventually(
                lambda: statuses(wiped, first),
                lambda s: (
                    s == {"confirmed": 5, "rejected:already_registered": 1, "rejected:sold_out": 1}
                ),
                what="the registrations after it",
            )
            assert await sold(wiped, first) == 5
            assert await sold(wiped, second) == 1
            await eventually(lambda: settled(wiped), bool, what="every projector at the end")
        assert await count_events(wiped) > events
        assert await nonempty_partitions(broker.bootstrap, topics.event_topics())
    finally:
        broker.stop()


async def count_events(settings: Settings) -> int:
    async with engine_for(settings.db.reporting_url) as engine:
        return await count(engine, reporting_tables.event_archive)


async def republish_first_event(settings: Settings, convention_id: uuid.UUID) -> None:
    """What a relay does after a crash between commit and publish: the same event twice on
    its partition. The archive keeps it once, so the refilled partition is one shorter and
    every later offset moves."""
    topic = Topics(settings.topic_prefix).registration_events
    records = await read_topic(settings, topic)
    original = next(r for r in records if r.key == str(convention_id).encode())
    producer = make_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value=original.value,
            key=original.key,
            headers=list(original.headers),
            partition=original.partition,
        )
    finally:
        await producer.stop()


async def archived_offsets(settings: Settings) -> dict[str, tuple[int, int]]:
    a = reporting_tables.event_archive.c
    async with engine_for(settings.db.reporting_url) as engine, engine.connect() as conn:
        rows = await conn.execute(select(a.event_id, a.partition_no, a.source_offset))
        return {row.event_id: (int(row.partition_no), int(row.source_offset)) for row in rows}


async def topic_offsets(settings: Settings) -> dict[str, tuple[int, int]]:
    topic = Topics(settings.topic_prefix).registration_events
    return {
        str(decode_envelope(record.value).message_id): (record.partition, record.offset)
        for record in await read_topic(settings, topic)
    }


async def set_back(settings: Settings, group: str) -> None:
    """A projector that had read only the first event of each partition: it stands before
    the second one after the restore, and reads the rest again without applying them twice."""
    t = r.consumer_positions
    async with engine_for(settings.db.read_url) as engine, engine.begin() as conn:
        await conn.execute(
            update(t)
            .where(
                t.c.group_name == group,
                t.c.topic == Topics(settings.topic_prefix).registration_events,
            )
            .values(next_offset=1)
        )
