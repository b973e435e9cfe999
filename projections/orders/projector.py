"""The orders projector: `registration.events` into the order read models in `butterfly_read`
(what a convention sells, every registration's orders, payments, refunds and waitlist
places).

A batch first loads the rows its events need to know beyond what they carry (the orders of
the registrations they touch, the price tiers of the badge types they sell), folds every
event into them in memory (`Projection`), then writes the rows that changed. Counts that
only ever move by a difference (option units taken, promo code uses) are added at the end,
one statement per counter; everything else an event writes is a statement queued in event
order (`Writes`). Events already applied (a redelivery) are skipped by their id, recorded in
the same transaction as the rows they wrote. A record that is not a registration event, or
whose text does not fit the read model, goes to the dead-letter topic and the projector
moves on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import TopicPartition
from sqlalchemy import Column, String, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from projections.orders import tables as t
from projections.orders.stock import parse_stock_key
from schemas.catalogue import OptionSpec, OrderLine, OrderPolicy, PriceTier, PromoCodeSpec
from schemas.envelope import HEADER_TYPE, Envelope, UndecodableMessage, header
from schemas.identity import email_key
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
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferAccepted,
    WaitlistOfferExpired,
    WaitlistOfferMade,
)
from schemas.registration import (
    AttendeeRegistered,
    ConventionCreated,
    Event,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
)
from schemas.registry import decode_message

log = structlog.get_logger(__name__)

PENDING_PAYMENT = "pending_payment"
PAID = "paid"
EXPIRED = "expired"
CANCELLED = "cancelled"
HOLDING = (PENDING_PAYMENT, PAID)
"""Order statuses whose lines hold stock."""

WAITING = "waiting"
OFFERED = "offered"
ACCEPTED = "accepted"
LEFT = "left"

DECLINED = "declined"
ISSUED = "issued"
COMPLETED = "completed"

ORDERS_NEEDED = (
    PromoCodeApplied,
    OrderPaid,
    OrderExpired,
    RegistrationCancelled,
    OptionRemoved,
    RefundIssued,
)
"""Events that change orders placed before them: their registrations' orders are loaded."""

TierKey = tuple[str, str]
"""(convention id, badge type as the read model compares it)."""


class UnprojectableEvent(ValueError):
    """A well-formed event the read model cannot hold (text longer than its column)."""


