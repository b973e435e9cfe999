"""The star schema, from events: what each event changes in the facts and dimensions.

`StarImage` turns a batch's events, in order, into `Write`s without touching the database
(so the rules are unit-tested as plain functions); `apply_writes` runs them inside the
reporting projector's transaction, after the archive insert that dedupes events by id, so
each event reaches the star schema exactly once. Counters (`fact_daily_sales`, the money
on `fact_registrations`) are therefore maintained incrementally, never recomputed.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, bindparam, delete, func, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from projections.reporting import tables as t
from schemas.catalogue import OrderLine
from schemas.envelope import Envelope
from schemas.identity import InvalidEmail, email_key
from schemas.lodging import (
    HotelBlockChanged,
    HotelInventorySynced,
    RoomCancelled,
    RoomChanged,
    RoomConfirmed,
    RoomHeld,
    RoomRequestFailed,
    RoomRequeued,
    RoomWaitlisted,
    Stay,
)
from schemas.orders import (
    BadgeQuotaSet,
    OptionDefined,
    OptionRemoved,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    PaymentDeclined,
    PromoCodeApplied,
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
    ConventionClosed,
    ConventionCreated,
    ConventionOpened,
    Message,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationTransferred,
)

Op = Literal["upsert", "insert_ignore", "update", "add", "accumulate", "delete", "recount"]

ROOMS_PICKED_UP = ("held", "confirmed")
"""Statuses of `fact_lodging_nights` that count against a hotel's block."""
STANDING_ORDERS = ("pending_payment", "paid", "confirmed", "cancelled", "removed")
"""Order statuses whose lines count in a registration's totals (an expired order never sold)."""
DEFAULT_CURRENCY = "EUR"


@dataclass(frozen=True)
class Write:
    """One change to one star table. `values` are the row (or the columns set); `where`
    picks the rows for `update`, `add`, `delete` (a tuple value means IN)."""

    table: Table
    op: Op
    values: Mapping[str, Any] = field(default_factory=dict)
    where: Mapping[str, Any] = field(default_factory=dict)


def account_key(secret: str, email: str) -> str:
    """The pseudonym of an e-mail identity: HMAC-SHA256 under the reporting secret, so two
    registrations of one person share a key while nobody without the secret can test a
    guessed address against it (a plain hash could be)."""
    try:
        identity = email_key(email)
    except InvalidEmail:
        identity = email.strip().casefold()
    return hmac.new(secret.encode(), identity.encode(), hashlib.sha256).hexdigest()


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def date_row(day: date) -> dict[str, Any]:
    iso = day.isocalendar()
    return {
        "date_key": day,
        "year": day.year,
        "quarter": (day.month - 1) // 3 + 1,
        "month": day.month,
        "day": day.day,
        "iso_week": iso.week,
        "weekday": iso.weekday,
        "is_weekend": iso.weekday >= 6,
    }


@dataclass
class Known:
    """What the batch's events need to know beyond themselves: each registration's badge
    type and each convention's currency, loaded before the batch and kept current as it is
    folded."""

    badge_types: dict[str, str] = field(default_factory=dict)
    currencies: dict[str, str] = field(default_factory=dict)


