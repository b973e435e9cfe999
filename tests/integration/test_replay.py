"""`butterfly replay` on a real broker and MariaDB: green tables built while the projectors
run and registrations keep coming, swapped in with equal checksums, readers never seeing an
empty read model, and the projectors going on after the swap without applying twice."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from infra.bootstrap import build_decider, build_projector
from infra.settings import Settings
from projections.orders import tables as o
from projections.progress import Progress
from projections.replay import replay
from projections.reporting import tables as reporting_tables
from projections.website import tables as r
from schemas.checkin import CheckInAttendee
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
    statuses,
)

pytestmark = pytest.mark.integration


async def _databases(settings: Settings, like: str) -> set[str]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(text("SHOW DATABASES LIKE :like"), {"like": like})
        return set(rows.scalars())


async def _tables(settings: Settings, database: str) -> set[str]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :db"),
            {"db": database},
        )
        return set(rows.scalars())


async def test_a_replay_swaps_in_equal_tables_while_the_projectors_run(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    read_db = settings.db.read_url.database
    assert read_db is not None
    convention_id = await open_convention_with_quota(settings, 1000)
    first = [registration(convention_id, f"a{i}@x.org") for i in range(10)]
    await send_commands(settings, *(command_envelope(command) for command, _ in first))
    # Each attendee scanned at two doors, the later scan first: checked in, then superseded.
    await send_commands(
        settings,
        *(
            command_envelope(
                CheckInAttendee(
                    convention_id=convention_id,
                    registration_id=rid,
                    ticket_serial=0,
                    station=station,
                    scanned_at=datetime(2027, 5, 1, 9, minute, tzinfo=UTC),
                    scan_id=uuid.uuid4(),
                )
            )
            for _, rid in first
            for station, minute in (("Door B", 5), ("Door A", 1))
        ),
    )
    seen: list[int] = []
    sent = 10
    stop = asyncio.Event()

    async def read_meanwhile() -> None:
        async with engine_for(settings.db.read_url) as engine:
            while not stop.is_set():
                seen.append(await count(engine, r.registrations))
                await asyncio.sleep(0.005)

    async def register_meanwhile() -> None:
        nonlocal sent
        while not stop.is_set():
            await send_commands(
                settings, command_envelope(registration(convention_id, f"b{sent}@x.org")[0])
            )
            sent += 1
            await asyncio.sleep(0.02)

    stderr = io.StringIO()
    async with (
        running(build_decider(settings)),
        running(build_projector(settings, "website")),
        running(build_projector(settings, "orders")),
    ):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 10},
            what="the first registrations",
        )
        meanwhile = [
            asyncio.create_task(read_meanwhile()),
            asyncio.create_task(register_meanwhile()),
        ]
        try:
            website = await replay(settings, "website", progress=Progress("replay ", stream=stderr))
            orders = await replay(settings, "orders", drop_old=True)
        finally:
            stop.set()
            await asyncio.gather(*meanwhile)
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": sent},
            what="every registration confirmed after the swaps",
        )

    assert website.swapped
    assert website.equal, website.checks
    assert {check.table for check in website.checks} == {
        t.name for t in r.metadata.sorted_tables if t.name != "consumer_positions"
    }
    registrations = next(c for c in website.checks if c.table == "registrations")
    assert registrations.live_rows >= 10
    assert registrations.live_checksum is not None
    scans = next(c for c in website.checks if c.table == "check_in_scans")
    assert scans.live_rows == 20
    assert "records/s" in stderr.getvalue().splitlines()[-1]
    assert min(seen) >= 10, "a reader saw the registrations table empty or partly built"
    assert website.old is not None
    assert "registrations" in await _tables(settings, website.old)
    assert orders.swapped
    assert orders.equal, orders.checks
    assert orders.old is None

    events = await read_topic(settings, Topics(settings.topic_prefix).registration_events)
    event_ids = {json.loads(e.value)["message_id"] for e in events}
    async with engine_for(settings.db.read_url) as engine:
        assert await count(engine, r.applied_events) == len(event_ids)
        assert await count(engine, o.applied_events) == len(event_ids)
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{website.old}`"))
    assert await _databases(settings, f"{read_db}\\_green\\_%") == set()
    assert await _databases(settings, f"{read_db}\\_old\\_%") == set()


async def test_a_replay_that_differs_from_the_live_tables_swaps_nothing(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    convention_id = await open_convention_with_quota(settings, 5)
    await send_commands(
        settings,
        *(command_envelope(registration(convention_id, f"c{i}@x.org")[0]) for i in range(3)),
    )
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 3},
            what="the registrations",
        )
    async with engine_for(settings.db.read_url) as engine, engine.begin() as conn:
        await conn.execute(r.registrations.update().values(name="Tampered"))

    report = await replay(settings, "website")

    assert not report.swapped
    assert report.old is None
    assert report.green is not None
    assert {c.table for c in report.checks if not c.equal} == {"registrations"}
    assert await _tables(settings, report.green) >= {"registrations", "consumer_positions"}
    async with engine_for(settings.db.read_url) as engine:
        assert await count(engine, r.registrations, r.registrations.c.name == "Tampered") == 3
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{report.green}`"))


async def test_the_reporting_database_is_replayed_and_analysts_keep_reading_it(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    convention_id = await open_convention_with_quota(settings, 5)
    attendees = [registration(convention_id, f"r{i}@x.org") for i in range(8)]
    await send_commands(settings, *(command_envelope(command) for command, _ in attendees))
    async with (
        running(build_decider(settings)),
        running(build_projector(settings, "reporting")),
    ):
        await eventually(
            lambda: _fact_statuses(settings, convention_id),
            lambda s: s == {"confirmed": 5, "rejected": 3},
            what="the registrations in the star schema",
        )
        report = await replay(settings, "reporting", drop_old=True)

    assert report.swapped
    assert report.equal, report.checks
    assert {check.table for check in report.checks} == {
        t.name for t in reporting_tables.metadata.sorted_tables if t.name != "consumer_positions"
    }
    archive = next(c for c in report.checks if c.table == "event_archive")
    assert archive.live_rows >= 10
    analyst = settings.db.reporting_url.set(username="analyst", password=settings.analyst_password)
    async with engine_for(analyst) as engine, engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT COUNT(*) FROM fact_registrations WHERE convention_id = :c"),
            {"c": str(convention_id)},
        )
        assert rows.scalar_one() == 8


async def _fact_statuses(settings: Settings, convention_id: uuid.UUID) -> dict[str, int]:
    async with engine_for(settings.db.reporting_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status, COUNT(*) FROM fact_registrations WHERE convention_id = :c "
                "GROUP BY status"
            ),
            {"c": str(convention_id)},
        )
        return {status: int(n) for status, n in rows}