def naive_utc(moment: datetime) -> datetime:
    """Read models store UTC without a zone."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None)


def collated(text: str) -> str:
    """A code as the read model's columns compare it (`utf8mb4_unicode_ci`, pad space), for
    the ASCII codes they hold: case and trailing spaces ignored."""
    return text.casefold().rstrip(" ")


@dataclass(frozen=True)
class LineRow:
    """A row of `order_lines` without its keys: one line of an order as priced."""

    kind: str
    code: str
    variant: str | None
    name: str
    quantity: int
    removed: int
    unit_price_cents: int
    tier: str | None
    discount_cents: int
    total_cents: int

    @classmethod
    def of(cls, line: OrderLine) -> LineRow:
        return cls(
            kind=line.kind,
            code=line.code,
            variant=line.variant,
            name=line.name,
            quantity=line.quantity,
            removed=0,
            unit_price_cents=line.unit_price_cents,
            tier=line.tier,
            discount_cents=line.discount_cents,
            total_cents=line.total_cents,
        )

    @property
    def held(self) -> int:
        """Units the line still holds: those not given back."""
        return self.quantity - self.removed


@dataclass(frozen=True)
class OrderRow:
    """A row of `orders` with its lines, as the fold sees it."""

    order_id: str
    registration_id: str
    convention_id: str
    status: str
    first: bool
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    paid_cents: int
    refunded_cents: int
    currency: str
    promo_code: str | None
    payment_id: str | None
    hold_until: datetime | None
    created_at: datetime
    updated_at: datetime
    lines: tuple[LineRow, ...] = ()

    def to_db(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        del row["lines"]
        return row

    def line_rows(self) -> list[dict[str, Any]]:
        keys = {
            "order_id": self.order_id,
            "registration_id": self.registration_id,
            "convention_id": self.convention_id,
        }
        return [keys | {"line_no": n} | asdict(line) for n, line in enumerate(self.lines)]


@dataclass(frozen=True)
class TierRow:
    """A row of `price_tiers`."""

    convention_id: str
    badge_type: str
    position: int
    name: str
    price_cents: int
    until: datetime | None
    size: int | None
    sold: int


def placed_order(
    event: OrderPlaced | AttendeeRegistered | OptionsOrdered,
    terms: OrderTerms,
    at: datetime,
    *,
    status: str,
    hold_until: datetime | None,
) -> OrderRow:
    return OrderRow(
        order_id=str(terms.order_id),
        registration_id=str(event.registration_id),
        convention_id=str(event.convention_id),
        status=status,
        first=not isinstance(event, OptionsOrdered),
        subtotal_cents=terms.subtotal_cents,
        discount_cents=terms.discount_cents,
        total_cents=terms.total_cents,
        paid_cents=0,
        refunded_cents=0,
        currency=terms.currency,
        promo_code=terms.promo_code,
        payment_id=None,
        hold_until=None if hold_until is None else naive_utc(hold_until),
        created_at=at,
        updated_at=at,
        lines=tuple(LineRow.of(line) for line in terms.lines),
    )


def give_back(lines: tuple[LineRow, ...], line: OrderLine) -> tuple[LineRow, ...]:
    """`lines` with `line`'s units of its option (and variant) marked given back, from the
    first lines still holding them."""
    units = line.quantity
    result = []
    for held in lines:
        if (held.kind, held.code, held.variant) == (line.kind, line.code, line.variant):
            returned = min(units, held.held)
            units -= returned
            held = replace(held, removed=held.removed + returned)
        result.append(held)
    return tuple(result)


@dataclass
class Writes:
    """Statements in the order their events came, each with its rows; a statement following
    itself is merged into one executemany."""

    steps: list[tuple[Executable, list[dict[str, Any]]]] = field(default_factory=list)

    def add(self, statement: Executable, *rows: dict[str, Any]) -> None:
        if self.steps and self.steps[-1][0] is statement:
            self.steps[-1][1].extend(rows)
        else:
            self.steps.append((statement, list(rows)))

    async def run(self, conn: AsyncConnection) -> None:
        for statement, rows in self.steps:
            if rows:
                await conn.execute(statement, rows)


@dataclass
class Projection:
    """What one batch does. `orders` and `tiers` start as the rows loaded for it and are
    folded event by event; the keys in `changed_orders` and `changed_tiers` are written."""

    orders: dict[str, OrderRow] = field(default_factory=dict)
    tiers: dict[TierKey, tuple[TierRow, ...]] = field(default_factory=dict)
    option_positions: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per convention, the position of each option code (collated) known."""
    variant_positions: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    """Per (convention, collated option code), the position of each variant code known."""
    loaded_lines: dict[str, tuple[LineRow, ...]] = field(default_factory=dict)
    """The lines of each order as loaded: lines that differ at the end are rewritten."""
    changed_orders: set[str] = field(default_factory=set)
    changed_tiers: set[TierKey] = field(default_factory=set)
    taken: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    """Option units taken (+) or freed (-), by (convention, option)."""
    variant_taken: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    """Option units taken or freed, by (convention, option, variant)."""
    uses: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    """Promo code uses, by (convention, code)."""
    writes: Writes = field(default_factory=Writes)
    applied: list[dict[str, Any]] = field(default_factory=list)

    def registration_orders(self, registration_id: str) -> list[OrderRow]:
        """The registration's orders, oldest first."""
        return sorted(
            (o for o in self.orders.values() if o.registration_id == registration_id),
            key=lambda o: (o.created_at, o.order_id),
        )

    def put(self, order: OrderRow) -> None:
        self.orders[order.order_id] = order
        self.changed_orders.add(order.order_id)

    def count_line(
        self, convention_id: str, line: OrderLine | LineRow, units: int | None = None
    ) -> None:
        """Take (`units` > 0) or free (< 0) a line's stock: its option and variant, or the
        seat of its badge type's tier. `units` defaults to the line's quantity."""
        amount = line.quantity if units is None else units
        if line.kind == "badge":
            if line.tier is not None:
                self.count_tier(convention_id, line.code, line.tier, amount)
        else:
            self.count_option(convention_id, line.code, line.variant, amount)

    def count_option(self, convention_id: str, code: str, variant: str | None, units: int) -> None:
        """An option unit with a variant counts against both the variant and the option."""
        self.taken[(convention_id, code)] += units
        if variant is not None:
            self.variant_taken[(convention_id, code, variant)] += units

    def count_tier(self, convention_id: str, badge_type: str, tier: str, seats: int) -> None:
        """Seats sold at a tier, counted on the tier of that name if it still exists (as the
        decider counts them)."""
        key = (convention_id, collated(badge_type))
        rows = self.tiers.get(key, ())
        if any(row.name == tier for row in rows):
            self.tiers[key] = tuple(
                replace(row, sold=row.sold + seats) if row.name == tier else row for row in rows
            )
            self.changed_tiers.add(key)

    def define_tiers(self, event: PriceTiersDefined) -> None:
        """Replace the badge type's tiers; a tier keeping its name keeps its seats sold."""
        cid = str(event.convention_id)
        key = (cid, collated(event.badge_type))
        sold = {row.name: row.sold for row in self.tiers.get(key, ())}
        self.tiers[key] = tuple(
            _tier_row(cid, event.badge_type, n, tier, sold.get(tier.name, 0))
            for n, tier in enumerate(event.tiers)
        )
        self.changed_tiers.add(key)

    def option_position(self, convention_id: str, code: str) -> int:
        """The option's place in the convention's list: kept, or next for a new one."""
        known = self.option_positions.setdefault(convention_id, {})
        return known.setdefault(collated(code), max(known.values(), default=-1) + 1)

    def variant_position(self, convention_id: str, option: str, code: str) -> int:
        known = self.variant_positions.setdefault((convention_id, collated(option)), {})
        return known.setdefault(collated(code), max(known.values(), default=-1) + 1)