class StarImage:
    """The writes of one batch of events, in order."""

    def __init__(self, secret: str, known: Known | None = None) -> None:
        self.secret = secret
        self.known = known or Known()
        self.writes: list[Write] = []
        self.dates: set[date] = set()

    def result(self) -> list[Write]:
        """Every write, with the dates they reference added to `dim_date` first."""
        days = [Write(t.dim_date, "insert_ignore", date_row(d)) for d in sorted(self.dates)]
        return days + self.writes

    def _add(self, table: Table, op: Op, values: Mapping[str, Any], **where: Any) -> None:
        self.writes.append(Write(table, op, values, where))

    def _day(self, moment: datetime) -> date:
        day = moment.date()
        self.dates.add(day)
        return day

    def apply(self, envelope: Envelope, message: Message) -> None:
        at = naive_utc(envelope.occurred_at)
        convention = str(message.convention_id)
        match message:
            case ConventionCreated():
                self._convention(message, convention, at)
            case ConventionOpened():
                self._add(
                    t.dim_convention,
                    "update",
                    {"status": "open", "opened_at": at},
                    convention_id=convention,
                )
            case ConventionClosed():
                self._add(
                    t.dim_convention,
                    "update",
                    {"status": "closed", "closed_at": at},
                    convention_id=convention,
                )
            case BadgeQuotaSet():
                self._add(
                    t.dim_badge_type,
                    "update",
                    {"quota": message.quota},
                    convention_id=convention,
                    badge_type=message.badge_type,
                )
            case OptionDefined():
                option = message.option
                self._add(
                    t.dim_option,
                    "upsert",
                    {
                        "convention_id": convention,
                        "option_code": option.code,
                        "name": option.name,
                        "price_cents": option.price_cents,
                        "quota": option.quota,
                    },
                )
            case OrderPlaced() | AttendeeRegistered():
                self._registered(message, convention, at)
            case RegistrationRejected():
                self._rejected(message, convention, at)
            case RegistrationCancelled():
                self._cancelled(message, convention, at)
            case RegistrationTransferred():
                key = self._account(message.email, at)
                self._add(
                    t.fact_registrations,
                    "update",
                    {"account_key": key, "signed_in": True},
                    registration_id=str(message.registration_id),
                )
            case OptionsOrdered():
                status = "pending_payment" if message.hold_until else "confirmed"
                self._lines(message.order, str(message.registration_id), convention, status, at)
                self._recount(message.registration_id)
            case PromoCodeApplied():
                order = message.order
                self._add(t.fact_order_lines, "delete", {}, order_id=str(order.order_id))
                self._lines(order, str(message.registration_id), convention, "pending_payment", at)
                self._recount(message.registration_id)
            case OptionRemoved():
                self._option_removed(message, convention, envelope.message_id, at)
            case OrderPaid():
                self._paid(message, convention, envelope.message_id, at)
            case PaymentDeclined():
                self._add(
                    t.fact_payments,
                    "insert_ignore",
                    {
                        "payment_key": str(envelope.message_id),
                        "payment_id": message.payment_id,
                        "order_id": str(message.order_id),
                        "registration_id": str(message.registration_id),
                        "convention_id": convention,
                        "outcome": "declined",
                        "amount_cents": 0,
                        "currency": self._currency(convention),
                        "paid_at": at,
                        "paid_on": self._day(at),
                    },
                )
            case OrderExpired():
                self._add(
                    t.fact_order_lines,
                    "update",
                    {"order_status": "expired"},
                    order_id=str(message.order_id),
                )
                if message.expires_registration:
                    self._add(
                        t.fact_registrations,
                        "update",
                        {"status": "expired", "decided_at": at},
                        registration_id=str(message.registration_id),
                    )
                self._recount(message.registration_id)
            case RefundIssued():
                self._refund(message, convention, at)
            case RefundCompleted():
                self._add(
                    t.fact_refunds, "update", {"completed_at": at}, refund_id=str(message.refund_id)
                )
            case WaitlistJoined():
                self._add(
                    t.fact_waitlist_entries,
                    "insert_ignore",
                    {
                        "entry_id": str(message.entry_id),
                        "convention_id": convention,
                        "kind": message.kind,
                        "code": message.code,
                        "variant": message.variant,
                        "quantity": message.quantity,
                        "account_key": self._account(message.email, at),
                        "status": "waiting",
                        "joined_at": at,
                        "joined_on": self._day(at),
                        "offered_at": None,
                        "ended_at": None,
                        "registration_id": None,
                    },
                )
            case WaitlistOfferMade():
                self._add(
                    t.fact_waitlist_entries,
                    "update",
                    {"status": "offered", "offered_at": at},
                    entry_id=str(message.entry_id),
                )
            case WaitlistOfferAccepted():
                self._add(
                    t.fact_waitlist_entries,
                    "update",
                    {
                        "status": "accepted",
                        "ended_at": at,
                        "registration_id": str(message.registration_id),
                    },
                    entry_id=str(message.entry_id),
                )
            case WaitlistLeft():
                self._waitlist_ended(message.entry_id, "left", at)
            case WaitlistOfferExpired():
                self._waitlist_ended(message.entry_id, "expired", at)
            case HotelInventorySynced() if message.error is None:
                self._inventory(message, convention)
            case HotelBlockChanged():
                self._hotel(convention, message.hotel)
                self._add(
                    t.fact_block_nights,
                    "upsert",
                    {
                        "convention_id": convention,
                        "hotel_code": message.hotel,
                        "room_type": message.room_type,
                        "night": self._night(message.night),
                        "size": message.size,
                        "rate_cents": message.rate_cents,
                    },
                )
            case RoomHeld() | RoomConfirmed() | RoomChanged():
                status = "held" if isinstance(message, RoomHeld) else "confirmed"
                self._nights(
                    message.request_id,
                    convention,
                    message.hotel,
                    message.stay,
                    message.total_cents,
                    status,
                    at,
                )
            case RoomCancelled() | RoomRequeued() | RoomRequestFailed() | RoomWaitlisted():
                self._add(
                    t.fact_lodging_nights,
                    "update",
                    {"status": "released", "updated_at": at},
                    request_id=str(message.request_id),
                )
            case _:
                pass

    # --- registrations and orders ----------------------------------------------------------

    def _convention(self, message: ConventionCreated, convention: str, at: datetime) -> None:
        currency = message.policy.currency
        self.known.currencies[convention] = currency
        self._day(at)
        self._add(
            t.dim_convention,
            "upsert",
            {
                "convention_id": convention,
                "name": message.name,
                "starts_on": message.starts_on,
                "ends_on": message.ends_on,
                "currency": currency,
                "status": "draft",
                "created_at": at,
                "opened_at": None,
                "closed_at": None,
            },
        )
        for badge in message.badge_types:
            self._add(
                t.dim_badge_type,
                "upsert",
                {
                    "convention_id": convention,
                    "badge_type": badge.code,
                    "name": badge.name,
                    "price_cents": badge.price_cents,
                    "quota": badge.quota,
                },
            )

    def _registered(
        self, message: OrderPlaced | AttendeeRegistered, convention: str, at: datetime
    ) -> None:
        registration = str(message.registration_id)
        confirmed = isinstance(message, AttendeeRegistered)
        order = message.order
        badge_line = (
            next((line for line in order.lines if line.kind == "badge"), None) if (order) else None
        )
        self.known.badge_types[registration] = message.badge_type
        self._add(
            t.fact_registrations,
            "upsert",
            {
                "registration_id": registration,
                "convention_id": convention,
                "badge_type": message.badge_type,
                "account_key": self._account(message.email, at),
                "signed_in": message.account_id is not None,
                "status": "confirmed" if confirmed else "pending_payment",
                "reason": None,
                "tier": badge_line.tier if badge_line else None,
                "created_at": at,
                "created_on": self._day(at),
                "decided_at": at if confirmed else None,
                "cancelled_at": None,
                "currency": order.currency if order else self._currency(convention),
                "subtotal_cents": order.subtotal_cents if order else 0,
                "discount_cents": order.discount_cents if order else 0,
                "total_cents": order.total_cents if order else 0,
                "paid_cents": 0,
                "refunded_cents": 0,
            },
        )
        if order is not None:
            status = "confirmed" if confirmed else "pending_payment"
            self._lines(order, registration, convention, status, at)
        self._daily(convention, message.badge_type, at, registrations=1)

    def _rejected(self, message: RegistrationRejected, convention: str, at: datetime) -> None:
        self._add(
            t.fact_registrations,
            "insert_ignore",
            {
                "registration_id": str(message.registration_id),
                "convention_id": convention,
                "badge_type": message.badge_type,
                "account_key": self._account(message.email, at),
                "signed_in": message.account_id is not None,
                "status": "rejected",
                "reason": message.reason.value,
                "tier": None,
                "created_at": at,
                "created_on": self._day(at),
                "decided_at": at,
                "cancelled_at": None,
                "currency": self._currency(convention),
                "subtotal_cents": 0,
                "discount_cents": 0,
                "total_cents": 0,
                "paid_cents": 0,
                "refunded_cents": 0,
            },
        )

    def _cancelled(self, message: RegistrationCancelled, convention: str, at: datetime) -> None:
        registration = str(message.registration_id)
        self._add(
            t.fact_registrations,
            "update",
            {"status": "cancelled", "cancelled_at": at},
            registration_id=registration,
        )
        self._add(
            t.fact_order_lines,
            "update",
            {"order_status": "cancelled"},
            registration_id=registration,
            order_status=("pending_payment", "paid", "confirmed"),
        )
        self._daily(convention, message.badge_type, at, cancellations=1)

    def _lines(
        self, order: OrderTerms, registration: str, convention: str, status: str, at: datetime
    ) -> None:
        day = self._day(at)
        for index, line in enumerate(order.lines):
            self._add(
                t.fact_order_lines,
                "upsert",
                {
                    **_line_values(line),
                    "line_id": f"{order.order_id}:{index}",
                    "order_id": str(order.order_id),
                    "registration_id": registration,
                    "convention_id": convention,
                    "currency": order.currency,
                    "order_status": status,
                    "ordered_at": at,
                    "ordered_on": day,
                },
            )

    def _option_removed(
        self, message: OptionRemoved, convention: str, event_id: uuid.UUID, at: datetime
    ) -> None:
        values = _line_values(message.line)
        for name in ("quantity", "discount_cents", "total_cents"):
            values[name] = -values[name]
        self._add(
            t.fact_order_lines,
            "insert_ignore",
            {
                **values,
                "line_id": f"{message.order_id}:removed:{event_id}",
                "order_id": str(message.order_id),
                "registration_id": str(message.registration_id),
                "convention_id": convention,
                "currency": self._currency(convention),
                "order_status": "removed",
                "ordered_at": at,
                "ordered_on": self._day(at),
            },
        )
        self._recount(message.registration_id)

    def _paid(self, message: OrderPaid, convention: str, event_id: uuid.UUID, at: datetime) -> None:
        registration = str(message.registration_id)
        self._add(
            t.fact_order_lines, "update", {"order_status": "paid"}, order_id=str(message.order_id)
        )
        if message.confirms_registration:
            self._add(
                t.fact_registrations,
                "update",
                {"status": "confirmed", "decided_at": at},
                registration_id=registration,
            )
        if message.amount_cents:
            self._add(
                t.fact_registrations,
                "add",
                {"paid_cents": message.amount_cents},
                registration_id=registration,
            )
        if message.payment_id is not None:
            self._add(
                t.fact_payments,
                "insert_ignore",
                {
                    "payment_key": str(event_id),
                    "payment_id": message.payment_id,
                    "order_id": str(message.order_id),
                    "registration_id": registration,
                    "convention_id": convention,
                    "outcome": "paid",
                    "amount_cents": message.amount_cents,
                    "currency": message.currency,
                    "paid_at": at,
                    "paid_on": self._day(at),
                },
            )
        self._daily(
            convention,
            self._badge_of(registration),
            at,
            paid_cents=message.amount_cents,
            revenue_cents=message.amount_cents,
        )

    def _refund(self, message: RefundIssued, convention: str, at: datetime) -> None:
        registration = str(message.registration_id)
        self._add(
            t.fact_refunds,
            "insert_ignore",
            {
                "refund_id": str(message.refund_id),
                "payment_id": message.payment_id,
                "order_id": str(message.order_id),
                "registration_id": registration,
                "convention_id": convention,
                "reason": message.reason.value,
                "amount_cents": message.amount_cents,
                "currency": message.currency,
                "issued_at": at,
                "issued_on": self._day(at),
                "completed_at": None,
            },
        )
        self._add(
            t.fact_registrations,
            "add",
            {"refunded_cents": message.amount_cents},
            registration_id=registration,
        )
        self._daily(
            convention,
            self._badge_of(registration),
            at,
            refunded_cents=message.amount_cents,
            revenue_cents=-message.amount_cents,
        )

    def _recount(self, registration_id: uuid.UUID) -> None:
        self._add(t.fact_registrations, "recount", {}, registration_id=str(registration_id))

    def _daily(self, convention: str, badge_type: str, at: datetime, **counts: int) -> None:
        row = {
            "convention_id": convention,
            "badge_type": badge_type,
            "sale_date": self._day(at),
            "registrations": 0,
            "cancellations": 0,
            "paid_cents": 0,
            "refunded_cents": 0,
            "revenue_cents": 0,
        }
        row.update(counts)
        self._add(t.fact_daily_sales, "accumulate", row)

    def _waitlist_ended(self, entry_id: uuid.UUID, status: str, at: datetime) -> None:
        self._add(
            t.fact_waitlist_entries,
            "update",
            {"status": status, "ended_at": at},
            entry_id=str(entry_id),
        )

    def _account(self, email: str, at: datetime) -> str:
        key = account_key(self.secret, email)
        self._add(t.dim_account, "insert_ignore", {"account_key": key, "first_seen_at": at})
        return key

    def _currency(self, convention: str) -> str:
        return self.known.currencies.get(convention, DEFAULT_CURRENCY)

    def _badge_of(self, registration: str) -> str:
        return self.known.badge_types.get(registration, "")

    # --- lodging -----------------------------------------------------------------------

    def _night(self, night: date) -> date:
        self.dates.add(night)
        return night

    def _hotel(self, convention: str, code: str, name: str | None = None) -> None:
        row = {"convention_id": convention, "hotel_code": code, "name": name or code}
        self._add(t.dim_hotel, "upsert" if name else "insert_ignore", row)

    def _inventory(self, message: HotelInventorySynced, convention: str) -> None:
        for hotel in message.hotels:
            self._hotel(convention, hotel.code, hotel.name)
            for room_type in hotel.room_types:
                for night in room_type.nights:
                    self._add(
                        t.fact_block_nights,
                        "upsert",
                        {
                            "convention_id": convention,
                            "hotel_code": hotel.code,
                            "room_type": room_type.code,
                            "night": self._night(night.night),
                            "size": night.size,
                            "rate_cents": night.rate_cents,
                        },
                    )

    def _nights(
        self,
        request_id: uuid.UUID,
        convention: str,
        hotel: str,
        stay: Stay,
        total_cents: int,
        status: str,
        at: datetime,
    ) -> None:
        self._hotel(convention, hotel)
        request = str(request_id)
        self._add(t.fact_lodging_nights, "delete", {}, request_id=request)
        nights = stay.nights()
        for night in nights:
            self._add(
                t.fact_lodging_nights,
                "insert_ignore",
                {
                    "request_id": request,
                    "night": self._night(night),
                    "convention_id": convention,
                    "hotel_code": hotel,
                    "room_type": stay.room_type,
                    "status": status,
                    "guests": len(stay.guests),
                    "rate_cents": total_cents // len(nights),
                    "updated_at": at,
                },
            )


