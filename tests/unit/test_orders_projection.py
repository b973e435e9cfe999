"""The pure part of the orders projector: which records are set aside, and what each event
does to the rows a batch loaded (orders and their lines, price tiers) and to the counts it
adds at the end (option units taken, promo code uses)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import ConsumerRecord

from projections.orders import projector as p
from projections.orders.projector import (
    LineRow,
    OrderRow,
    Projection,
    TierRow,
    UnprojectableEvent,
    decode_events,
    project_event,
    tier_keys,
)
from projections.orders.stock import Stock, parse_stock_key
from schemas.catalogue import (
    OptionSpec,
    OrderLine,
    OrderPolicy,
    PriceTier,
    PromoCodeSpec,
    VariantSpec,
    stock_key,
)
from schemas.envelope import Envelope, UndecodableMessage
from schemas.orders import (
    OptionDefined,
    OptionRemoved,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    OrderPolicySet,
    PaymentDeclined,
    PriceTiersDefined,
    PromoCodeApplied,
    PromoCodeCreated,
    RefundCompleted,
    RefundIssued,
    RefundReason,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferAccepted,
    WaitlistOfferExpired,
    WaitlistOfferMade,
)
from schemas.registration import (
    AttendeeRegistered,
    BadgeTypeSpec,
    ConventionCreated,
    Message,
    OrderPlaced,
    OrderTerms,
    RegisterAttendee,
    RegistrationCancelled,
)
from schemas.registry import wrap

CONVENTION = uuid.UUID("00000000-0000-4000-8000-0000000000c0")
CID = str(CONVENTION)
REGISTRATION = uuid.UUID("00000000-0000-4000-8000-000000000001")
RID = str(REGISTRATION)
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
LATER_ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000a2")
ENTRY = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
AT = datetime(2027, 1, 10, 9, 0, 0, 123456, tzinfo=UTC)
NAIVE = AT.replace(tzinfo=None)
HOLD = AT + timedelta(minutes=15)

SEAT = OrderLine(
    kind="badge",
    code="FULL",
    name="Full weekend",
    quantity=1,
    unit_price_cents=5000,
    tier="Early",
    total_cents=5000,
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
    kind="option", code="BANQUET", name="Banquet", quantity=1, unit_price_cents=0, total_cents=0
)


def terms(
    *lines: OrderLine, order_id: uuid.UUID = ORDER, promo_code: str | None = "SAVE10"
) -> OrderTerms:
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


def changed(model: Any, **values: Any) -> Any:
    """A copy of an event or an order line with `values` in place of its own."""
    return model.model_copy(update=values)


def envelope(message: Message, at: datetime = AT) -> Envelope:
    return wrap(
        message,
        message_id=uuid.uuid4(),
        occurred_at=at,
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        key=CID,
        actor="test",
    )


def record(value: bytes, offset: int = 0, type_name: str = "") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t.registration.events",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=CID.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(CID),
        serialized_value_size=len(value),
        headers=[("type", type_name.encode())] if type_name else [],
    )


def tiers(early_sold: int = 3) -> dict[tuple[str, str], tuple[TierRow, ...]]:
    return {
        (CID, "full"): (
            TierRow(CID, "FULL", 0, "Early", 4000, None, 100, early_sold),
            TierRow(CID, "FULL", 1, "Regular", 5000, None, None, 0),
        )
    }


def fold(projection: Projection, *events: Any, at: datetime = AT) -> Projection:
    for event in events:
        project_event(projection, envelope(event, at), event)
    return projection


def loaded(*orders: OrderRow, early_sold: int = 3) -> Projection:
    """A batch's projection as loaded from the read model."""
    return Projection(
        orders={o.order_id: o for o in orders},
        loaded_lines={o.order_id: o.lines for o in orders},
        tiers=tiers(early_sold),
    )


def placed(
    *lines: OrderLine, status: str = p.PENDING_PAYMENT, promo_code: str | None = "SAVE10"
) -> OrderRow:
    return p.placed_order(
        OrderPlaced(
            convention_id=CONVENTION,
            registration_id=REGISTRATION,
            email="ada@example.org",
            name="Ada",
            badge_type="FULL",
            request_hash="h",
            order=terms(*lines, promo_code=promo_code),
            hold_until=HOLD,
        ),
        terms(*lines, promo_code=promo_code),
        NAIVE - timedelta(hours=1),
        status=status,
        hold_until=HOLD,
    )


def order_placed(*lines: OrderLine, promo_code: str | None = "SAVE10") -> OrderPlaced:
    return OrderPlaced(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        email="ada@example.org",
        name="Ada",
        badge_type="FULL",
        request_hash="h",
        order=terms(*lines, promo_code=promo_code),
        hold_until=HOLD,
    )


