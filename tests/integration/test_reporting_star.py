"""The reporting projector on a real broker and MariaDB: the registration decider's events
and lodging events become the star schema, each once; the example queries of
docs/REPORTING.md answer with the expected figures; and the `analyst` database user reads
the star schema but neither the archive nor anything it could write."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from infra.bootstrap import build_decider, build_projector
from infra.pipeline.exactly_once import DeadLetter
from infra.settings import Settings
from projections.reporting import tables as t
from projections.reporting.archive import EventArchiver
from projections.reporting.erd import DOC
from schemas.envelope import Envelope
from schemas.lodging import (
    BlockNight,
    HotelInventory,
    HotelInventorySynced,
    RoomHeld,
    RoomTypeBlock,
    Stay,
)
from schemas.orders import RecordPayment
from schemas.registration import (
    BadgeTypeSpec,
    ConventionCreated,
    ConventionOpened,
    CreateConvention,
    Message,
)
from schemas.registry import wrap
from schemas.topics import Topics, lodging_key
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    open_convention,
    produce,
    registration,
    running,
    send_commands,
)

pytestmark = pytest.mark.integration


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def lodging_event(message: Message) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    envelope = wrap(
        message,
        message_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        key=lodging_key(message.convention_id),
        actor="test",
    )
    return envelope.key, envelope.encode(), envelope.headers()


async def rows(settings: Settings, sql: str, convention: uuid.UUID) -> list[tuple[Any, ...]]:
    async with engine_for(settings.db.reporting_url) as engine, engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql.replace("'…'", f"'{convention}'")))]


async def test_events_become_the_star_schema_the_examples_answer_and_analysts_only_read(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    topics = Topics(settings.topic_prefix)
    create = CreateConvention(
        convention_id=uuid.uuid4(),
        name="Report Con",
        starts_on=date(2027, 5, 1),
        ends_on=date(2027, 5, 3),
        badge_types=(
            BadgeTypeSpec(code="STD", name="Standard", price_cents=4000, quota=10),
            BadgeTypeSpec(code="FREE", name="Volunteer", price_cents=0, quota=10),
        ),
        request_hash="report",
    )
    convention = create.convention_id
    paid_ones = [registration(convention, f"payer{i}@example.org") for i in range(2)]
    unpaid, _ = registration(convention, "late@example.org")
    free, _ = registration(convention, "helper@example.org")
    free = free.model_copy(update={"badge_type": "FREE"})
    await send_commands(
        settings,
        command_envelope(create),
        command_envelope(open_convention(convention)),
        *(command_envelope(c) for c, _ in paid_ones),
        command_envelope(unpaid),
        command_envelope(free),
    )
    stay = Stay(
        room_type="DBL", check_in=date(2027, 4, 30), check_out=date(2027, 5, 3), guests=("A",)
    )
    block = RoomTypeBlock(
        code="DBL",
        description="Double",
        nights=tuple(
            BlockNight(
                night=date(2027, 4, 30 + i) if i == 0 else date(2027, 5, i),
                size=10,
                booked=0,
                rate_cents=9000,
            )
            for i in range(3)
        ),
    )
    await produce(
        settings,
        topics.lodging_events,
        [
            lodging_event(
                HotelInventorySynced(
                    convention_id=convention,
                    sync_id=uuid.uuid4(),
                    hotels=(HotelInventory(code="GRAND", name="Grand Hotel", room_types=(block,)),),
                )
            ),
            lodging_event(
                RoomHeld(
                    convention_id=convention,
                    request_id=uuid.uuid4(),
                    hotel="GRAND",
                    ack="A1",
                    stay=stay,
                    total_cents=27000,
                )
            ),
        ],
    )

    async with (
        running(build_decider(settings)),
        running(build_projector(settings, "reporting")),
        engine_for(settings.db.reporting_url) as engine,
    ):
        await eventually(
            lambda: count(engine, t.fact_order_lines, t.fact_order_lines.c.kind == "badge"),
            lambda n: n == 4,
            what="the four registrations' badge lines in the star schema",
        )
        async with engine.connect() as conn:
            orders = dict(
                (
                    await conn.execute(
                        select(t.fact_order_lines.c.registration_id, t.fact_order_lines.c.order_id)
                    )
                ).all()
            )
        payments = [
            RecordPayment(
                convention_id=convention,
                registration_id=rid,
                order_id=uuid.UUID(orders[str(rid)]),
                payment_id=f"pay_{i}",
                amount_cents=4000,
                currency="EUR",
                succeeded=True,
            )
            for i, (_, rid) in enumerate(paid_ones)
        ]
        envelopes = [command_envelope(p) for p in payments]
        await send_commands(settings, *envelopes, envelopes[0])
        await eventually(
            lambda: count(engine, t.fact_payments),
            lambda n: n == 2,
            what="both payments in the star schema",
        )
        await eventually(
            lambda: count(engine, t.fact_lodging_nights),
            lambda n: n == 3,
            what="the room nights",
        )

    revenue, first_hour, pickup = doc_queries()
    today = datetime.now(UTC).date()
    assert await rows(settings, revenue, convention) == [
        (today, "FREE", "Volunteer", 1, 0, "EUR"),
        (today, "STD", "Standard", 3, 8000, "EUR"),
    ]
    assert await rows(settings, first_hour, convention) == [("FREE", 1), ("STD", 3)]
    assert [r[:4] for r in await rows(settings, pickup, convention)] == [
        ("GRAND", "Grand Hotel", 30, 3)
    ]

    analyst = settings.db.reporting_url.set(username="analyst", password=settings.analyst_password)
    engine = create_async_engine(analyst)
    try:
        async with engine.connect() as conn:
            registrations = await conn.execute(
                text("SELECT COUNT(*) FROM fact_registrations WHERE convention_id = :c"),
                {"c": str(convention)},
            )
            assert registrations.scalar_one() == 4
            for forbidden in (
                "SELECT COUNT(*) FROM event_archive",
                "SELECT COUNT(*) FROM consumer_positions",
                "DELETE FROM fact_registrations",
                "UPDATE dim_account SET first_seen_at = NOW()",
                "INSERT INTO dim_date (date_key, year, quarter, month, day, iso_week, weekday, "
                "is_weekend) VALUES ('2000-01-01', 2000, 1, 1, 1, 1, 1, 0)",
                "CREATE TABLE leak (a INT)",
            ):
                with pytest.raises(DBAPIError, match="denied"):
                    await conn.execute(text(forbidden))
    finally:
        await engine.dispose()


class _FailsOnOpening(EventArchiver):
    """A star schema that cannot take one kind of event (as a bug or a value too large for a
    column would make it)."""

    async def _project(
        self, conn: AsyncConnection, decoded: list[tuple[Any, Envelope]]
    ) -> list[DeadLetter]:
        if any(envelope.type == "ConventionOpened" for _, envelope in decoded):
            raise ValueError("the star schema cannot take this event")
        return await super()._project(conn, decoded)


async def test_an_event_the_star_schema_cannot_take_is_set_aside_and_still_archived(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    cid = uuid.uuid4()
    created = CreateConvention(
        convention_id=cid,
        name="Kept Con",
        starts_on=date(2027, 5, 1),
        ends_on=date(2027, 5, 2),
        badge_types=(BadgeTypeSpec(code="STD", name="Standard", price_cents=0, quota=5),),
        request_hash="x",
    )
    events = [
        ConventionCreated(**created.model_dump(exclude={"request_hash"}), request_hash="x"),
        ConventionOpened(convention_id=cid),
    ]
    topic = Topics(settings.topic_prefix).registration_events
    records = []
    for offset, event in enumerate(events):
        envelope = wrap(
            event,
            message_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            correlation_id=uuid.uuid4(),
            causation_id=None,
            key=str(cid),
            actor="test",
        )
        value = envelope.encode()
        records.append(
            ConsumerRecord(topic, 0, offset, 0, 0, str(cid).encode(), value, None, 36, len(value),
                           envelope.headers())
        )  # fmt: skip
    async with engine_for(settings.db.reporting_url) as engine:
        async with engine.begin() as conn:
            handled = await _FailsOnOpening("key").handle(conn, TopicPartition(topic, 0), records)
        [dead] = handled.dead_letters
        assert dead.record is records[1]
        async with engine.connect() as conn:
            archived = (await conn.execute(select(t.event_archive.c.event_type))).scalars().all()
            conventions = (
                await conn.execute(select(t.dim_convention.c.name).where(
                    t.dim_convention.c.convention_id == str(cid)))
            ).scalars().all()  # fmt: skip
    assert sorted(archived) == ["ConventionCreated", "ConventionOpened"]
    assert conventions == ["Kept Con"], "the rest of the batch reached the star schema"