def _line_values(line: OrderLine) -> dict[str, Any]:
    return {
        "kind": line.kind,
        "code": line.code,
        "variant": line.variant,
        "quantity": line.quantity,
        "unit_price_cents": line.unit_price_cents,
        "discount_cents": line.discount_cents,
        "total_cents": line.total_cents,
    }


def referenced_registrations(messages: Iterable[Message]) -> set[str]:
    return {
        str(value)
        for message in messages
        if (value := getattr(message, "registration_id", None)) is not None
    }


async def load_known(conn: AsyncConnection, messages: Sequence[Message]) -> Known:
    """Badge types of the registrations and currencies of the conventions a batch names."""
    known = Known()
    registrations = referenced_registrations(messages)
    if registrations:
        r = t.fact_registrations.c
        rows = await conn.execute(
            select(r.registration_id, r.badge_type).where(
                r.registration_id.in_(sorted(registrations))
            )
        )
        known.badge_types.update({row.registration_id: row.badge_type for row in rows})
    conventions = {str(message.convention_id) for message in messages}
    if conventions:
        c = t.dim_convention.c
        rows = await conn.execute(
            select(c.convention_id, c.currency).where(c.convention_id.in_(sorted(conventions)))
        )
        known.currencies.update({row.convention_id: row.currency for row in rows})
    return known


