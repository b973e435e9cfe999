"""The star schema's rules, event by event, without a database: which rows an event writes,
that accounts are pseudonymous, and that the ERD in the docs is the tables'."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from projections.reporting import tables as t
from projections.reporting.erd import DOC, current_diagram, mermaid_erd
from projections.reporting.star import Known, StarImage, Write, account_key
from schemas.catalogue import OrderLine
from schemas.envelope import Envelope
from schemas.lodging import RoomCancelled, RoomHeld, Stay
from schemas.orders import OrderPaid, RefundIssued, RefundReason
from schemas.registration import Message, OrderPlaced, OrderTerms
from schemas.registry import wrap

SECRET = "test-secret"
AT = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
CONVENTION = uuid.uuid4()
REGISTRATION = uuid.uuid4()
ORDER = uuid.uuid4()


def envelope(message: Message) -> Envelope:
    return wrap(
        message,
        message_id=uuid.uuid4(),
        occurred_at=AT,
        correlation_id=uuid.uuid4(),
        causation_id=None,
        key=str(CONVENTION),
        actor="test",
    )


def writes(*messages: Message, known: Known | None = None) -> list[Write]:
    image = StarImage(SECRET, known)
    for message in messages:
        image.apply(envelope(message), message)
    return image.result()


def of(found: list[Write], table: object) -> list[Write]:
    return [w for w in found if w.table is table]


def placed(email: str = "Ada@Example.org") -> OrderPlaced:
    lines = (
        OrderLine(
            kind="badge",
            code="STD",
            name="Standard",
            quantity=1,
            unit_price_cents=5000,
            total_cents=5000,
        ),
        OrderLine(
            kind="option",
            code="TSHIRT",
            variant="L",
            name="T-shirt",
            quantity=2,
            unit_price_cents=1500,
            discount_cents=500,
            total_cents=2500,
        ),
    )
    return OrderPlaced(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        email=email,
        name="Ada Lovelace",
        badge_type="STD",
        request_hash="h",
        order=OrderTerms(
            order_id=ORDER,
            lines=lines,
            subtotal_cents=8000,
            discount_cents=500,
            total_cents=7500,
            currency="EUR",
        ),
        hold_until=AT,
    )


def test_an_order_placed_is_a_registration_its_lines_and_a_sale_of_the_day() -> None:
    found = writes(placed())
    (registration,) = of(found, t.fact_registrations)
    assert registration.op == "upsert"
    assert registration.values["status"] == "pending_payment"
    assert registration.values["total_cents"] == 7500
    assert registration.values["created_on"] == date(2027, 3, 1)
    lines = of(found, t.fact_order_lines)
    assert [(w.values["kind"], w.values["quantity"], w.values["total_cents"]) for w in lines] == [
        ("badge", 1, 5000),
        ("option", 2, 2500),
    ]
    (daily,) = of(found, t.fact_daily_sales)
    assert daily.op == "accumulate"
    assert (daily.values["registrations"], daily.values["revenue_cents"]) == (1, 0)
    assert [w.values["date_key"] for w in of(found, t.dim_date)] == [date(2027, 3, 1)]


def test_accounts_are_keyed_hashes_of_the_email_identity_never_the_address() -> None:
    found = writes(placed("Ada@Example.org"))
    key = of(found, t.fact_registrations)[0].values["account_key"]
    assert key == account_key(SECRET, "ada@example.org")
    assert key != account_key("another secret", "ada@example.org")
    assert len(key) == 64
    every_value = [str(v) for w in found for v in w.values.values()]
    # Pseudonyms and ids are hexadecimal: "ada" can stand in them by chance; the address
    # and the name cannot.
    assert not any("@example.org" in v.lower() or "lovelace" in v.lower() for v in every_value)


def test_payment_and_refund_move_the_day_s_revenue_of_the_registration_s_badge_type() -> None:
    known = Known(badge_types={str(REGISTRATION): "STD"})
    paid = OrderPaid(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        order_id=ORDER,
        payment_id="pay_1",
        amount_cents=7500,
        currency="EUR",
        confirms_registration=True,
    )
    refund = RefundIssued(
        convention_id=CONVENTION,
        registration_id=REGISTRATION,
        order_id=ORDER,
        refund_id=uuid.uuid4(),
        payment_id="pay_1",
        amount_cents=3000,
        currency="EUR",
        reason=RefundReason.CANCELLED,
    )
    found = writes(paid, refund, known=known)
    daily = of(found, t.fact_daily_sales)
    assert [(w.values["badge_type"], w.values["revenue_cents"]) for w in daily] == [
        ("STD", 7500),
        ("STD", -3000),
    ]
    assert of(found, t.fact_payments)[0].values["amount_cents"] == 7500
    assert of(found, t.fact_refunds)[0].values["reason"] == "cancelled"
    status = [w for w in of(found, t.fact_registrations) if w.op == "update"]
    assert status[0].values["status"] == "confirmed"


def test_a_held_room_is_one_row_per_night_and_a_cancellation_releases_them() -> None:
    request = uuid.uuid4()
    stay = Stay(
        room_type="DBL", check_in=date(2027, 5, 1), check_out=date(2027, 5, 4), guests=("Ada",)
    )
    held = RoomHeld(
        convention_id=CONVENTION,
        request_id=request,
        hotel="GRAND",
        ack="A1",
        stay=stay,
        total_cents=30000,
    )
    found = writes(
        held,
        RoomCancelled(convention_id=CONVENTION, request_id=request, by="attendee", release=True),
    )
    nights = of(found, t.fact_lodging_nights)
    assert [w.op for w in nights] == [
        "delete",
        "insert_ignore",
        "insert_ignore",
        "insert_ignore",
        "update",
    ]
    assert {w.values["rate_cents"] for w in nights[1:4]} == {10000}
    assert nights[-1].values["status"] == "released"
    assert of(found, t.dim_hotel)[0].op == "insert_ignore"


def test_the_erd_in_the_docs_is_drawn_from_the_tables() -> None:
    assert current_diagram(DOC.read_text()) == mermaid_erd(), (
        "docs/REPORTING.md is out of date: run `python -m projections.reporting.erd`"
    )