def sold(projection: Projection) -> dict[str, int]:
    return {row.name: row.sold for row in projection.tiers[(CID, "full")]}


def counts(projection: Projection) -> tuple[dict[Any, int], dict[Any, int], dict[Any, int]]:
    def nonzero(values: dict[Any, int]) -> dict[Any, int]:
        return {key: value for key, value in values.items() if value}

    return nonzero(projection.taken), nonzero(projection.variant_taken), nonzero(projection.uses)


def rows_of(projection: Projection, statement: object) -> list[dict[str, Any]]:
    return [row for s, rows in projection.writes.steps if s is statement for row in rows]


def test_registration_events_decode_and_anything_else_is_set_aside() -> None:
    good = envelope(order_placed(SEAT))
    command = envelope(
        RegisterAttendee(
            convention_id=CONVENTION,
            registration_id=REGISTRATION,
            email="ada@example.org",
            name="Ada",
            badge_type="FULL",
            request_hash="h",
        )
    )
    too_long = envelope(order_placed(changed(SEAT, name="x" * 201)))
    records = [
        record(good.encode(), 0, "OrderPlaced"),
        record(b"\x00 not json", 1, "OrderPlaced"),
        record(command.encode(), 2, "RegisterAttendee"),
        record(too_long.encode(), 3, "OrderPlaced"),
    ]
    events, dead = decode_events(records)
    assert [e.message_id for e, _ in events] == [good.message_id]
    assert [d.record.offset for d in dead] == [1, 2, 3]
    assert isinstance(dead[0].error, UndecodableMessage)
    assert "command" in str(dead[1].error)
    assert isinstance(dead[2].error, UnprojectableEvent)
    assert "order_lines.name" in str(dead[2].error)


def test_an_order_placed_holds_its_seat_tier_options_and_promo_code() -> None:
    projection = fold(loaded(), order_placed(SEAT, SHIRTS))

    order = projection.orders[str(ORDER)]
    assert (order.status, order.first, order.registration_id) == (p.PENDING_PAYMENT, True, RID)
    assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (9000, 900, 8100)
    assert (order.paid_cents, order.refunded_cents, order.promo_code) == (0, 0, "SAVE10")
    assert order.hold_until == HOLD.replace(tzinfo=None)
    assert order.created_at == order.updated_at == NAIVE
    assert order.lines == (LineRow.of(SEAT), LineRow.of(SHIRTS))
    assert order.line_rows()[1] == {
        "order_id": str(ORDER),
        "registration_id": RID,
        "convention_id": CID,
        "line_no": 1,
        "kind": "option",
        "code": "TSHIRT",
        "variant": "L",
        "name": "T-shirt",
        "quantity": 2,
        "removed": 0,
        "unit_price_cents": 2000,
        "tier": None,
        "discount_cents": 0,
        "total_cents": 4000,
    }
    assert projection.changed_orders == {str(ORDER)}
    assert sold(projection) == {"Early": 4, "Regular": 0}
    assert counts(projection) == (
        {(CID, "TSHIRT"): 2},
        {(CID, "TSHIRT", "L"): 2},
        {(CID, "SAVE10"): 1},
    )
    assert [row["applied_at"] for row in projection.applied] == [NAIVE]


def test_a_registration_confirmed_at_once_is_a_paid_order_and_an_old_one_has_none() -> None:
    registered = AttendeeRegistered(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        email="ada@example.org",
        name="Ada",
        badge_type="FULL",
        request_hash="h",
        order=terms(changed(SEAT, unit_price_cents=0, total_cents=0), promo_code=None),
    )
    projection = fold(loaded(), registered)
    order = projection.orders[str(ORDER)]
    assert (order.status, order.hold_until, order.total_cents) == (p.PAID, None, 0)
    assert sold(projection)["Early"] == 4

    before = fold(loaded(), changed(registered, order=None))
    assert before.orders == {}
    assert before.changed_orders == set()
    assert len(before.applied) == 1


