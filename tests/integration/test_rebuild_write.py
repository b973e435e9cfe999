"""`butterfly rebuild write` on the real broker and MariaDB: after the registration and lodging
deciders decide a mix of registrations (free, priced with an option and a promo code, paid,
expired, cancelled, a waitlist offer), the state folded from the event topics equals the
decider tables, an event the relay wrote twice included; a corrupted count and a lost order
row are reported, and only those."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from consumers.registration import tables as w
from infra.bootstrap import build_decider
from infra.cli import _rebuild_write
from infra.rebuild_write import rebuild_write
from infra.settings import Settings
from schemas.catalogue import OptionChoice, OptionSpec, PromoCodeSpec
from schemas.checkin import CheckInAttendee
from schemas.orders import CreatePromoCode, DefineOption, ExpireOrder, JoinWaitlist, RecordPayment
from schemas.registration import (
    BadgeTypeSpec,
    CancelRegistration,
    Command,
    CreateConvention,
    OpenConvention,
    RegisterAttendee,
)
from schemas.registry import wrap
from schemas.topics import Topics, registration_key
from tests.conftest import StackFactory
from tests.support import engine_for, eventually, produce, read_topic, running, send_commands

pytestmark = pytest.mark.integration


def envelope(command: Command, at: datetime | None = None) -> Any:
    return wrap(
        command,
        message_id=uuid.uuid4(),
        occurred_at=at or datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        key=registration_key(command.convention_id),
        actor="test",
    )


def register(cid: uuid.UUID, n: int, badge: str, **extra: Any) -> RegisterAttendee:
    return RegisterAttendee(
        convention_id=cid,
        registration_id=uuid.uuid4(),
        email=f"fold{n}@example.org",
        name=f"Folder {n}",
        badge_type=badge,
        request_hash=f"h{n}",
        **extra,
    )


async def event_types(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    records = await read_topic(settings, Topics(settings.topic_prefix).registration_events)
    return [(b["type"], b["payload"]) for b in (json.loads(r.value) for r in records)]


async def test_folded_state_equals_the_tables_and_corruption_is_reported(
    make_settings: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = await make_settings()
    cid = uuid.uuid4()
    free = register(cid, 1, "FREE")
    priced = register(cid, 2, "STD", options=(OptionChoice(code="DINNER"),), promo_code="friends")
    unpaid = register(cid, 3, "STD")
    third = register(cid, 4, "STD")
    await send_commands(
        settings,
        envelope(
            CreateConvention(
                convention_id=cid,
                name="Fold Con",
                starts_on=date(2027, 5, 1),
                ends_on=date(2027, 5, 3),
                badge_types=(
                    BadgeTypeSpec(code="STD", name="Standard", price_cents=4000, quota=3),
                    BadgeTypeSpec(code="FREE", name="Free", price_cents=0, quota=5),
                ),
                request_hash="x",
            )
        ),
        envelope(
            DefineOption(
                convention_id=cid,
                option=OptionSpec(code="DINNER", name="Banquet", price_cents=3000, quota=5),
            )
        ),
        envelope(
            CreatePromoCode(
                convention_id=cid,
                promo=PromoCodeSpec(code="FRIENDS", percent_off=20, max_uses=3),
            )
        ),
        envelope(OpenConvention(convention_id=cid)),
        *(envelope(c) for c in (free, priced, unpaid, third)),
        envelope(
            JoinWaitlist(
                convention_id=cid,
                entry_id=uuid.uuid4(),
                kind="badge",
                code="STD",
                email="waiting@example.org",
                name="Waiting",
            )
        ),
        envelope(CancelRegistration(convention_id=cid, registration_id=free.registration_id)),
    )
    async with running(build_decider(settings)), running(build_decider(settings, "lodging")):
        found = await eventually(
            lambda: event_types(settings),
            lambda found: (
                any(t == "WaitlistJoined" for t, _ in found)
                and sum(t == "OrderPlaced" for t, _ in found) == 3
            ),
            what="the registrations decided",
        )
        placed = {p["registration_id"]: p for t, p in found if t == "OrderPlaced"}
        order = placed[str(priced.registration_id)]["order"]
        later = datetime.now(UTC) + timedelta(minutes=16)
        await send_commands(
            settings,
            envelope(
                RecordPayment(
                    convention_id=cid,
                    registration_id=priced.registration_id,
                    order_id=priced.registration_id,
                    payment_id="pay-1",
                    amount_cents=order["total_cents"],
                    currency=order["currency"],
                    succeeded=True,
                )
            ),
            envelope(
                ExpireOrder(
                    convention_id=cid,
                    registration_id=unpaid.registration_id,
                    order_id=unpaid.registration_id,
                ),
                later,
            ),
        )
        await eventually(
            lambda: event_types(settings),
            lambda found: (
                {"OrderPaid", "OrderExpired", "WaitlistOfferMade"} <= {t for t, _ in found}
            ),
            what="the payment, the expiry and the offer",
        )
        # The paid registration scanned at two doors, the later scan first.
        await send_commands(
            settings,
            *(
                envelope(
                    CheckInAttendee(
                        convention_id=cid,
                        registration_id=priced.registration_id,
                        ticket_serial=0,
                        station=station,
                        scanned_at=datetime(2027, 5, 1, 9, minute, 0, 123456, tzinfo=UTC),
                        scan_id=uuid.uuid4(),
                    )
                )
                for station, minute in (("Door B", 5), ("Door A", 1))
            ),
        )
        await eventually(
            lambda: event_types(settings),
            lambda found: any(t == "CheckInSuperseded" for t, _ in found),
            what="the check-in superseded",
        )
        report = await eventually(
            lambda: rebuild_write(settings),
            lambda report: report.ok,
            timeout=10,
            what="the lodging decider caught up",
        )
    counts = {t.table: (t.live, t.folded) for t in report.tables}
    assert counts["conventions"] == (1, 1)
    assert counts["badge_types"] == (2, 2)
    assert counts["registrations"] == (4, 4)
    assert counts["orders"] == (4, 4)
    assert counts["waitlist_entries"] == (1, 1)
    assert counts["lodging_conventions"] == (1, 1)
    assert counts["lodging_registrations"] == (1, 1)
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        g = w.registrations.c
        checked_in = (
            await conn.execute(
                select(g.checked_in_station, g.checked_in_at).where(
                    g.registration_id == str(priced.registration_id)
                )
            )
        ).one()
    assert tuple(checked_in) == ("Door A", datetime(2027, 5, 1, 9, 1, 0, 123456))

    # The relay publishes at least once: an event written twice is folded once.
    records = await read_topic(settings, Topics(settings.topic_prefix).registration_events)
    repeat = next(r for r in records if json.loads(r.value)["type"] == "OrderPlaced")
    assert repeat.key is not None
    await produce(
        settings, repeat.topic, [(repeat.key.decode(), repeat.value, list(repeat.headers))]
    )
    report = await rebuild_write(settings)
    assert (report.ok, report.repeats) == (True, 1)

    async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
        b = w.badge_types.c
        await conn.execute(
            update(w.badge_types)
            .where(b.convention_id == str(cid), b.code == "STD")
            .values(confirmed=b.confirmed + 1)
        )
        await conn.execute(
            delete(w.orders).where(w.orders.c.order_id == str(third.registration_id))
        )
    report = await rebuild_write(settings)
    broken = {t.table: t for t in report.tables if not t.ok}
    assert set(broken) == {"badge_types", "orders"}
    badge = broken["badge_types"]
    assert badge.missing == badge.extra == []
    [(key, columns)] = badge.differing
    assert key == (str(cid), "STD")
    assert set(columns) == {"confirmed"}
    assert columns["confirmed"][0] == columns["confirmed"][1] + 1
    orders = broken["orders"]
    assert orders.missing == [(str(third.registration_id),)]
    assert orders.extra == orders.differing == []

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        # the command runs its own event loop, as it does from the shell
        await asyncio.to_thread(_rebuild_write, settings, argparse.Namespace(json=True))
    assert exited.value.code == 1
    printed = json.loads(capsys.readouterr().out)
    assert not printed["ok"]
    assert {t["table"]: t["missing"] for t in printed["tables"]}["orders"] == 1