def _where(table: Table, where: Mapping[str, Any]) -> ColumnElement[bool]:
    return and_(
        *(
            table.c[name].in_(value) if isinstance(value, tuple) else table.c[name] == value
            for name, value in where.items()
        )
    )


async def apply_writes(conn: AsyncConnection, writes: Sequence[Write]) -> None:
    """Run a batch's writes with as few statements as the order allows.

    Writes to one table keep their order, and a run of them with the same shape (operation,
    columns, keys) is one statement for all its rows; tables touch nothing but themselves,
    so they go one after the other; the recounts, which read the order lines, go last (a
    recount computes from whatever lines stand, so running it once at the end is running
    it after every change it follows)."""
    recounts: dict[str, None] = {}
    by_table: dict[str, list[Write]] = {}
    for write in writes:
        if write.op == "recount":
            recounts[str(write.where["registration_id"])] = None
        else:
            by_table.setdefault(write.table.name, []).append(write)
    for table_writes in by_table.values():
        for run in _runs(table_writes):
            await _apply_run(conn, run)
    for registration_id in recounts:
        await _recount(conn, registration_id)


def _shape(write: Write) -> tuple[object, ...]:
    return (
        write.op,
        tuple(write.values),
        tuple(write.where),
        any(isinstance(value, tuple) for value in write.where.values()),
    )