def test_payment_confirms_the_order_and_is_recorded() -> None:
    projection = loaded(placed(SEAT))
    paid = OrderPaid(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        order_id=ORDER,
        payment_id="pay_1",
        amount_cents=4500,
        currency="EUR",
        confirms_registration=True,
    )
    declined = PaymentDeclined(
        convention_id=CONVENTION, registration_id=REGISTRATION, order_id=ORDER, payment_id="pay_0"
    )
    fold(projection, declined, paid)

    order = projection.orders[str(ORDER)]
    assert (order.status, order.paid_cents, order.payment_id) == (p.PAID, 4500, "pay_1")
    payments = rows_of(projection, p._INSERT_PAYMENT)
    assert [(r["payment_id"], r["status"], r["amount_cents"], r["currency"]) for r in payments] == [
        ("pay_0", "declined", None, None),
        ("pay_1", "paid", 4500, "EUR"),
    ]
    assert counts(projection) == ({}, {}, {})
    assert sold(projection)["Early"] == 3

    nothing_to_pay = fold(loaded(placed(SEAT)), changed(paid, payment_id=None, amount_cents=0))
    assert nothing_to_pay.orders[str(ORDER)].status == p.PAID
    assert rows_of(nothing_to_pay, p._INSERT_PAYMENT) == []


def test_an_expired_order_frees_its_lines_and_gives_its_promo_code_back() -> None:
    projection = loaded(placed(SEAT, SHIRTS))
    fold(
        projection,
        OrderExpired(
            convention_id=CONVENTION,
            registration_id=REGISTRATION,
            order_id=ORDER,
            lines=(SEAT, SHIRTS),
            expires_registration=True,
            promo_code="SAVE10",
        ),
    )
    assert projection.orders[str(ORDER)].status == p.EXPIRED
    assert sold(projection)["Early"] == 2
    assert counts(projection) == (
        {(CID, "TSHIRT"): -2},
        {(CID, "TSHIRT", "L"): -2},
        {(CID, "SAVE10"): -1},
    )


def test_a_cancellation_frees_released_options_and_cancels_every_holding_order() -> None:
    """As the decider counts: the seat's tier place and the promo code's use stay taken."""
    first = placed(SEAT, SHIRTS, status=p.PAID, promo_code=None)
    later = replace(
        placed(BANQUET),
        order_id=str(LATER_ORDER),
        first=False,
        created_at=NAIVE - timedelta(minutes=5),
    )
    projection = loaded(first, later)
    fold(
        projection,
        RegistrationCancelled(
            convention_id=CONVENTION,
            registration_id=REGISTRATION,
            badge_type="FULL",
            options_released=(SHIRTS, BANQUET),
        ),
    )
    assert projection.orders[str(ORDER)].status == p.CANCELLED
    assert projection.orders[str(LATER_ORDER)].status == p.CANCELLED
    assert projection.changed_orders == {str(ORDER), str(LATER_ORDER)}
    assert sold(projection)["Early"] == 3, "the seat stays counted at the tier it was sold at"
    assert counts(projection) == (
        {(CID, "TSHIRT"): -2, (CID, "BANQUET"): -1},
        {(CID, "TSHIRT", "L"): -2},
        {},
    )


def test_options_ordered_later_are_held_or_paid_at_once() -> None:
    ordered = OptionsOrdered(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        order=terms(SHIRTS, order_id=LATER_ORDER, promo_code=None),
        request_hash="h2",
        hold_until=HOLD,
    )
    held = fold(loaded(), ordered).orders[str(LATER_ORDER)]
    assert (held.status, held.first, held.hold_until) == (
        p.PENDING_PAYMENT,
        False,
        HOLD.replace(tzinfo=None),
    )
    free = fold(loaded(), changed(ordered, hold_until=None))
    assert free.orders[str(LATER_ORDER)].status == p.PAID
    assert counts(free) == ({(CID, "TSHIRT"): 2}, {(CID, "TSHIRT", "L"): 2}, {})


def test_options_given_back_are_freed_and_marked_on_the_order_lines_that_held_them() -> None:
    two_lines = placed(SEAT, SHIRTS, changed(SHIRTS, quantity=1), status=p.PAID)
    other = replace(placed(SHIRTS, status=p.PAID), order_id=str(LATER_ORDER), first=False)
    projection = loaded(two_lines, other)
    removed = OptionRemoved(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        order_id=ORDER,
        line=changed(SHIRTS, quantity=3, total_cents=6000),
    )
    fold(projection, removed)

    assert [line.removed for line in projection.orders[str(ORDER)].lines] == [0, 2, 1]
    assert projection.orders[str(ORDER)].lines[1].held == 0
    assert projection.changed_orders == {str(ORDER)}
    assert counts(projection) == ({(CID, "TSHIRT"): -3}, {(CID, "TSHIRT", "L"): -3}, {})


