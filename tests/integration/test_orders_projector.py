"""The orders projector on a real broker and MariaDB, as the composition root runs it: a
convention's catalogue, orders, payments, refunds and waitlist become the order read models
once each, whatever is redelivered; a poison record and an event the read model cannot hold
go to the dead-letter topic; and `rebuild orders` (emptied, then replayed) gives the same
rows."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from infra.bootstrap import build_projector, group_name
from infra.settings import Settings
from producers.dead_letters import read_dead_letters
from projections.orders import tables as t
from projections.rebuild import reset_projection
from projections.website.tables import consumer_positions
from schemas.catalogue import (
    OptionSpec,
    OrderLine,
    OrderPolicy,
    PriceTier,
    PromoCodeSpec,
    VariantSpec,
    stock_key,
)
from schemas.envelope import Envelope
from schemas.orders import (
    OptionDefined,
    OptionRemoved,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    PaymentDeclined,
    PriceTiersDefined,
    PromoCodeCreated,
    RefundCompleted,
    RefundIssued,
    RefundReason,
    WaitlistJoined,
    WaitlistOfferMade,
)
from schemas.registration import (
    BadgeTypeSpec,
    ConventionCreated,
    Event,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
)
from schemas.registry import wrap
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import engine_for, eventually, produce, running

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 10, 9, 0, 0, tzinfo=UTC)
Record = tuple[str, bytes, list[tuple[str, bytes]]]

SEAT = OrderLine(
    kind="badge",
    code="FULL",
    name="Full weekend",
    quantity=1,
    unit_price_cents=4000,
    tier="Early",
    total_cents=4000,
)
SHIRTS = OrderLine(
    kind="option",
    code="TSHIRT",
    variant="L",
    name="T-shirt",
    quantity=2,
    unit_price_cents=2000,
    total_cents=4000,
)
BANQUET = OrderLine(
    kind="option",
    code="BANQUET",
    name="Banquet",
    quantity=1,
    unit_price_cents=3000,
    total_cents=3000,
)


class Stream:
    """Events of one convention, a second apart, each caused by a command of its own."""

    def __init__(self, convention_id: uuid.UUID) -> None:
        self.convention_id = convention_id
        self.envelopes: list[Envelope] = []

    def add(self, event: Event) -> Envelope:
        envelope = wrap(
            event,
            message_id=uuid.uuid4(),
            occurred_at=START + timedelta(seconds=len(self.envelopes)),
            correlation_id=uuid.uuid4(),
            causation_id=uuid.uuid4(),
            key=str(self.convention_id),
            actor="test",
        )
        self.envelopes.append(envelope)
        return envelope


def as_record(envelope: Envelope) -> Record:
    return (envelope.key, envelope.encode(), envelope.headers())


def terms(order_id: uuid.UUID, *lines: OrderLine, promo_code: str | None = None) -> OrderTerms:
    subtotal = sum(line.total_cents for line in lines)
    discount = subtotal // 10 if promo_code else 0
    return OrderTerms(
        order_id=order_id,
        lines=lines,
        subtotal_cents=subtotal,
        discount_cents=discount,
        total_cents=subtotal - discount,
        currency="EUR",
        promo_code=promo_code,
    )


def placed(
    convention_id: uuid.UUID, registration_id: uuid.UUID, email: str, order: OrderTerms
) -> OrderPlaced:
    return OrderPlaced(
        convention_id=convention_id,
        registration_id=registration_id,
        email=email,
        name="Someone",
        badge_type="FULL",
        request_hash=f"h-{registration_id}",
        order=order,
        hold_until=START + timedelta(minutes=20),
    )


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def projector_group(settings: Settings) -> str:
    return group_name(settings, "projector.orders")


async def stored_offsets(settings: Settings) -> int:
    positions = consumer_positions.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        total = (
            await conn.execute(
                select(func.coalesce(func.sum(positions.next_offset), 0)).where(
                    positions.group_name == projector_group(settings),
                    positions.topic == Topics(settings.topic_prefix).registration_events,
                )
            )
        ).scalar_one()
    return int(total)


async def snapshot(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        found = {}
        for table in t.metadata.sorted_tables:
            if table is t.applied_events:
                continue
            rows = (await conn.execute(select(table))).all()
            found[table.name] = sorted(tuple(row) for row in rows)
        found["applied"] = [
            (await conn.execute(select(func.count()).select_from(t.applied_events))).scalar_one()
        ]
    return found


async def test_orders_project_once_poison_is_set_aside_and_a_replay_gives_the_same_rows(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    cid = uuid.uuid4()
    ada, bob = uuid.uuid4(), uuid.uuid4()
    ada_order, ada_options, bob_order = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    refund_id, entry_id = uuid.uuid4(), uuid.uuid4()
    shirt_l = stock_key("option", "TSHIRT", "L")

    stream = Stream(cid)
    stream.add(
        ConventionCreated(
            convention_id=cid,
            name="Con",
            starts_on=date(2027, 5, 1),
            ends_on=date(2027, 5, 3),
            badge_types=(BadgeTypeSpec(code="FULL", name="Full", price_cents=5000, quota=10),),
            request_hash="h",
            policy=OrderPolicy(hold_minutes=20),
        )
    )
    stream.add(
        PriceTiersDefined(
            convention_id=cid,
            badge_type="FULL",
            tiers=(PriceTier(name="Early", price_cents=4000, size=2),),
        )
    )
    stream.add(
        OptionDefined(
            convention_id=cid,
            option=OptionSpec(
                code="TSHIRT",
                name="T-shirt",
                price_cents=2000,
                quota=20,
                max_per_registration=3,
                variants=(
                    VariantSpec(code="M", name="M"),
                    VariantSpec(code="L", name="L", quota=5),
                ),
            ),
        )
    )
    stream.add(
        OptionDefined(
            convention_id=cid, option=OptionSpec(code="BANQUET", name="Banquet", price_cents=3000)
        )
    )
    stream.add(
        PromoCodeCreated(convention_id=cid, promo=PromoCodeSpec(code="SAVE10", percent_off=10))
    )
    ada_placed = stream.add(
        placed(cid, ada, "ada@example.org", terms(ada_order, SEAT, SHIRTS, promo_code="SAVE10"))
    )
    stream.add(
        OrderPaid(
            convention_id=cid,
            registration_id=ada,
            order_id=ada_order,
            payment_id="pay_1",
            amount_cents=7200,
            currency="EUR",
            confirms_registration=True,
        )
    )
    stream.add(
        OptionsOrdered(
            convention_id=cid,
            registration_id=ada,
            order=terms(ada_options, BANQUET),
            request_hash="h2",
            hold_until=START + timedelta(minutes=40),
        )
    )
    stream.add(
        OrderExpired(
            convention_id=cid,
            registration_id=ada,
            order_id=ada_options,
            lines=(BANQUET,),
            expires_registration=False,
        )
    )
    stream.add(
        OptionRemoved(
            convention_id=cid,
            registration_id=ada,
            order_id=ada_order,
            line=SHIRTS.model_copy(update={"quantity": 1, "total_cents": 1800}),
        )
    )
    stream.add(
        RefundIssued(
            convention_id=cid,
            registration_id=ada,
            order_id=ada_order,
            refund_id=refund_id,
            payment_id="pay_1",
            amount_cents=1800,
            currency="EUR",
            reason=RefundReason.OPTION_REMOVED,
        )
    )
    stream.add(RefundCompleted(convention_id=cid, registration_id=ada, refund_id=refund_id))
    stream.add(placed(cid, bob, "bob@example.org", terms(bob_order, SEAT, promo_code="SAVE10")))
    stream.add(
        PaymentDeclined(convention_id=cid, registration_id=bob, order_id=bob_order, payment_id="p2")
    )
    stream.add(RegistrationCancelled(convention_id=cid, registration_id=bob, badge_type="FULL"))
    stream.add(
        WaitlistJoined(
            convention_id=cid,
            entry_id=entry_id,
            kind="option",
            code="TSHIRT",
            variant="L",
            quantity=1,
            email="Cy@Example.org",
            name="Cy",
            account_id=None,
            registration_id=bob,
            position=1,
            seq=1,
            stock=shirt_l,
        )
    )
    offer = stream.add(
        WaitlistOfferMade(
            convention_id=cid,
            entry_id=entry_id,
            stock=shirt_l,
            quantity=1,
            expires_at=START + timedelta(hours=1),
        )
    )
    unfit = Stream(cid).add(
        placed(
            cid,
            uuid.uuid4(),
            "eve@example.org",
            terms(uuid.uuid4(), SEAT.model_copy(update={"name": "x" * 201})),
        )
    )

    records = [as_record(e) for e in stream.envelopes[:-1]]
    records += [
        as_record(ada_placed),  # redelivered: counts nothing twice
        (str(cid), b"\x00 not an envelope", [("type", b"OrderPlaced")]),
        as_record(unfit),
        as_record(offer),
    ]
    await produce(settings, topics.registration_events, records)

    async with running(build_projector(settings, "orders")):
        await eventually(
            lambda: stored_offsets(settings),
            lambda offset: offset == len(records),
            what="the projector past every record",
        )

    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        orders = {
            row.order_id: row
            for row in await conn.execute(
                select(t.orders).where(t.orders.c.convention_id == str(cid))
            )
        }
        assert {order_id: row.status for order_id, row in orders.items()} == {
            str(ada_order): "paid",
            str(ada_options): "expired",
            str(bob_order): "cancelled",
        }
        paid = orders[str(ada_order)]
        assert (paid.paid_cents, paid.refunded_cents, paid.payment_id, paid.promo_code) == (
            7200,
            1800,
            "pay_1",
            "SAVE10",
        )
        assert paid.first
        assert not orders[str(ada_options)].first
        assert paid.created_at == naive(ada_placed.occurred_at)
        lines = (
            await conn.execute(
                select(t.order_lines.c.code, t.order_lines.c.quantity, t.order_lines.c.removed)
                .where(t.order_lines.c.order_id == str(ada_order))
                .order_by(t.order_lines.c.line_no)
            )
        ).all()
        assert [tuple(line) for line in lines] == [("FULL", 1, 0), ("TSHIRT", 2, 1)]

        tiers = (await conn.execute(select(t.price_tiers.c.name, t.price_tiers.c.sold))).all()
        assert [tuple(tier) for tier in tiers] == [("Early", 2)], "a cancelled seat was sold"
        options = await conn.execute(
            select(t.options.c.code, t.options.c.taken, t.options.c.position)
        )
        assert sorted(tuple(row) for row in options) == [("BANQUET", 0, 1), ("TSHIRT", 2, 0)]
        variants = await conn.execute(select(t.option_variants.c.code, t.option_variants.c.taken))
        assert sorted(tuple(row) for row in variants) == [("L", 2), ("M", 0)]
        uses = (await conn.execute(select(t.promo_codes.c.uses))).scalar_one()
        assert uses == 2, "a code used by an order cancelled stays used"
        policy = (await conn.execute(select(t.order_policies))).one()
        assert (policy.currency, policy.hold_minutes) == ("EUR", 20)

        payments = await conn.execute(
            select(t.payments.c.payment_id, t.payments.c.status, t.payments.c.amount_cents)
        )
        assert sorted(tuple(row) for row in payments) == [
            ("p2", "declined", None),
            ("pay_1", "paid", 7200),
        ]
        refund = (await conn.execute(select(t.refunds))).one()
        assert (refund.status, refund.reason, refund.amount_cents) == (
            "completed",
            "option_removed",
            1800,
        )
        entry = (await conn.execute(select(t.waitlist_entries))).one()
        assert (entry.status, entry.email_key, entry.offer_expires_at) == (
            "offered",
            "cy@example.org",
            naive(START + timedelta(hours=1)),
        )
        applied = (
            await conn.execute(select(func.count()).select_from(t.applied_events))
        ).scalar_one()
        assert applied == len(stream.envelopes)

    dead = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)
    assert [(d.source_topic, d.consumer_group) for d in dead] == [
        (topics.registration_events, projector_group(settings))
    ] * 2
    assert {d.error_class for d in dead} == {"UndecodableMessage", "UnprojectableEvent"}

    before = await snapshot(settings)
    await reset_projection(settings, "orders")
    assert await stored_offsets(settings) == 0
    assert (await snapshot(settings))["orders"] == []
    async with running(build_projector(settings, "orders")):
        await eventually(
            lambda: stored_offsets(settings),
            lambda offset: offset == len(records),
            what="the replay past every record",
        )
    assert await snapshot(settings) == before