def _tier_row(
    convention_id: str, badge_type: str, position: int, tier: PriceTier, sold: int
) -> TierRow:
    return TierRow(
        convention_id=convention_id,
        badge_type=badge_type,
        position=position,
        name=tier.name,
        price_cents=tier.price_cents,
        until=None if tier.until is None else naive_utc(tier.until),
        size=tier.size,
        sold=sold,
    )


def project_event(p: Projection, envelope: Envelope, event: Event) -> None:
    """Fold one event into the batch's projection (pure: nothing runs until it is written)."""
    at = naive_utc(envelope.occurred_at)
    cid = str(event.convention_id)
    p.applied.append({"event_id": str(envelope.message_id), "applied_at": at})
    w = p.writes
    match event:
        case ConventionCreated():
            w.add(_UPSERT_POLICY, _policy_row(cid, event.policy))
        case OrderPolicySet():
            w.add(_UPSERT_POLICY, _policy_row(cid, event.policy))
        case PriceTiersDefined():
            p.define_tiers(event)
        case OptionDefined():
            _define_option(p, cid, event.option)
        case PromoCodeCreated():
            w.add(_INSERT_PROMO, _promo_row(cid, event.promo, at))
        case OrderPlaced():
            _place(
                p,
                placed_order(
                    event, event.order, at, status=PENDING_PAYMENT, hold_until=event.hold_until
                ),
            )
        case AttendeeRegistered() if event.order is not None:
            _place(p, placed_order(event, event.order, at, status=PAID, hold_until=None))
        case OptionsOrdered():
            status = PAID if event.hold_until is None else PENDING_PAYMENT
            _place(
                p, placed_order(event, event.order, at, status=status, hold_until=event.hold_until)
            )
        case PromoCodeApplied():
            _reprice(p, event, at)
        case OrderPaid():
            _paid(p, envelope, event, at)
        case PaymentDeclined():
            w.add(_INSERT_PAYMENT, _payment_row(envelope, event, DECLINED, None, None, at))
        case OrderExpired():
            _expire(p, event, at)
        case RegistrationCancelled():
            _cancel(p, event, at)
        case OptionRemoved():
            _remove_option(p, event, at)
        case RefundIssued():
            _refund(p, event, at)
        case RefundCompleted():
            w.add(_COMPLETE_REFUND, {"b_id": str(event.refund_id), "b_at": at})
        case WaitlistJoined():
            w.add(_INSERT_ENTRY, _entry_row(event, at))
        case WaitlistOfferMade():
            _count_stock(p, cid, event.stock, event.quantity)
            w.add(
                _OFFER,
                {"b_id": str(event.entry_id), "b_until": naive_utc(event.expires_at), "b_at": at},
            )
        case WaitlistOfferExpired() | WaitlistLeft():
            _count_stock(p, cid, event.stock, -event.released)
            status = LEFT if isinstance(event, WaitlistLeft) else EXPIRED
            w.add(_SET_ENTRY_STATUS, {"b_id": str(event.entry_id), "b_status": status, "b_at": at})
        case WaitlistOfferAccepted():
            _count_stock(p, cid, event.stock, -event.released)
            w.add(
                _ACCEPT_OFFER,
                {"b_id": str(event.entry_id), "b_reg": str(event.registration_id), "b_at": at},
            )
        case _:
            pass