def test_a_promo_code_reprices_a_pending_order_and_counts_a_use() -> None:
    projection = loaded(placed(SEAT, SHIRTS, promo_code=None))
    repriced = terms(changed(SEAT, discount_cents=500, total_cents=4500), SHIRTS)
    fold(
        projection,
        PromoCodeApplied(convention_id=CONVENTION, registration_id=REGISTRATION, order=repriced),
    )
    order = projection.orders[str(ORDER)]
    assert (order.promo_code, order.total_cents) == ("SAVE10", repriced.total_cents)
    assert order.lines[0].discount_cents == 500
    assert sold(projection)["Early"] == 3
    assert counts(projection) == ({}, {}, {(CID, "SAVE10"): 1})


def test_price_tiers_replaced_keep_the_seats_sold_at_a_tier_that_keeps_its_name() -> None:
    projection = loaded(early_sold=7)
    fold(
        projection,
        order_placed(SEAT, promo_code=None),
        PriceTiersDefined(
            convention_id=CONVENTION,
            badge_type="FULL",
            tiers=(
                PriceTier(name="Late", price_cents=6000),
                PriceTier(name="Early", price_cents=4500, until=AT + timedelta(days=3)),
            ),
        ),
    )
    assert projection.tiers[(CID, "full")] == (
        TierRow(CID, "FULL", 0, "Late", 6000, None, None, 0),
        TierRow(CID, "FULL", 1, "Early", 4500, NAIVE + timedelta(days=3), None, 8),
    )
    fold(
        projection,
        changed(
            order_placed(changed(SEAT, tier="Late")),
            order=terms(changed(SEAT, tier="Late"), order_id=LATER_ORDER, promo_code=None),
        ),
    )
    assert sold(projection) == {"Late": 1, "Early": 8}
    assert projection.changed_tiers == {(CID, "full")}


def test_a_seat_sold_at_a_tier_no_longer_offered_counts_nowhere() -> None:
    projection = fold(loaded(), order_placed(changed(SEAT, tier="Gone"), promo_code=None))
    assert sold(projection) == {"Early": 3, "Regular": 0}
    assert projection.changed_tiers == set()


def test_catalogue_events_queue_their_rows_and_options_keep_their_place() -> None:
    projection = Projection(
        option_positions={CID: {"banquet": 0}},
        variant_positions={(CID, "tshirt"): {"m": 0}},
    )
    policy = OrderPolicy(currency="USD", hold_minutes=30)
    shirt = OptionSpec(
        code="TSHIRT",
        name="T-shirt",
        price_cents=2000,
        quota=50,
        max_per_registration=3,
        variants=(VariantSpec(code="M", name="M"), VariantSpec(code="L", name="L", quota=10)),
        badge_types=("FULL",),
    )
    fold(
        projection,
        ConventionCreated(
            convention_id=CONVENTION,
            name="Con",
            starts_on=AT.date(),
            ends_on=AT.date(),
            badge_types=(BadgeTypeSpec(code="FULL", name="Full", price_cents=5000, quota=10),),
            request_hash="h",
        ),
        OrderPolicySet(convention_id=CONVENTION, policy=policy),
        OptionDefined(convention_id=CONVENTION, option=shirt),
        OptionDefined(
            convention_id=CONVENTION,
            option=OptionSpec(code="banquet", name="Banquet dinner", price_cents=3000),
        ),
        PromoCodeCreated(
            convention_id=CONVENTION,
            promo=PromoCodeSpec(code="SAVE10", percent_off=10, options=("TSHIRT",), max_uses=5),
        ),
    )
    assert rows_of(projection, p._UPSERT_POLICY) == [
        {
            "convention_id": CID,
            "currency": "EUR",
            "hold_minutes": 15,
            "offer_minutes": 60,
            "refund_percent": 100,
        },
        {
            "convention_id": CID,
            "currency": "USD",
            "hold_minutes": 30,
            "offer_minutes": 60,
            "refund_percent": 100,
        },
    ]
    options = rows_of(projection, p._UPSERT_OPTION)
    assert [(o["code"], o["position"], o["taken"]) for o in options] == [
        ("TSHIRT", 1, 0),
        ("banquet", 0, 0),
    ]
    assert json.loads(options[0]["badge_types"]) == ["FULL"]
    variants = rows_of(projection, p._UPSERT_VARIANT)
    assert [(v["code"], v["quota"], v["position"]) for v in variants] == [
        ("M", None, 0),
        ("L", 10, 1),
    ]
    [promo] = rows_of(projection, p._INSERT_PROMO)
    assert (promo["code"], promo["uses"], promo["max_uses"], promo["created_at"]) == (
        "SAVE10",
        0,
        5,
        NAIVE,
    )
    assert json.loads(promo["options"]) == ["TSHIRT"]


