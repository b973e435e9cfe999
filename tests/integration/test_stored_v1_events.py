"""Stored version-1 events replay on a real broker: the website projector reads them off
the event topic, upcast, into the read model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from infra.bootstrap import build_projector
from projections.website import tables as r
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import engine_for, eventually, produce, running

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "registration_events_v1.jsonl"


async def test_the_website_projector_projects_stored_v1_events(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    records = []
    for line in FIXTURE.read_bytes().splitlines():
        stored = json.loads(line)
        headers = [
            ("type", stored["type"].encode()),
            ("correlation_id", stored["correlation_id"].encode()),
            ("schema_version", b"1"),
        ]
        records.append((stored["key"], line, headers))
    await produce(settings, Topics(settings.topic_prefix).registration_events, records)

    async with (
        running(build_projector(settings, "website")),
        engine_for(settings.db.read_url) as engine,
    ):

        async def statuses() -> Counter[str]:
            async with engine.connect() as conn:
                rows = await conn.execute(select(r.registrations.c.status))
                return Counter(row.status for row in rows)

        await eventually(
            statuses,
            lambda found: found == {"confirmed": 3, "rejected": 2, "cancelled": 1},
            what="the v1 registrations projected",
        )
        async with engine.connect() as conn:
            badges = await conn.execute(
                select(r.badge_types.c.code, r.badge_types.c.quota, r.badge_types.c.sold)
            )
            assert sorted(tuple(row) for row in badges) == [("STD", 2, 2), ("VIP", 1, 1)]
            [status] = (await conn.execute(select(r.conventions.c.status))).scalars()
            assert status == "open"
