"""Frozen decision state of conventions, registrations and their orders, and how events
evolve it.

Stock is counted as *taken*: units held by an unpaid order, paid for, or offered to the
waitlist. A badge type's seats, an option's units, a variant's units, a price tier's seats
and a promo code's uses are all counted that way, so "sold out", "tier used up" and "code
used up" hold exactly while payments are pending, and an expired hold gives its units back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from schemas.catalogue import OptionSpec, OrderLine, OrderPolicy, PriceTier, PromoCodeSpec
from schemas.checkin import AttendeeCheckedIn, CheckInSuperseded
from schemas.identity import InvalidEmail, email_key
from schemas.orders import (
    BadgeQuotaSet,
    OptionDefined,
    OptionRemoved,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    OrderPolicySet,
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
    ConventionClosed,
    ConventionCreated,
    ConventionOpened,
    Event,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationTransferred,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_POLICY = OrderPolicy()


class ConventionStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class RegistrationStatus(StrEnum):
    PENDING = "pending"
    PENDING_PAYMENT = "pending_payment"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class EntryStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    EXPIRED = "expired"
    LEFT = "left"


def recorded_email_key(email: str) -> str:
    """The identity key of the address in a recorded event. Events decided before the one
    e-mail identity existed may hold an address it refuses: such a registration gets a key
    that no valid address can have, so it never blocks anyone else."""
    try:
        return email_key(email)
    except InvalidEmail:
        digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()
        return f"unnormalisable:{digest}"


@dataclass(frozen=True)
class Tier:
    name: str
    price_cents: int
    until: datetime | None = None
    size: int | None = None
    sold: int = 0

    def holds(self, now: datetime) -> bool:
        return (self.until is None or now < self.until) and (
            self.size is None or self.sold < self.size
        )

    @classmethod
    def of(cls, spec: PriceTier, sold: int = 0) -> Tier:
        return cls(spec.name, spec.price_cents, spec.until, spec.size, sold)


@dataclass(frozen=True)
class BadgeType:
    code: str
    name: str
    price_cents: int
    quota: int
    taken: int = 0
    tiers: tuple[Tier, ...] = ()

    @property
    def remaining(self) -> int:
        return max(self.quota - self.taken, 0)

    def price_at(self, now: datetime) -> tuple[int, str | None]:
        """The price in force: the first tier that still holds, else the badge's own."""
        for tier in self.tiers:
            if tier.holds(now):
                return tier.price_cents, tier.name
        return self.price_cents, None


@dataclass(frozen=True)
class Variant:
    code: str
    name: str
    quota: int | None
    taken: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else max(self.quota - self.taken, 0)


@dataclass(frozen=True)
class Option:
    spec: OptionSpec
    taken: int = 0
    variants: tuple[Variant, ...] = ()

    @property
    def code(self) -> str:
        return self.spec.code

    def variant(self, code: str | None) -> Variant | None:
        return next((v for v in self.variants if v.code == code), None)

    def remaining(self, variant: str | None) -> int | None:
        """Units still to be had of the option (and of the variant): None for no limit."""
        limits = []
        if self.spec.quota is not None:
            limits.append(max(self.spec.quota - self.taken, 0))
        chosen = self.variant(variant)
        if chosen is not None and chosen.remaining is not None:
            limits.append(chosen.remaining)
        return min(limits) if limits else None


@dataclass(frozen=True)
class Promo:
    spec: PromoCodeSpec
    uses: int = 0

    @property
    def code(self) -> str:
        return self.spec.code


@dataclass(frozen=True)
class WaitEntry:
    entry_id: uuid.UUID
    stock: str
    kind: str
    code: str
    variant: str | None
    seq: int
    quantity: int
    email: str
    name: str
    account_id: uuid.UUID | None
    registration_id: uuid.UUID | None
    status: EntryStatus
    offer_expires_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in (EntryStatus.WAITING, EntryStatus.OFFERED)