def _place(p: Projection, order: OrderRow) -> None:
    """A new order takes its stock and, with a promo code, one use of it."""
    p.put(order)
    for line in order.lines:
        p.count_line(order.convention_id, line)
    if order.promo_code is not None:
        p.uses[(order.convention_id, order.promo_code)] += 1


def _reprice(p: Projection, event: PromoCodeApplied, at: datetime) -> None:
    """New prices and totals for a pending order, and a use of the code: repricing holds
    the same units."""
    cid = str(event.convention_id)
    if event.order.promo_code is not None:
        p.uses[(cid, event.order.promo_code)] += 1
    order = p.orders.get(str(event.order.order_id))
    if order is None:
        return
    p.put(
        replace(
            order,
            lines=tuple(LineRow.of(line) for line in event.order.lines),
            subtotal_cents=event.order.subtotal_cents,
            discount_cents=event.order.discount_cents,
            total_cents=event.order.total_cents,
            promo_code=event.order.promo_code,
            updated_at=at,
        )
    )


def _paid(p: Projection, envelope: Envelope, event: OrderPaid, at: datetime) -> None:
    if event.payment_id is not None:
        p.writes.add(
            _INSERT_PAYMENT,
            _payment_row(envelope, event, PAID, event.amount_cents, event.currency, at),
        )
    order = p.orders.get(str(event.order_id))
    if order is None:
        return
    p.put(
        replace(
            order,
            status=PAID,
            paid_cents=order.paid_cents + event.amount_cents,
            payment_id=event.payment_id or order.payment_id,
            updated_at=at,
        )
    )


def _expire(p: Projection, event: OrderExpired, at: datetime) -> None:
    """The event's lines are what the expiry frees, and its promo code gets a use back."""
    cid = str(event.convention_id)
    for line in event.lines:
        p.count_line(cid, line, -line.quantity)
    if event.promo_code is not None:
        p.uses[(cid, event.promo_code)] -= 1
    order = p.orders.get(str(event.order_id))
    if order is None:
        return
    p.put(replace(order, status=EXPIRED, updated_at=at))


def _cancel(p: Projection, event: RegistrationCancelled, at: datetime) -> None:
    """The option units the event lists are free; every order holding stock is cancelled
    (paid ones get their refunds as events of their own). A seat sold at a price tier stays
    counted at it, and a promo code used stays used: they were sold, as the decider counts."""
    cid = str(event.convention_id)
    for released in event.options_released:
        p.count_line(cid, released, -released.quantity)
    for order in p.registration_orders(str(event.registration_id)):
        if order.status in HOLDING:
            p.put(replace(order, status=CANCELLED, updated_at=at))


def _remove_option(p: Projection, event: OptionRemoved, at: datetime) -> None:
    """Units given back are freed, and marked on the order's lines that held them."""
    p.count_line(str(event.convention_id), event.line, -event.line.quantity)
    order = p.orders.get(str(event.order_id))
    if order is None:
        return
    p.put(replace(order, lines=give_back(order.lines, event.line), updated_at=at))


def _refund(p: Projection, event: RefundIssued, at: datetime) -> None:
    p.writes.add(
        _INSERT_REFUND,
        {
            "refund_id": str(event.refund_id),
            "registration_id": str(event.registration_id),
            "order_id": str(event.order_id),
            "convention_id": str(event.convention_id),
            "payment_id": event.payment_id,
            "amount_cents": event.amount_cents,
            "currency": event.currency,
            "reason": event.reason.value,
            "status": ISSUED,
            "issued_at": at,
            "completed_at": None,
        },
    )
    order = p.orders.get(str(event.order_id))
    if order is not None:
        p.put(
            replace(order, refunded_cents=order.refunded_cents + event.amount_cents, updated_at=at)
        )