def test_refunds_are_issued_then_completed() -> None:
    projection = loaded(placed(SEAT, status=p.PAID))
    refund_id = uuid.uuid4()
    fold(
        projection,
        RefundIssued(
            convention_id=CONVENTION,
            registration_id=REGISTRATION,
            order_id=ORDER,
            refund_id=refund_id,
            payment_id="pay_1",
            amount_cents=4000,
            currency="EUR",
            reason=RefundReason.CANCELLED,
        ),
        RefundCompleted(
            convention_id=CONVENTION, registration_id=REGISTRATION, refund_id=refund_id
        ),
    )
    [issued] = rows_of(projection, p._INSERT_REFUND)
    assert (issued["status"], issued["reason"], issued["amount_cents"]) == (
        "issued",
        "cancelled",
        4000,
    )
    assert rows_of(projection, p._COMPLETE_REFUND) == [{"b_id": str(refund_id), "b_at": NAIVE}]
    assert projection.orders[str(ORDER)].refunded_cents == 4000


def test_waitlist_offers_hold_option_units_until_they_end() -> None:
    shirt_l = stock_key("option", "TSHIRT", "L")
    joined = WaitlistJoined(
        convention_id=CONVENTION,
        entry_id=ENTRY,
        kind="option",
        code="TSHIRT",
        variant="L",
        quantity=2,
        email="Ada@Example.org",
        name="Ada",
        account_id=None,
        registration_id=REGISTRATION,
        position=1,
        seq=7,
        stock=shirt_l,
    )
    projection = fold(
        Projection(),
        joined,
        WaitlistOfferMade(
            convention_id=CONVENTION, entry_id=ENTRY, stock=shirt_l, quantity=2, expires_at=HOLD
        ),
        WaitlistOfferAccepted(
            convention_id=CONVENTION,
            entry_id=ENTRY,
            registration_id=REGISTRATION,
            stock=shirt_l,
            released=2,
        ),
    )
    [entry] = rows_of(projection, p._INSERT_ENTRY)
    assert (entry["status"], entry["seq"], entry["stock"], entry["email_key"]) == (
        "waiting",
        7,
        "option:TSHIRT/L",
        "ada@example.org",
    )
    assert rows_of(projection, p._OFFER) == [
        {"b_id": str(ENTRY), "b_until": HOLD.replace(tzinfo=None), "b_at": NAIVE}
    ]
    assert rows_of(projection, p._ACCEPT_OFFER) == [
        {"b_id": str(ENTRY), "b_reg": RID, "b_at": NAIVE}
    ]
    assert counts(projection) == ({}, {}, {})

    offered = fold(
        Projection(),
        WaitlistOfferMade(
            convention_id=CONVENTION, entry_id=ENTRY, stock=shirt_l, quantity=2, expires_at=HOLD
        ),
    )
    assert counts(offered) == ({(CID, "TSHIRT"): 2}, {(CID, "TSHIRT", "L"): 2}, {})
    ended = fold(
        Projection(),
        WaitlistOfferExpired(convention_id=CONVENTION, entry_id=ENTRY, stock=shirt_l, released=2),
        WaitlistLeft(convention_id=CONVENTION, entry_id=ENTRY, stock="option:BANQUET", released=0),
        WaitlistOfferMade(
            convention_id=CONVENTION,
            entry_id=ENTRY,
            stock="badge:FULL",
            quantity=1,
            expires_at=HOLD,
        ),
    )
    assert [row["b_status"] for row in rows_of(ended, p._SET_ENTRY_STATUS)] == ["expired", "left"]
    assert counts(ended) == ({(CID, "TSHIRT"): -2}, {(CID, "TSHIRT", "L"): -2}, {})


def test_the_tiers_a_batch_loads_cover_every_badge_it_may_count() -> None:
    old = placed(changed(SEAT, code="DAY"), status=p.PAID)
    events = [
        order_placed(SEAT),
        RegistrationCancelled(
            convention_id=CONVENTION, registration_id=REGISTRATION, badge_type="X"
        ),
        OrderExpired(
            convention_id=CONVENTION,
            registration_id=REGISTRATION,
            order_id=ORDER,
            lines=(changed(SEAT, code="Y"), SHIRTS),
            expires_registration=True,
        ),
    ]
    assert tier_keys(events, [old]) == {(CID, "FULL"), (CID, "X"), (CID, "Y"), (CID, "DAY")}


def test_stock_keys_read_back() -> None:
    assert parse_stock_key(stock_key("badge", "FULL")) == Stock("badge", "FULL")
    assert parse_stock_key(stock_key("option", "TSHIRT")) == Stock("option", "TSHIRT")
    assert parse_stock_key(stock_key("option", "TSHIRT", "L")) == Stock("option", "TSHIRT", "L")