@dataclass(frozen=True)
class Convention:
    convention_id: uuid.UUID
    name: str
    status: ConventionStatus
    badge_types: tuple[BadgeType, ...]
    request_hash: str = ""
    policy: OrderPolicy = DEFAULT_POLICY
    options: tuple[Option, ...] = ()
    promos: tuple[Promo, ...] = ()
    waitlist: tuple[WaitEntry, ...] = ()
    """Every waitlist entry, in the order they joined."""

    def badge(self, code: str) -> BadgeType | None:
        return next((b for b in self.badge_types if b.code == code), None)

    def option(self, code: str) -> Option | None:
        return next((o for o in self.options if o.code == code), None)

    def promo(self, code: str) -> Promo | None:
        """Promo codes are matched whatever their case: people type them."""
        wanted = code.casefold()
        return next((p for p in self.promos if p.code.casefold() == wanted), None)

    def entry(self, entry_id: uuid.UUID) -> WaitEntry | None:
        return next((e for e in self.waitlist if e.entry_id == entry_id), None)

    def line(self, stock: str) -> list[WaitEntry]:
        """Who waits for `stock`, or holds an offer of it, first in line first."""
        return [e for e in self.waitlist if e.stock == stock and e.active]

    def with_badge(self, badge: BadgeType) -> Convention:
        return replace(
            self,
            badge_types=tuple(badge if b.code == badge.code else b for b in self.badge_types),
        )

    def with_option(self, option: Option) -> Convention:
        if self.option(option.code) is None:
            return replace(self, options=(*self.options, option))
        return replace(
            self, options=tuple(option if o.code == option.code else o for o in self.options)
        )

    def with_entry(self, entry: WaitEntry) -> Convention:
        if self.entry(entry.entry_id) is None:
            return replace(self, waitlist=(*self.waitlist, entry))
        return replace(
            self,
            waitlist=tuple(entry if e.entry_id == entry.entry_id else e for e in self.waitlist),
        )

    @property
    def next_seq(self) -> int:
        return max((e.seq for e in self.waitlist), default=0) + 1


@dataclass(frozen=True)
class Order:
    order_id: uuid.UUID
    first: bool
    status: OrderStatus
    terms: OrderTerms
    hold_until: datetime | None = None
    payment_id: str | None = None
    settled: frozenset[str] = frozenset()
    """Payment ids already applied or refunded: a repeated notification changes nothing."""
    request_hash: str = ""
    """For an order of options: the request it was made by (its id is the request's key)."""

    @property
    def holds_stock(self) -> bool:
        return self.status in (OrderStatus.PENDING_PAYMENT, OrderStatus.PAID)

    @property
    def value_cents(self) -> int:
        """What the order's remaining lines are worth (given-back options are out)."""
        return sum(line.total_cents for line in self.terms.lines)


@dataclass(frozen=True)
class Refund:
    refund_id: uuid.UUID
    order_id: uuid.UUID
    payment_id: str
    amount_cents: int
    currency: str
    reason: str
    completed: bool = False