def _count_stock(p: Projection, convention_id: str, stock: str, units: int) -> None:
    """Units a waitlist offer holds: option units count here (seats on the website's
    badge types)."""
    held = parse_stock_key(stock)
    if held.kind == "option":
        p.count_option(convention_id, held.code, held.variant, units)


def _define_option(p: Projection, cid: str, option: OptionSpec) -> None:
    p.writes.add(
        _UPSERT_OPTION,
        {
            "convention_id": cid,
            "code": option.code,
            "name": option.name,
            "price_cents": option.price_cents,
            "quota": option.quota,
            "taken": 0,
            "max_per_registration": option.max_per_registration,
            "badge_types": json.dumps(list(option.badge_types)),
            "position": p.option_position(cid, option.code),
        },
    )
    p.writes.add(
        _UPSERT_VARIANT,
        *(
            {
                "convention_id": cid,
                "option_code": option.code,
                "code": variant.code,
                "name": variant.name,
                "quota": variant.quota,
                "taken": 0,
                "position": p.variant_position(cid, option.code, variant.code),
            }
            for variant in option.variants
        ),
    )


def _policy_row(cid: str, policy: OrderPolicy) -> dict[str, Any]:
    return {"convention_id": cid, **policy.model_dump()}


def _promo_row(cid: str, promo: PromoCodeSpec, at: datetime) -> dict[str, Any]:
    return {
        "convention_id": cid,
        "code": promo.code,
        "percent_off": promo.percent_off,
        "amount_off_cents": promo.amount_off_cents,
        "badge_types": json.dumps(list(promo.badge_types)),
        "options": json.dumps(list(promo.options)),
        "max_uses": promo.max_uses,
        "uses": 0,
        "valid_from": None if promo.valid_from is None else naive_utc(promo.valid_from),
        "valid_until": None if promo.valid_until is None else naive_utc(promo.valid_until),
        "created_at": at,
    }


def _payment_row(
    envelope: Envelope,
    event: OrderPaid | PaymentDeclined,
    status: str,
    amount_cents: int | None,
    currency: str | None,
    at: datetime,
) -> dict[str, Any]:
    return {
        "event_id": str(envelope.message_id),
        "payment_id": event.payment_id,
        "order_id": str(event.order_id),
        "registration_id": str(event.registration_id),
        "convention_id": str(event.convention_id),
        "status": status,
        "amount_cents": amount_cents,
        "currency": currency,
        "recorded_at": at,
    }


def _entry_row(event: WaitlistJoined, at: datetime) -> dict[str, Any]:
    return {
        "entry_id": str(event.entry_id),
        "convention_id": str(event.convention_id),
        "kind": event.kind,
        "code": event.code,
        "variant": event.variant,
        "stock": event.stock,
        "seq": event.seq,
        "quantity": event.quantity,
        "email": event.email,
        "email_key": _email_key(event.email),
        "name": event.name,
        "account_id": None if event.account_id is None else str(event.account_id),
        "registration_id": None if event.registration_id is None else str(event.registration_id),
        "status": WAITING,
        "offer_expires_at": None,
        "accepted_registration_id": None,
        "joined_at": at,
        "updated_at": at,
    }


def _email_key(email: str) -> str | None:
    """The identity key an account finds its places in line by; None for an address that
    has none."""
    try:
        return email_key(email)
    except ValueError:
        return None


def _text_limits(table: Any) -> dict[str, int]:
    return {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, String) and column.type.length
    }


_LIMITS = {table.name: _text_limits(table) for table in t.metadata.sorted_tables}


def _too_long(column: Column[Any], value: str | None) -> str | None:
    limit = _LIMITS[column.table.name][column.name]
    if value is None or len(value) <= limit:
        return None
    return f"{column.table.name}.{column.name} holds {limit} characters; the event has {len(value)}"


