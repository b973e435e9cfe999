"""Orders decided exactly on the real broker and MariaDB: a rush on a limited option, a
limited promo code and a price tier sells exactly the stock; holds expire and free it once;
a payment racing its hold's expiry ends paid or refunded, never both; a decider restarted
mid-rush (its state read back from its tables) carries on with the same counts; every mail is
written once."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from consumers.accounts.tables import mail_outbox
from consumers.registration import tables as w
from infra.bootstrap import build_decider
from infra.settings import Settings
from schemas.catalogue import OptionChoice, OptionSpec, PriceTier, PromoCodeSpec
from schemas.envelope import Envelope
from schemas.orders import (
    CreatePromoCode,
    DefineOption,
    DefinePriceTiers,
    ExpireOrder,
    RecordPayment,
)
from schemas.registration import (
    BadgeTypeSpec,
    Command,
    CreateConvention,
    OpenConvention,
    RegisterAttendee,
)
from schemas.registry import wrap
from schemas.topics import Topics, registration_key
from tests.conftest import StackFactory
from tests.support import count, engine_for, eventually, read_topic, running, send_commands

pytestmark = pytest.mark.integration


def envelope(command: Command, at: datetime | None = None) -> Envelope:
    return wrap(
        command,
        message_id=uuid.uuid4(),
        occurred_at=at or datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        key=registration_key(command.convention_id),
        actor="test",
    )


async def convention_selling(settings: Settings, *, seats: int, price: int) -> uuid.UUID:
    cid = uuid.uuid4()
    await send_commands(
        settings,
        envelope(
            CreateConvention(
                convention_id=cid,
                name="Rush Con",
                starts_on=datetime(2027, 5, 1).date(),
                ends_on=datetime(2027, 5, 3).date(),
                badge_types=(
                    BadgeTypeSpec(code="STD", name="Standard", price_cents=price, quota=seats),
                ),
                request_hash="x",
            )
        ),
        envelope(
            DefinePriceTiers(
                convention_id=cid,
                badge_type="STD",
                tiers=(PriceTier(name="early", price_cents=price // 2, size=10),),
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
    )
    return cid


def register(cid: uuid.UUID, n: int, **extra: Any) -> RegisterAttendee:
    return RegisterAttendee(
        convention_id=cid,
        registration_id=uuid.uuid4(),
        email=f"rush{n}@example.org",
        name=f"Rusher {n}",
        badge_type="STD",
        request_hash=f"h{n}",
        **extra,
    )


async def events_of(settings: Settings, cid: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    records = await read_topic(settings, Topics(settings.topic_prefix).registration_events)
    found = []
    for record in records:
        body = json.loads(record.value)
        if body["payload"]["convention_id"] == str(cid):
            found.append((body["type"], body["payload"]))
    return found


async def test_a_rush_sells_exactly_the_options_codes_and_tier_places(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    cid = await convention_selling(settings, seats=30, price=4000)
    dinner = (OptionChoice(code="DINNER"),)
    commands = [
        register(
            cid,
            n,
            options=dinner if n % 3 == 0 else (),
            promo_code="friends" if n % 2 else None,
        )
        for n in range(40)
    ]
    first, second = commands[:20], commands[20:]
    await send_commands(settings, *(envelope(c) for c in first))
    async with running(build_decider(settings)):
        await eventually(
            lambda: events_of(settings, cid),
            lambda found: sum(t in ("OrderPlaced", "RegistrationRejected") for t, _ in found) >= 20,
            what="the first half decided",
        )
    # A decider that starts again reads the convention back from its tables.
    await send_commands(settings, *(envelope(c) for c in second))
    async with running(build_decider(settings)):
        found = await eventually(
            lambda: events_of(settings, cid),
            lambda found: sum(t in ("OrderPlaced", "RegistrationRejected") for t, _ in found) >= 40,
            what="every registration decided",
        )
    placed = [p for t, p in found if t == "OrderPlaced"]
    with_dinner = [
        p for p in placed if any(line["code"] == "DINNER" for line in p["order"]["lines"])
    ]
    assert len(with_dinner) == 5, "exactly the option's quota"
    assert sum(p["order"]["promo_code"] == "FRIENDS" for p in placed) == 3, (
        "exactly the code's uses"
    )
    tiers = Counter(
        line["tier"] for p in placed for line in p["order"]["lines"] if line["kind"] == "badge"
    )
    assert tiers["early"] == 10, "no more at a tier than its size"
    for p in placed:
        order = p["order"]
        assert order["total_cents"] == sum(line["total_cents"] for line in order["lines"])
        assert order["subtotal_cents"] - order["discount_cents"] == order["total_cents"]
    refused = Counter(p["reason"] for t, p in found if t == "RegistrationRejected")
    assert set(refused) <= {"sold_out", "code_used_up"}
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        catalogue = json.loads(
            (
                await conn.execute(
                    select(w.conventions.c.catalogue).where(
                        w.conventions.c.convention_id == str(cid)
                    )
                )
            ).scalar_one()
        )
    assert catalogue["options"][0]["taken"] == 5
    assert catalogue["promos"][0]["uses"] == 3
    assert catalogue["tiers"]["STD"][0]["sold"] == 10


async def test_holds_expire_once_and_payments_racing_them_end_paid_or_refunded(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    cid = await convention_selling(settings, seats=12, price=4000)
    commands = [register(cid, n) for n in range(12)]
    await send_commands(settings, *(envelope(c) for c in commands))
    async with running(build_decider(settings)):
        found = await eventually(
            lambda: events_of(settings, cid),
            lambda found: sum(t == "OrderPlaced" for t, _ in found) == 12,
            what="twelve orders held",
        )
        placed = {p["registration_id"]: p for t, p in found if t == "OrderPlaced"}
        after_hold = datetime.now(UTC) + timedelta(minutes=16)
        racing: list[Envelope] = []
        for n, command in enumerate(commands):
            order = placed[str(command.registration_id)]["order"]
            expire = ExpireOrder(
                convention_id=cid,
                registration_id=command.registration_id,
                order_id=command.registration_id,
            )
            pay = RecordPayment(
                convention_id=cid,
                registration_id=command.registration_id,
                order_id=command.registration_id,
                payment_id=f"pay-{n}",
                amount_cents=order["total_cents"],
                currency=order["currency"],
                succeeded=True,
            )
            # The clock asks three times; the provider notifies twice.
            racing += [envelope(expire, after_hold) for _ in range(3)]
            racing += [envelope(pay, after_hold) for _ in range(2)]
        random.Random(7).shuffle(racing)
        await send_commands(settings, *racing)
        found = await eventually(
            lambda: events_of(settings, cid),
            lambda found: sum(t in ("OrderPaid", "OrderExpired") for t, _ in found) >= 12,
            what="every order paid or expired",
        )
        more = [register(cid, 100 + n) for n in range(3)]
        await send_commands(settings, *(envelope(c) for c in more))
        found = await eventually(
            lambda: events_of(settings, cid),
            lambda found: sum(t in ("OrderPlaced", "RegistrationRejected") for t, _ in found) >= 15,
            what="the later registrations decided",
        )
    outcome: dict[str, list[str]] = {}
    for t, p in found:
        if t in ("OrderPaid", "OrderExpired", "RefundIssued"):
            outcome.setdefault(p["registration_id"], []).append(t)
    assert len(outcome) == 12
    for registration_id, seen in outcome.items():
        assert seen in (["OrderPaid"], ["OrderExpired", "RefundIssued"]), registration_id
    expired = sum(seen == ["OrderExpired", "RefundIssued"] for seen in outcome.values())
    later = [t for t, p in found if p.get("request_hash") in {"h100", "h101", "h102"}]
    assert later.count("OrderPlaced") == min(3, expired), "expired seats sold again, once"
    async with engine_for(settings.db.write_url) as engine:
        refunds = await count(engine, w.refunds, w.refunds.c.convention_id == str(cid))
        assert refunds == expired
        mails = await count(engine, mail_outbox)
    mail_worthy = sum(
        t in ("OrderPlaced", "OrderPaid", "OrderExpired", "RefundIssued") for t, _ in found
    )
    assert mails >= mail_worthy
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        ids = (await conn.execute(select(mail_outbox.c.mail_id))).scalars().all()
    assert len(ids) == len(set(ids))