def utc(moment: datetime) -> datetime:
    """A moment in UTC; one without a zone (a station's clock as sent) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class CheckIn:
    """The scan a registration was checked in by (the earliest one decided so far)."""

    station: str
    scanned_at: datetime
    scan_id: uuid.UUID

    @property
    def rank(self) -> tuple[datetime, str, uuid.UUID]:
        """Scans are ordered by time, then station name, then id: the smallest wins, so the
        winner does not depend on the order scans arrive in."""
        return (utc(self.scanned_at), self.station, self.scan_id)

    def precedes(self, other: CheckIn) -> bool:
        return self.rank < other.rank


@dataclass(frozen=True)
class Registration:
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    email_key: str
    badge_type: str
    status: RegistrationStatus
    request_hash: str
    email: str = ""
    name: str = ""
    orders: tuple[Order, ...] = ()
    refunds: tuple[Refund, ...] = ()
    ticket_serial: int = 0
    """Transfers so far: a ticket issued with another serial no longer admits anyone."""
    check_in: CheckIn | None = None

    @property
    def active(self) -> bool:
        """Holding its seat (paid or not yet): the e-mail cannot register again."""
        return self.status in (RegistrationStatus.CONFIRMED, RegistrationStatus.PENDING_PAYMENT)

    def order(self, order_id: uuid.UUID) -> Order | None:
        return next((o for o in self.orders if o.order_id == order_id), None)

    def with_order(self, order: Order) -> Registration:
        if self.order(order.order_id) is None:
            return replace(self, orders=(*self.orders, order))
        return replace(
            self, orders=tuple(order if o.order_id == order.order_id else o for o in self.orders)
        )

    def option_units(self, code: str) -> int:
        """Units of an option the registration holds, paid or not."""
        return sum(
            line.quantity
            for order in self.orders
            if order.holds_stock
            for line in order.terms.lines
            if line.kind == "option" and line.code == code
        )


@dataclass(frozen=True)
class Situation:
    """What one decision may look at: the convention, the registration the command names,
    the active registration already holding the command's e-mail, if any, and the time the
    command was made (tiers, promo code windows, holds and offers are judged by it)."""

    convention: Convention | None
    registration: Registration | None = None
    email_holder: Registration | None = None
    now: datetime = EPOCH


def evolve_convention(convention: Convention | None, event: Event) -> Convention | None:
    match event:
        case ConventionCreated():
            return Convention(
                convention_id=event.convention_id,
                name=event.name,
                status=ConventionStatus.DRAFT,
                badge_types=tuple(
                    BadgeType(b.code, b.name, b.price_cents, b.quota) for b in event.badge_types
                ),
                request_hash=event.request_hash,
                policy=event.policy,
            )
        case _ if convention is None:
            return None
        case ConventionOpened():
            return replace(convention, status=ConventionStatus.OPEN)
        case ConventionClosed():
            return replace(convention, status=ConventionStatus.CLOSED)
        case AttendeeRegistered() | OrderPlaced():
            taken = _take(convention, event.order.lines if event.order else (), +1)
            if event.order is None:
                taken = _seat(taken, event.badge_type, +1)
            return _use_code(taken, event.order, +1)
        case OptionsOrdered():
            return _use_code(_take(convention, event.order.lines, +1), event.order, +1)
        case PromoCodeApplied():
            return _use_code(convention, event.order, +1)
        case OrderExpired():
            return _give_code_back(_take(convention, event.lines, -1), event.promo_code)
        case RegistrationCancelled():
            return _take(_seat(convention, event.badge_type, -1), event.options_released, -1)
        case OptionRemoved():
            return _take(convention, (event.line,), -1)
        case PriceTiersDefined():
            return _with_tiers(convention, event.badge_type, event.tiers)
        case BadgeQuotaSet():
            badge = convention.badge(event.badge_type)
            if badge is None:
                return convention
            return convention.with_badge(replace(badge, quota=event.quota))
        case OptionDefined():
            return _define_option(convention, event.option)
        case PromoCodeCreated():
            return replace(convention, promos=(*convention.promos, Promo(event.promo)))
        case OrderPolicySet():
            return replace(convention, policy=event.policy)
        case WaitlistJoined():
            return convention.with_entry(
                WaitEntry(
                    entry_id=event.entry_id,
                    stock=event.stock,
                    kind=event.kind,
                    code=event.code,
                    variant=event.variant,
                    seq=event.seq,
                    quantity=event.quantity,
                    email=event.email,
                    name=event.name,
                    account_id=event.account_id,
                    registration_id=event.registration_id,
                    status=EntryStatus.WAITING,
                )
            )
        case WaitlistOfferMade():
            return _entry_moved(
                _stock(convention, event.stock, +event.quantity),
                event.entry_id,
                EntryStatus.OFFERED,
                event.expires_at,
            )
        case WaitlistOfferExpired():
            return _entry_moved(
                _stock(convention, event.stock, -event.released),
                event.entry_id,
                EntryStatus.EXPIRED,
            )
        case WaitlistOfferAccepted():
            return _entry_moved(
                _stock(convention, event.stock, -event.released),
                event.entry_id,
                EntryStatus.ACCEPTED,
            )
        case WaitlistLeft():
            return _entry_moved(
                _stock(convention, event.stock, -event.released), event.entry_id, EntryStatus.LEFT
            )
        case _:
            return convention


def _seat(convention: Convention, code: str, delta: int) -> Convention:
    badge = convention.badge(code)
    if badge is None:
        return convention
    return convention.with_badge(replace(badge, taken=badge.taken + delta))


def _take(convention: Convention, lines: Iterable[OrderLine], sign: int) -> Convention:
    for line in lines:
        if line.kind == "badge":
            convention = _seat(convention, line.code, sign * line.quantity)
            convention = _tier_sold(convention, line.code, line.tier, sign * line.quantity)
        else:
            convention = _option_taken(convention, line.code, line.variant, sign * line.quantity)
    return convention


def _stock(convention: Convention, stock: str, delta: int) -> Convention:
    """Units of a stock key (`badge:CODE`, `option:CODE[/VARIANT]`) taken or given back."""
    kind, _, rest = stock.partition(":")
    code, _, variant = rest.partition("/")
    if kind == "badge":
        return _seat(convention, code, delta)
    return _option_taken(convention, code, variant or None, delta)


def _tier_sold(convention: Convention, code: str, tier: str | None, delta: int) -> Convention:
    badge = convention.badge(code)
    if badge is None or tier is None:
        return convention
    tiers = tuple(replace(t, sold=t.sold + delta) if t.name == tier else t for t in badge.tiers)
    return convention.with_badge(replace(badge, tiers=tiers))


def _option_taken(convention: Convention, code: str, variant: str | None, delta: int) -> Convention:
    option = convention.option(code)
    if option is None:
        return convention
    variants = tuple(
        replace(v, taken=v.taken + delta) if v.code == variant else v for v in option.variants
    )
    return convention.with_option(replace(option, taken=option.taken + delta, variants=variants))


def _use_code(convention: Convention, order: OrderTerms | None, delta: int) -> Convention:
    if order is None or order.promo_code is None:
        return convention
    promo = convention.promo(order.promo_code)
    if promo is None:
        return convention
    promos = tuple(replace(p, uses=p.uses + delta) if p is promo else p for p in convention.promos)
    return replace(convention, promos=promos)


def _give_code_back(convention: Convention, code: str | None) -> Convention:
    promo = None if code is None else convention.promo(code)
    if promo is None:
        return convention
    promos = tuple(replace(p, uses=p.uses - 1) if p is promo else p for p in convention.promos)
    return replace(convention, promos=promos)


def _with_tiers(convention: Convention, code: str, specs: tuple[PriceTier, ...]) -> Convention:
    badge = convention.badge(code)
    if badge is None:
        return convention
    sold = {t.name: t.sold for t in badge.tiers}
    return convention.with_badge(
        replace(badge, tiers=tuple(Tier.of(s, sold.get(s.name, 0)) for s in specs))
    )


def _define_option(convention: Convention, spec: OptionSpec) -> Convention:
    known = convention.option(spec.code)
    taken = {v.code: v.taken for v in known.variants} if known else {}
    variants = tuple(Variant(v.code, v.name, v.quota, taken.get(v.code, 0)) for v in spec.variants)
    return convention.with_option(Option(spec, known.taken if known else 0, variants))


def _entry_moved(
    convention: Convention,
    entry_id: uuid.UUID,
    status: EntryStatus,
    offer_expires_at: datetime | None = None,
) -> Convention:
    entry = convention.entry(entry_id)
    if entry is None:
        return convention
    return convention.with_entry(replace(entry, status=status, offer_expires_at=offer_expires_at))


def evolve_registration(registration: Registration | None, event: Event) -> Registration | None:
    match event:
        case AttendeeRegistered() | OrderPlaced():
            pending = isinstance(event, OrderPlaced)
            orders: tuple[Order, ...] = ()
            if event.order is not None:
                orders = (
                    Order(
                        order_id=event.order.order_id,
                        first=True,
                        status=OrderStatus.PENDING_PAYMENT if pending else OrderStatus.PAID,
                        terms=event.order,
                        hold_until=event.hold_until if isinstance(event, OrderPlaced) else None,
                    ),
                )
            return Registration(
                event.registration_id,
                event.convention_id,
                recorded_email_key(event.email),
                event.badge_type,
                RegistrationStatus.PENDING_PAYMENT if pending else RegistrationStatus.CONFIRMED,
                event.request_hash,
                email=event.email,
                name=event.name,
                orders=orders,
            )
        case RegistrationRejected():
            return Registration(
                event.registration_id,
                event.convention_id,
                recorded_email_key(event.email),
                event.badge_type,
                RegistrationStatus.REJECTED,
                event.request_hash,
                email=event.email,
                name=event.name,
            )
        case _ if registration is None:
            return None
        case RegistrationCancelled():
            orders = tuple(
                replace(o, status=OrderStatus.CANCELLED) if o.holds_stock else o
                for o in registration.orders
            )
            return replace(registration, status=RegistrationStatus.CANCELLED, orders=orders)
        case RegistrationTransferred():
            return replace(
                registration,
                email_key=recorded_email_key(event.email),
                email=event.email,
                name=event.name,
                ticket_serial=registration.ticket_serial + 1,
            )
        case AttendeeCheckedIn() | CheckInSuperseded():
            return replace(
                registration,
                check_in=CheckIn(event.station, utc(event.scanned_at), event.scan_id),
            )
        case OptionsOrdered():
            return registration.with_order(
                Order(
                    order_id=event.order.order_id,
                    first=False,
                    status=OrderStatus.PAID
                    if event.hold_until is None
                    else OrderStatus.PENDING_PAYMENT,
                    terms=event.order,
                    hold_until=event.hold_until,
                    request_hash=event.request_hash,
                )
            )
        case PromoCodeApplied():
            order = registration.order(event.order.order_id)
            if order is None:
                return registration
            return registration.with_order(replace(order, terms=event.order))
        case OrderPaid():
            order = registration.order(event.order_id)
            if order is None:
                return registration
            settled = order.settled | ({event.payment_id} if event.payment_id else set())
            paid = replace(
                order, status=OrderStatus.PAID, payment_id=event.payment_id, settled=settled
            )
            registration = registration.with_order(paid)
            if event.confirms_registration:
                registration = replace(registration, status=RegistrationStatus.CONFIRMED)
            return registration
        case OrderExpired():
            order = registration.order(event.order_id)
            if order is None:
                return registration
            registration = registration.with_order(replace(order, status=OrderStatus.EXPIRED))
            if event.expires_registration:
                registration = replace(registration, status=RegistrationStatus.EXPIRED)
            return registration
        case OptionRemoved():
            return _option_given_back(registration, event)
        case RefundIssued():
            order = registration.order(event.order_id)
            if order is not None:
                registration = registration.with_order(
                    replace(order, settled=order.settled | {event.payment_id})
                    if order.payment_id != event.payment_id
                    else order
                )
            refund = Refund(
                event.refund_id,
                event.order_id,
                event.payment_id,
                event.amount_cents,
                event.currency,
                event.reason.value,
            )
            return replace(registration, refunds=(*registration.refunds, refund))
        case RefundCompleted():
            refunds = tuple(
                replace(r, completed=True) if r.refund_id == event.refund_id else r
                for r in registration.refunds
            )
            return replace(registration, refunds=refunds)
        case _:
            return registration


def _option_given_back(registration: Registration, event: OptionRemoved) -> Registration:
    order = registration.order(event.order_id)
    if order is None:
        return registration
    given = event.line
    lines = []
    for line in order.terms.lines:
        if line.kind == "option" and line.code == given.code and line.variant == given.variant:
            line = shrink(line, min(given.quantity, line.quantity))
        if line.quantity:
            lines.append(line)
    terms = order.terms.model_copy(update={"lines": tuple(lines)})
    return registration.with_order(replace(order, terms=terms))


def shrink(line: OrderLine, units: int) -> OrderLine:
    """The line with `units` fewer: what is left keeps its share of the price paid."""
    kept = line.quantity - units
    return line.model_copy(
        update={
            "quantity": kept,
            "discount_cents": line.discount_cents * kept // line.quantity,
            "total_cents": line.total_cents - share(line, units),
        }
    )


def share(line: OrderLine, units: int) -> int:
    """What `units` of a line were paid: their share of its total, rounded down."""
    return line.total_cents * units // line.quantity


def hold_end(now: datetime, minutes: int) -> datetime:
    return now + timedelta(minutes=minutes)