def _texts(event: Event) -> Iterable[tuple[Column[Any], str | None]]:
    """The text an event writes that its schema does not bound, with the column it goes to."""
    lines: tuple[OrderLine, ...] = ()
    terms: OrderTerms | None = None
    c = t.order_lines.c
    match event:
        case OrderPlaced() | OptionsOrdered() | PromoCodeApplied():
            terms = event.order
        case AttendeeRegistered():
            terms = event.order
        case OrderExpired():
            lines = event.lines
        case RegistrationCancelled():
            lines = event.options_released
        case OptionRemoved():
            lines = (event.line,)
        case PriceTiersDefined():
            yield t.price_tiers.c.badge_type, event.badge_type
        case OrderPaid():
            yield t.payments.c.payment_id, event.payment_id
            yield t.payments.c.currency, event.currency
        case PaymentDeclined():
            yield t.payments.c.payment_id, event.payment_id
        case RefundIssued():
            yield t.refunds.c.payment_id, event.payment_id
            yield t.refunds.c.currency, event.currency
        case WaitlistJoined():
            for name in ("code", "variant", "stock", "email", "name"):
                yield t.waitlist_entries.c[name], getattr(event, name)
        case _:
            pass
    if terms is not None:
        lines = terms.lines
        yield t.orders.c.currency, terms.currency
        yield t.orders.c.promo_code, terms.promo_code
    for line in lines:
        yield c.code, line.code
        yield c.variant, line.variant
        yield c.name, line.name
        yield c.tier, line.tier


def check_fits(event: Event) -> None:
    """Raise `UnprojectableEvent` if the event's text does not fit its columns (in
    characters, as utf8mb4 counts them): events carry what their decider copied, and a
    hostile one must not fail every batch after it."""
    for column, value in _texts(event):
        problem = _too_long(column, value)
        if problem is not None:
            raise UnprojectableEvent(f"{event.message_type}: {problem}")


def decode_events(
    records: Sequence[Record],
) -> tuple[list[tuple[Envelope, Event]], list[DeadLetter]]:
    """The registration events among `records`, and the records to dead-letter: anything
    that is not an event (a command published here by mistake included) or does not fit."""
    events: list[tuple[Envelope, Event]] = []
    dead_letters: list[DeadLetter] = []
    for record in records:
        try:
            envelope, message = decode_message(record.value, header(record.headers, HEADER_TYPE))
            if not isinstance(message, Event):
                raise UndecodableMessage(f"{envelope.type} is a command, not an event")
            check_fits(message)
        except (UndecodableMessage, UnprojectableEvent) as exc:
            dead_letters.append(DeadLetter(record, exc))
            continue
        events.append((envelope, message))
    return events, dead_letters


class OrdersProjector:
    """Projects `registration.events` into the order read models."""

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        events, dead_letters = decode_events(records)
        fresh = await _unapplied(conn, events)
        projection = await load_projection(conn, fresh)
        for envelope, event in fresh:
            project_event(projection, envelope, event)
        await write_projection(conn, projection)
        log.debug(
            "orders_batch_projected",
            partition=f"{tp.topic}[{tp.partition}]",
            records=len(records),
            events=len(fresh),
            dead_letters=len(dead_letters),
        )
        return HandledBatch(dead_letters=dead_letters)


async def _unapplied(
    conn: AsyncConnection, events: list[tuple[Envelope, Event]]
) -> list[tuple[Envelope, Event]]:
    """The events not applied before (a redelivery), each once."""
    if not events:
        return []
    ids = list({str(envelope.message_id) for envelope, _ in events})
    applied = set((await conn.execute(_APPLIED, {"ids": ids})).scalars())
    fresh = []
    for envelope, event in events:
        event_id = str(envelope.message_id)
        if event_id not in applied:
            applied.add(event_id)
            fresh.append((envelope, event))
    return fresh


def tier_keys(events: Iterable[Event], orders: Iterable[OrderRow]) -> set[tuple[str, str]]:
    """(convention, badge type) of every price tier the events may count a seat on or
    replace: badge lines they carry, badge types they name, and the badge lines of the
    orders loaded for them."""
    keys: set[tuple[str, str]] = set()
    for event in events:
        cid = str(event.convention_id)
        badge_type = getattr(event, "badge_type", None)
        if isinstance(badge_type, str):
            keys.add((cid, badge_type))
        order = getattr(event, "order", None)
        lines = order.lines if isinstance(order, OrderTerms) else getattr(event, "lines", ())
        keys.update((cid, line.code) for line in lines if line.kind == "badge")
    for loaded in orders:
        keys.update(
            (loaded.convention_id, line.code) for line in loaded.lines if line.kind == "badge"
        )
    return keys