def _runs(writes: Sequence[Write]) -> Iterator[list[Write]]:
    """Consecutive writes of the same shape, together."""
    run: list[Write] = []
    for write in writes:
        if run and _shape(run[-1]) != _shape(write):
            yield run
            run = []
        run.append(write)
    if run:
        yield run


async def _apply_run(conn: AsyncConnection, run: list[Write]) -> None:
    """One statement for a run of same-shaped writes: an insert of many rows (MariaDB
    applies them one after the other, so a key twice is upserted or added to twice), or an
    update run once per row."""
    first = run[0]
    table = first.table
    if first.op in ("upsert", "accumulate", "insert_ignore"):
        rows = [dict(write.values) for write in run]
        if first.op == "insert_ignore":
            await conn.execute(insert(table).prefix_with("IGNORE"), rows)
            return
        keys = {column.name for column in table.primary_key.columns}
        inserting = insert(table)
        changes = {
            name: inserting.inserted[name]
            if first.op == "upsert"
            else table.c[name] + inserting.inserted[name]
            for name in first.values
            if name not in keys
        }
        await conn.execute(inserting.on_duplicate_key_update(changes), rows)
        return
    if any(isinstance(value, tuple) for value in first.where.values()):
        for write in run:
            await _apply_one(conn, write)
        return
    where = and_(*(table.c[name] == bindparam(f"w_{name}") for name in first.where))
    params = [
        {
            **{f"v_{k}": v for k, v in write.values.items()},
            **{f"w_{k}": v for k, v in write.where.items()},
        }
        for write in run
    ]
    if first.op == "update":
        stmt = update(table).where(where).values({k: bindparam(f"v_{k}") for k in first.values})
    elif first.op == "add":
        stmt = (
            update(table)
            .where(where)
            .values({k: table.c[k] + bindparam(f"v_{k}") for k in first.values})
        )
    else:
        await conn.execute(delete(table).where(where), params)
        return
    await conn.execute(stmt, params)


async def _apply_one(conn: AsyncConnection, write: Write) -> None:
    table = write.table
    if write.op == "update":
        await conn.execute(
            update(table).where(_where(table, write.where)).values(dict(write.values))
        )
    elif write.op == "add":
        await conn.execute(
            update(table)
            .where(_where(table, write.where))
            .values({name: table.c[name] + value for name, value in write.values.items()})
        )
    else:
        await conn.execute(delete(table).where(_where(table, write.where)))


async def _recount(conn: AsyncConnection, registration_id: str) -> None:
    """A registration's order totals from its order lines that stand."""
    lines = t.fact_order_lines.c
    standing = and_(
        lines.registration_id == registration_id, lines.order_status.in_(STANDING_ORDERS)
    )

    def total(expression: Any) -> Any:
        return select(func.coalesce(func.sum(expression), 0)).where(standing).scalar_subquery()

    registrations = t.fact_registrations
    await conn.execute(
        update(registrations)
        .where(registrations.c.registration_id == registration_id)
        .values(
            subtotal_cents=total(lines.quantity * lines.unit_price_cents),
            discount_cents=total(lines.discount_cents),
            total_cents=total(lines.total_cents),
        )
    )
