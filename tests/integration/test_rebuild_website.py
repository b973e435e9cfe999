"""The fast website rebuild on a real broker and MariaDB: the same rows as the projector
wrote, and positions a projector started afterwards resumes from without doubles or gaps."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from infra.bootstrap import build_decider, build_projector, group_name
from infra.settings import Settings
from projections.progress import Progress
from projections.rebuild import rebuild_website
from projections.website import tables as r
from schemas.registration import CancelRegistration, RegisterAttendee
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.integration.test_pipeline import _snapshot
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


async def _positions(settings: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    group = group_name(settings, "projector.website")
    p = r.consumer_positions.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            select(p.topic, p.partition_no, p.next_offset, p.epoch).where(p.group_name == group)
        )
        return {(row.topic, row.partition_no): (row.next_offset, row.epoch) for row in rows}


async def test_the_rebuild_writes_the_projected_rows_and_the_projector_resumes_after_it(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 2)
    decided = [registration(convention_id, f"d{i}@example.org") for i in range(3)]
    invalid = RegisterAttendee.model_construct(
        **{**registration(convention_id, "x@example.org")[0].model_dump(), "email": "no address"}
    )
    await send_commands(
        settings, *(command_envelope(c) for c, _ in decided), command_envelope(invalid)
    )
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 2, "rejected:sold_out": 1},
            what="decisions",
        )
        cancel = CancelRegistration(convention_id=convention_id, registration_id=decided[0][1])
        await send_commands(settings, command_envelope(cancel))
        await eventually(
            lambda: sold(settings, convention_id), lambda n: n == 1, what="the cancellation"
        )
        await eventually(
            lambda: read_topic(settings, topics.dead_letter),
            lambda letters: len(letters) == 1,
            what="the invalid command dead-lettered",
        )
    waiting, _ = registration(convention_id, "waiting@example.org")
    async with running(build_projector(settings, "website")):
        await send_commands(settings, command_envelope(waiting))
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s.get("pending") == 1,
            what="the undecided registration shown pending",
        )
        await eventually(
            lambda: _outcome_reasons(settings),
            lambda reasons: "invalid" in reasons,
            what="the invalid command answered",
        )
    before = await _snapshot(settings)
    positions_before = await _positions(settings)

    stderr = io.StringIO()
    report = await rebuild_website(settings, progress=Progress("rebuild ", stream=stderr))

    assert await _snapshot(settings) == before
    events = await read_topic(settings, topics.registration_events)
    assert report.events == len(events)
    assert report.records == report.events + 8 + 1
    assert report.set_aside == 0
    assert "records/s" in stderr.getvalue().splitlines()[-1]
    positions_after = await _positions(settings)
    assert {tp: offset for tp, (offset, _) in positions_after.items()} == {
        tp: offset
        for tp, (offset, _) in positions_before.items()
        if offset or tp in positions_after
    }
    assert all(positions_after[tp][1] == epoch + 1 for tp, (_, epoch) in positions_before.items())

    later, _ = registration(convention_id, "later@example.org")
    await send_commands(settings, command_envelope(later))
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        result = await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: "pending" not in s and sum(s.values()) == 5,
            what="the undecided and the later registration decided",
        )
    assert result == {"confirmed": 2, "cancelled": 1, "rejected:sold_out": 2}
    assert await sold(settings, convention_id) == 2
    events = await read_topic(settings, topics.registration_events)
    async with engine_for(settings.db.read_url) as engine:
        assert await count(engine, r.applied_events) == len(
            {json.loads(e.value)["message_id"] for e in events}
        )


async def _outcome_reasons(settings: Settings) -> set[str | None]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        return set((await conn.execute(select(r.command_outcomes.c.reason))).scalars())


async def test_a_rebuild_of_empty_topics_writes_no_rows(make_settings: StackFactory) -> None:
    settings = await make_settings(partitions=1)
    report = await rebuild_website(settings)
    assert (report.records, report.events, report.rows) == (0, 0, 0)
    assert {offset for offset, _ in (await _positions(settings)).values()} == {0}