async def load_projection(
    conn: AsyncConnection, events: Sequence[tuple[Envelope, Event]]
) -> Projection:
    """The rows the batch's events change beyond what they carry."""
    p = Projection()
    if not events:
        return p
    registrations = sorted(
        {str(event.registration_id) for _, event in events if isinstance(event, ORDERS_NEEDED)}
    )
    if registrations:
        lines: dict[str, list[LineRow]] = defaultdict(list)
        for row in await conn.execute(_SELECT_LINES, {"ids": registrations}):
            values = row._asdict()
            lines[values["order_id"]].append(
                LineRow(**{f.name: values[f.name] for f in fields(LineRow)})
            )
        for row in await conn.execute(_SELECT_ORDERS, {"ids": registrations}):
            values = row._asdict()
            values["first"] = bool(values["first"])
            order = OrderRow(**values, lines=tuple(lines[values["order_id"]]))
            p.orders[order.order_id] = order
            p.loaded_lines[order.order_id] = order.lines
    keys = sorted(tier_keys((event for _, event in events), p.orders.values()))
    if keys:
        tiers: dict[TierKey, list[TierRow]] = defaultdict(list)
        for row in await conn.execute(_SELECT_TIERS, {"keys": keys}):
            tier = TierRow(**row._asdict())
            tiers[(tier.convention_id, collated(tier.badge_type))].append(tier)
        p.tiers = {key: tuple(rows) for key, rows in tiers.items()}
    conventions = sorted(
        {str(event.convention_id) for _, event in events if isinstance(event, OptionDefined)}
    )
    if conventions:
        for row in await conn.execute(_SELECT_OPTION_POSITIONS, {"ids": conventions}):
            p.option_positions.setdefault(row.convention_id, {})[collated(row.code)] = row.position
        for row in await conn.execute(_SELECT_VARIANT_POSITIONS, {"ids": conventions}):
            key = (row.convention_id, collated(row.option_code))
            p.variant_positions.setdefault(key, {})[collated(row.code)] = row.position
    return p


async def write_projection(conn: AsyncConnection, p: Projection) -> None:
    await p.writes.run(conn)
    orders = [p.orders[order_id] for order_id in sorted(p.changed_orders)]
    if orders:
        await conn.execute(_UPSERT_ORDER, [order.to_db() for order in orders])
    relined = [o for o in orders if p.loaded_lines.get(o.order_id) != o.lines]
    stale = [{"b_id": o.order_id} for o in relined if o.order_id in p.loaded_lines]
    if stale:
        await conn.execute(_DELETE_LINES, stale)
    line_rows = [row for order in relined for row in order.line_rows()]
    if line_rows:
        await conn.execute(_INSERT_LINES, line_rows)
    tier_keys_changed = sorted(p.changed_tiers)
    if tier_keys_changed:
        await conn.execute(
            _DELETE_TIERS, [{"b_cid": cid, "b_badge": badge} for cid, badge in tier_keys_changed]
        )
        tier_rows = [asdict(row) for key in tier_keys_changed for row in p.tiers[key]]
        if tier_rows:
            await conn.execute(_INSERT_TIERS, tier_rows)
    taken = [
        {"b_cid": cid, "b_code": code, "b_delta": delta}
        for (cid, code), delta in sorted(p.taken.items())
        if delta
    ]
    if taken:
        await conn.execute(_ADD_TAKEN, taken)
    variant_taken = [
        {"b_cid": cid, "b_option": option, "b_code": code, "b_delta": delta}
        for (cid, option, code), delta in sorted(p.variant_taken.items())
        if delta
    ]
    if variant_taken:
        await conn.execute(_ADD_VARIANT_TAKEN, variant_taken)
    uses = [
        {"b_cid": cid, "b_code": code, "b_delta": delta}
        for (cid, code), delta in sorted(p.uses.items())
        if delta
    ]
    if uses:
        await conn.execute(_ADD_USES, uses)
    if p.applied:
        await conn.execute(_INSERT_APPLIED, p.applied)


# Statements built once, run as executemany. Bound names differ from column names: an
# UPDATE may not bind a name its SET clause uses.
_APPLIED = select(t.applied_events.c.event_id).where(
    t.applied_events.c.event_id.in_(bindparam("ids", expanding=True))
)
_INSERT_APPLIED = insert(t.applied_events)
_policy = insert(t.order_policies)
_UPSERT_POLICY = _policy.on_duplicate_key_update(
    {
        name: _policy.inserted[name]
        for name in ("currency", "hold_minutes", "offer_minutes", "refund_percent")
    }
)
_option = insert(t.options)
_UPSERT_OPTION = _option.on_duplicate_key_update(
    {
        name: _option.inserted[name]
        for name in ("name", "price_cents", "quota", "max_per_registration", "badge_types")
    }
)
"""A changed option keeps its units taken and its place in the list."""
_variant = insert(t.option_variants)
_UPSERT_VARIANT = _variant.on_duplicate_key_update(
    {name: _variant.inserted[name] for name in ("name", "quota")}
)
_INSERT_PROMO = insert(t.promo_codes).prefix_with("IGNORE")
_o = t.orders.c
_SELECT_ORDERS = select(t.orders).where(_o.registration_id.in_(bindparam("ids", expanding=True)))
_SELECT_LINES = (
    select(t.order_lines)
    .where(t.order_lines.c.registration_id.in_(bindparam("ids", expanding=True)))
    .order_by(t.order_lines.c.order_id, t.order_lines.c.line_no)
)
_order = insert(t.orders)
_UPSERT_ORDER = _order.on_duplicate_key_update(
    {
        column.name: _order.inserted[column.name]
        for column in t.orders.columns
        if column.name not in ("order_id", "created_at")
    }
)
_DELETE_LINES = delete(t.order_lines).where(t.order_lines.c.order_id == bindparam("b_id"))
_INSERT_LINES = insert(t.order_lines)
_pt = t.price_tiers.c
_SELECT_TIERS = (
    select(t.price_tiers)
    .where(tuple_(_pt.convention_id, _pt.badge_type).in_(bindparam("keys", expanding=True)))
    .order_by(_pt.convention_id, _pt.badge_type, _pt.position)
)
_DELETE_TIERS = delete(t.price_tiers).where(
    _pt.convention_id == bindparam("b_cid"), _pt.badge_type == bindparam("b_badge")
)
_INSERT_TIERS = insert(t.price_tiers)
_SELECT_OPTION_POSITIONS = select(
    t.options.c.convention_id, t.options.c.code, t.options.c.position
).where(t.options.c.convention_id.in_(bindparam("ids", expanding=True)))
_v = t.option_variants.c
_SELECT_VARIANT_POSITIONS = select(_v.convention_id, _v.option_code, _v.code, _v.position).where(
    _v.convention_id.in_(bindparam("ids", expanding=True))
)
_ADD_TAKEN = (
    update(t.options)
    .where(t.options.c.convention_id == bindparam("b_cid"), t.options.c.code == bindparam("b_code"))
    .values(taken=t.options.c.taken + bindparam("b_delta"))
)
_ADD_VARIANT_TAKEN = (
    update(t.option_variants)
    .where(
        _v.convention_id == bindparam("b_cid"),
        _v.option_code == bindparam("b_option"),
        _v.code == bindparam("b_code"),
    )
    .values(taken=_v.taken + bindparam("b_delta"))
)
_pc = t.promo_codes.c
_ADD_USES = (
    update(t.promo_codes)
    .where(_pc.convention_id == bindparam("b_cid"), _pc.code == bindparam("b_code"))
    .values(uses=_pc.uses + bindparam("b_delta"))
)
_INSERT_PAYMENT = insert(t.payments).prefix_with("IGNORE")
_INSERT_REFUND = insert(t.refunds).prefix_with("IGNORE")
_r = t.refunds.c
_COMPLETE_REFUND = (
    update(t.refunds)
    .where(_r.refund_id == bindparam("b_id"))
    .values(status=COMPLETED, completed_at=bindparam("b_at"))
)
_INSERT_ENTRY = insert(t.waitlist_entries).prefix_with("IGNORE")
_w = t.waitlist_entries.c
_OFFER = (
    update(t.waitlist_entries)
    .where(_w.entry_id == bindparam("b_id"))
    .values(status=OFFERED, offer_expires_at=bindparam("b_until"), updated_at=bindparam("b_at"))
)
_SET_ENTRY_STATUS = (
    update(t.waitlist_entries)
    .where(_w.entry_id == bindparam("b_id"))
    .values(status=bindparam("b_status"), updated_at=bindparam("b_at"))
)
_ACCEPT_OFFER = (
    update(t.waitlist_entries)
    .where(_w.entry_id == bindparam("b_id"))
    .values(
        status=ACCEPTED, accepted_registration_id=bindparam("b_reg"), updated_at=bindparam("b_at")
    )
)
