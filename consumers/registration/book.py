"""The decider's state: `PartitionMemory` holds what one owned partition's decisions need
between batches; `RegistrationBook` is one batch's working set, taken from that memory,
evolved as events are decided, then written back in the batch's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.registration import tables as t
from consumers.registration.state import (
    DEFAULT_POLICY,
    EPOCH,
    BadgeType,
    CheckIn,
    Convention,
    ConventionStatus,
    EntryStatus,
    Option,
    Order,
    OrderStatus,
    Promo,
    Refund,
    Registration,
    RegistrationStatus,
    Situation,
    Tier,
    Variant,
    WaitEntry,
    evolve_convention,
    evolve_registration,
)
from infra.db import upsert
from schemas.catalogue import OptionSpec, OrderPolicy, PromoCodeSpec
from schemas.identity import email_key, identity_hash
from schemas.orders import AcceptOffer, JoinWaitlist
from schemas.registration import (
    Command,
    ConventionCreated,
    Event,
    OrderTerms,
    RegisterAttendee,
    TransferRegistration,
)


@dataclass
class PartitionMemory:
    """The committed decision state of the conventions one partition holds, kept while this
    process owns the partition, so a batch reads nothing it decided itself.

    A convention enters whole, every registration with it, the first time a batch needs it
    (so "no registration with this id or e-mail" is known without asking the database). A
    batch's changes enter only once its transaction has committed (`absorb`). The decider
    starts a new memory when it (re)claims the partition, and whenever a batch it staged was
    never confirmed committed: that batch's outcome is then unknown."""

    conventions: dict[uuid.UUID, Convention | None] = field(default_factory=dict)
    """Every convention held whole; None for one the database does not know (yet)."""
    registrations: dict[uuid.UUID, Registration] = field(default_factory=dict)
    holders: dict[tuple[uuid.UUID, str], Registration] = field(default_factory=dict)
    staged: RegistrationBook | None = None

    def holds(self, convention_id: uuid.UUID) -> bool:
        return convention_id in self.conventions

    def absorb(self, book: RegistrationBook) -> None:
        """Take in a committed batch's changes."""
        for cid in book.changed_conventions():
            self.conventions[cid] = book.conventions[cid]
        for rid in book.changed_registrations():
            registration = book.registrations[rid]
            before = self.registrations.get(rid)
            self.registrations[rid] = registration
            if before is not None and before.email_key != registration.email_key:
                moved = (before.convention_id, before.email_key)
                previous = self.holders.get(moved)
                if previous is not None and previous.registration_id == rid:
                    del self.holders[moved]
            key = (registration.convention_id, registration.email_key)
            holder = self.holders.get(key)
            if registration.active:
                self.holders[key] = registration
            elif holder is not None and holder.registration_id == rid:
                del self.holders[key]
        self.staged = None

    async def load(self, conn: AsyncConnection, convention_ids: Iterable[uuid.UUID]) -> None:
        """Bring in the conventions not held yet, each with all its registrations."""
        missing = {str(cid) for cid in convention_ids if cid not in self.conventions}
        if not missing:
            return
        found = await _load_conventions(conn, missing)
        for cid in missing:
            self.conventions[uuid.UUID(cid)] = found.get(uuid.UUID(cid))
        r = t.registrations.c
        rows = await conn.execute(
            select(
                r.registration_id,
                r.convention_id,
                r.email_key,
                r.badge_type,
                r.status,
                r.request_hash,
                r.email,
                r.name,
                r.ticket_serial,
                r.checked_in_station,
                r.checked_in_at,
                r.check_in_scan_id,
            ).where(r.convention_id.in_(missing))
        )
        orders = await _load_orders(conn, missing)
        refunds = await _load_refunds(conn, missing)
        for row in rows:
            registration = _registration(row, orders, refunds)
            self.registrations[registration.registration_id] = registration
            if registration.active:
                self.holders[(registration.convention_id, registration.email_key)] = registration


@dataclass
class RegistrationBook:
    conventions: dict[uuid.UUID, Convention] = field(default_factory=dict)
    registrations: dict[uuid.UUID, Registration] = field(default_factory=dict)
    holders: dict[tuple[uuid.UUID, str], Registration] = field(default_factory=dict)
    _before: dict[uuid.UUID, Convention] = field(default_factory=dict)
    """Each changed convention as it was before this batch, to write back only what changed."""
    _before_registrations: dict[uuid.UUID, Registration] = field(default_factory=dict)
    _new_conventions: set[uuid.UUID] = field(default_factory=set)
    _dirty_conventions: set[uuid.UUID] = field(default_factory=set)
    _new_registrations: set[uuid.UUID] = field(default_factory=set)
    _dirty_registrations: set[uuid.UUID] = field(default_factory=set)

    def changed_conventions(self) -> set[uuid.UUID]:
        return self._new_conventions | self._dirty_conventions

    def changed_registrations(self) -> set[uuid.UUID]:
        return self._new_registrations | self._dirty_registrations

    def situation(self, command: Command, now: datetime = EPOCH) -> Situation:
        convention = self.conventions.get(command.convention_id)
        registration_id = _registration_named(command, convention)
        registration = None if registration_id is None else self.registrations.get(registration_id)
        email = _email_named(command, convention)
        holder = None
        if email is not None:
            holder = self.holders.get((command.convention_id, email_key(email)))
        return Situation(convention, registration, holder, now)

    def apply(self, event: Event) -> None:
        cid = event.convention_id
        before = self.conventions.get(cid)
        after = evolve_convention(before, event)
        if after is not None and after is not before:
            if before is not None:
                self._before.setdefault(cid, before)
            self.conventions[cid] = after
            self._dirty_conventions.add(cid)
            if isinstance(event, ConventionCreated):
                self._new_conventions.add(cid)
        registration_id = getattr(event, "registration_id", None)
        if isinstance(registration_id, uuid.UUID):
            old = self.registrations.get(registration_id)
            new = evolve_registration(old, event)
            if new is not None and new is not old:
                self.registrations[registration_id] = new
                if old is None:
                    self._new_registrations.add(registration_id)
                else:
                    if registration_id not in self._new_registrations:
                        # A registration new in this batch is written whole, orders included.
                        self._before_registrations.setdefault(registration_id, old)
                    self._dirty_registrations.add(registration_id)
                if old is not None and old.email_key != new.email_key:
                    moved = (old.convention_id, old.email_key)
                    if self.holders.get(moved) is not None and (
                        self.holders[moved].registration_id == registration_id
                    ):
                        del self.holders[moved]
                key = (new.convention_id, new.email_key)
                if new.active:
                    self.holders[key] = new
                elif self.holders.get(key) is not None and (
                    self.holders[key].registration_id == registration_id
                ):
                    del self.holders[key]

    @classmethod
    def recall(cls, memory: PartitionMemory, commands: Iterable[Command]) -> RegistrationBook:
        """The working set for these commands, from a memory that holds their conventions."""
        book = cls()
        for command in commands:
            convention = memory.conventions.get(command.convention_id)
            if convention is not None:
                book.conventions[command.convention_id] = convention
            registration_id = _registration_named(command, convention)
            if registration_id is not None:
                known = memory.registrations.get(registration_id)
                if known is not None:
                    book.registrations[registration_id] = known
            email = _email_named(command, convention)
            if email is not None:
                key = (command.convention_id, email_key(email))
                holder = memory.holders.get(key)
                if holder is not None:
                    book.holders[key] = holder
        return book

    async def save(self, conn: AsyncConnection) -> None:
        """Write back what the decided events changed."""
        for cid in sorted(self._new_conventions, key=str):
            c = self.conventions[cid]
            await conn.execute(insert(t.conventions).values(**convention_row(c)))
            if c.badge_types:
                await conn.execute(insert(t.badge_types), _badge_rows(c))
        entries: list[dict[str, Any]] = []
        for cid in sorted(self._dirty_conventions - self._new_conventions, key=str):
            c, before = self.conventions[cid], self._before[cid]
            changes: dict[str, Any] = {}
            if c.status is not before.status:
                changes["status"] = c.status.value
            if _catalogue_of(c) != _catalogue_of(before):
                changes["catalogue"] = catalogue_json(c)
            if changes:
                await conn.execute(
                    update(t.conventions)
                    .where(t.conventions.c.convention_id == str(cid))
                    .values(**changes)
                )
            for b, was in zip(c.badge_types, before.badge_types, strict=True):
                if (b.taken, b.quota) != (was.taken, was.quota):
                    await conn.execute(
                        update(t.badge_types)
                        .where(
                            t.badge_types.c.convention_id == str(cid),
                            t.badge_types.c.code == b.code,
                        )
                        .values(confirmed=b.taken, quota=b.quota)
                    )
            if c.waitlist != before.waitlist:
                known = set(before.waitlist)
                entries.extend(_entry_row(cid, e) for e in c.waitlist if e not in known)
        for cid in self._new_conventions:
            entries.extend(_entry_row(cid, e) for e in self.conventions[cid].waitlist)
        await upsert(conn, t.waitlist_entries, entries)
        changed = self._dirty_registrations - self._new_registrations
        for rid in sorted(changed, key=str):
            row = _registration_row(self.registrations[rid])
            await conn.execute(
                update(t.registrations)
                .where(t.registrations.c.registration_id == row["registration_id"])
                .values(
                    status=row["status"],
                    active_key=row["active_key"],
                    email_key=row["email_key"],
                    email_hash=row["email_hash"],
                    email=row["email"],
                    name=row["name"],
                    ticket_serial=row["ticket_serial"],
                    checked_in_station=row["checked_in_station"],
                    checked_in_at=row["checked_in_at"],
                    check_in_scan_id=row["check_in_scan_id"],
                )
            )
        if self._new_registrations:
            await conn.execute(
                insert(t.registrations),
                [_registration_row(self.registrations[rid]) for rid in self._new_registrations],
            )
        orders: list[dict[str, Any]] = []
        refunds: list[dict[str, Any]] = []
        for rid in sorted(self.changed_registrations(), key=str):
            registration = self.registrations[rid]
            before_registration = self._before_registrations.get(rid)
            old_orders = set(before_registration.orders) if before_registration else set()
            old_refunds = set(before_registration.refunds) if before_registration else set()
            orders.extend(
                _order_row(registration, o) for o in registration.orders if o not in old_orders
            )
            refunds.extend(
                _refund_row(registration, r) for r in registration.refunds if r not in old_refunds
            )
        await upsert(conn, t.orders, orders)
        await upsert(conn, t.refunds, refunds)


def state_rows(
    conventions: Iterable[Convention], registrations: Iterable[Registration]
) -> dict[str, list[dict[str, Any]]]:
    """Every row of the decider's tables for these conventions and registrations, by table
    name, as `RegistrationBook.save` writes them: what state folded from the events alone
    must find in the live tables."""
    tables = ("conventions", "badge_types", "waitlist_entries", "registrations", "orders")
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in (*tables, "refunds")}
    for c in conventions:
        rows["conventions"].append(convention_row(c))
        rows["badge_types"].extend(_badge_rows(c))
        rows["waitlist_entries"].extend(_entry_row(c.convention_id, e) for e in c.waitlist)
    for r in registrations:
        rows["registrations"].append(_registration_row(r))
        rows["orders"].extend(_order_row(r, o) for o in r.orders)
        rows["refunds"].extend(_refund_row(r, refund) for refund in r.refunds)
    return rows


def convention_row(c: Convention) -> dict[str, Any]:
    return {
        "convention_id": str(c.convention_id),
        "name": c.name,
        "status": c.status.value,
        "request_hash": c.request_hash,
        "catalogue": catalogue_json(c),
    }


def _badge_rows(c: Convention) -> list[dict[str, Any]]:
    return [
        {
            "convention_id": str(c.convention_id),
            "code": b.code,
            "name": b.name,
            "price_cents": b.price_cents,
            "quota": b.quota,
            "confirmed": b.taken,
        }
        for b in c.badge_types
    ]


def _registration_named(command: Command, convention: Convention | None) -> uuid.UUID | None:
    """The registration a command is about: the one it names, or for an offer of an
    option, the registration the entry waits for."""
    if isinstance(command, AcceptOffer):
        entry = None if convention is None else convention.entry(command.entry_id)
        if entry is not None and entry.kind == "option":
            return entry.registration_id
        return command.registration_id
    registration_id = getattr(command, "registration_id", None)
    return registration_id if isinstance(registration_id, uuid.UUID) else None


def _email_named(command: Command, convention: Convention | None) -> str | None:
    """The e-mail whose active registration a command must look at: one registering, one
    taking a registration over, one joining a waitlist for a seat or taking a seat offered."""
    if isinstance(command, RegisterAttendee | TransferRegistration | JoinWaitlist):
        return command.email
    if isinstance(command, AcceptOffer) and convention is not None:
        entry = convention.entry(command.entry_id)
        return entry.email if entry is not None and entry.kind == "badge" else None
    return None


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _catalogue_of(c: Convention) -> tuple[object, ...]:
    return (c.policy, tuple(b.tiers for b in c.badge_types), c.options, c.promos)


def catalogue_json(c: Convention) -> str:
    """What the convention sells beyond its seats, with what is taken of each, as JSON."""
    return json.dumps(
        {
            "policy": c.policy.model_dump(mode="json"),
            "tiers": {
                b.code: [
                    {
                        "name": tier.name,
                        "price_cents": tier.price_cents,
                        "until": tier.until.isoformat() if tier.until else None,
                        "size": tier.size,
                        "sold": tier.sold,
                    }
                    for tier in b.tiers
                ]
                for b in c.badge_types
                if b.tiers
            },
            "options": [
                {
                    "spec": o.spec.model_dump(mode="json"),
                    "taken": o.taken,
                    "variants": {v.code: v.taken for v in o.variants},
                }
                for o in c.options
            ],
            "promos": [{"spec": p.spec.model_dump(mode="json"), "uses": p.uses} for p in c.promos],
        },
        separators=(",", ":"),
    )


def _with_catalogue(c: Convention, text: str | None) -> Convention:
    if not text:
        return c
    data = json.loads(text)
    tiers = data.get("tiers", {})
    badges = tuple(
        BadgeType(
            b.code,
            b.name,
            b.price_cents,
            b.quota,
            b.taken,
            tuple(
                Tier(
                    t["name"],
                    t["price_cents"],
                    datetime.fromisoformat(t["until"]) if t["until"] else None,
                    t["size"],
                    t["sold"],
                )
                for t in tiers.get(b.code, ())
            ),
        )
        for b in c.badge_types
    )
    options = []
    for o in data.get("options", ()):
        spec = OptionSpec.model_validate(o["spec"])
        variants = tuple(
            Variant(v.code, v.name, v.quota, o["variants"].get(v.code, 0)) for v in spec.variants
        )
        options.append(Option(spec, o["taken"], variants))
    promos = tuple(
        Promo(PromoCodeSpec.model_validate(p["spec"]), p["uses"]) for p in data.get("promos", ())
    )
    return Convention(
        c.convention_id,
        c.name,
        c.status,
        badges,
        c.request_hash,
        OrderPolicy.model_validate(data["policy"]) if "policy" in data else DEFAULT_POLICY,
        tuple(options),
        promos,
        c.waitlist,
    )


def _entry_row(cid: uuid.UUID, e: WaitEntry) -> dict[str, Any]:
    return {
        "entry_id": str(e.entry_id),
        "convention_id": str(cid),
        "stock": e.stock,
        "seq": e.seq,
        "status": e.status.value,
        "quantity": e.quantity,
        "email": e.email,
        "name": e.name,
        "account_id": None if e.account_id is None else str(e.account_id),
        "registration_id": None if e.registration_id is None else str(e.registration_id),
        "offer_expires_at": _naive(e.offer_expires_at),
    }


def _entry(row: Any) -> WaitEntry:
    kind, _, rest = row.stock.partition(":")
    code, _, variant = rest.partition("/")
    return WaitEntry(
        entry_id=uuid.UUID(row.entry_id),
        stock=row.stock,
        kind=kind,
        code=code,
        variant=variant or None,
        seq=row.seq,
        quantity=row.quantity,
        email=row.email,
        name=row.name,
        account_id=uuid.UUID(row.account_id) if row.account_id else None,
        registration_id=uuid.UUID(row.registration_id) if row.registration_id else None,
        status=EntryStatus(row.status),
        offer_expires_at=_aware(row.offer_expires_at),
    )


def _order_row(registration: Registration, o: Order) -> dict[str, Any]:
    return {
        "order_id": str(o.order_id),
        "registration_id": str(registration.registration_id),
        "convention_id": str(registration.convention_id),
        "status": o.status.value,
        "first": o.first,
        "hold_until": _naive(o.hold_until),
        "total_cents": o.terms.total_cents,
        "currency": o.terms.currency,
        "terms": o.terms.model_dump_json(),
        "payment_id": o.payment_id,
        "settled_payments": json.dumps(sorted(o.settled)),
        "request_hash": o.request_hash,
    }


def _refund_row(registration: Registration, r: Refund) -> dict[str, Any]:
    return {
        "refund_id": str(r.refund_id),
        "registration_id": str(registration.registration_id),
        "convention_id": str(registration.convention_id),
        "order_id": str(r.order_id),
        "payment_id": r.payment_id,
        "amount_cents": r.amount_cents,
        "currency": r.currency,
        "reason": r.reason,
        "status": "completed" if r.completed else "issued",
        "issued_at": datetime.now(UTC).replace(tzinfo=None),
    }


async def _load_orders(conn: AsyncConnection, ids: set[str]) -> dict[str, list[Order]]:
    found: dict[str, list[Order]] = {}
    rows = await conn.execute(
        select(t.orders)
        .where(t.orders.c.convention_id.in_(ids))
        .order_by(t.orders.c.registration_id)
    )
    for row in rows:
        terms = OrderTerms.model_validate_json(row.terms)
        found.setdefault(row.registration_id, []).append(
            Order(
                order_id=uuid.UUID(row.order_id),
                first=bool(row.first),
                status=OrderStatus(row.status),
                terms=terms,
                hold_until=_aware(row.hold_until),
                payment_id=row.payment_id,
                settled=frozenset(json.loads(row.settled_payments)),
                request_hash=row.request_hash,
            )
        )
    for orders in found.values():
        orders.sort(key=lambda o: (not o.first, str(o.order_id)))
    return found


async def _load_refunds(conn: AsyncConnection, ids: set[str]) -> dict[str, list[Refund]]:
    found: dict[str, list[Refund]] = {}
    rows = await conn.execute(
        select(t.refunds).where(t.refunds.c.convention_id.in_(ids)).order_by(t.refunds.c.issued_at)
    )
    for row in rows:
        found.setdefault(row.registration_id, []).append(
            Refund(
                uuid.UUID(row.refund_id),
                uuid.UUID(row.order_id),
                row.payment_id,
                row.amount_cents,
                row.currency,
                row.reason,
                row.status == "completed",
            )
        )
    return found


async def _load_conventions(conn: AsyncConnection, ids: set[str]) -> dict[uuid.UUID, Convention]:
    badges: dict[str, list[BadgeType]] = {}
    rows = await conn.execute(
        select(t.badge_types)
        .where(t.badge_types.c.convention_id.in_(ids))
        .order_by(t.badge_types.c.convention_id, t.badge_types.c.code)
    )
    for row in rows:
        badges.setdefault(row.convention_id, []).append(
            BadgeType(row.code, row.name, row.price_cents, row.quota, row.confirmed)
        )
    entries: dict[str, list[WaitEntry]] = {}
    for row in await conn.execute(
        select(t.waitlist_entries)
        .where(t.waitlist_entries.c.convention_id.in_(ids))
        .order_by(t.waitlist_entries.c.seq)
    ):
        entries.setdefault(row.convention_id, []).append(_entry(row))
    found = {}
    for row in await conn.execute(
        select(t.conventions).where(t.conventions.c.convention_id.in_(ids))
    ):
        cid = uuid.UUID(row.convention_id)
        convention = Convention(
            cid,
            row.name,
            ConventionStatus(row.status),
            tuple(badges.get(row.convention_id, ())),
            row.request_hash,
            waitlist=tuple(entries.get(row.convention_id, ())),
        )
        found[cid] = _with_catalogue(convention, row.catalogue)
    return found


def _registration(
    row: Any, orders: dict[str, list[Order]], refunds: dict[str, list[Refund]]
) -> Registration:
    return Registration(
        registration_id=uuid.UUID(row.registration_id),
        convention_id=uuid.UUID(row.convention_id),
        email_key=row.email_key,
        badge_type=row.badge_type,
        status=RegistrationStatus(row.status),
        request_hash=row.request_hash,
        email=row.email or "",
        name=row.name or "",
        orders=tuple(orders.get(row.registration_id, ())),
        refunds=tuple(refunds.get(row.registration_id, ())),
        ticket_serial=row.ticket_serial,
        check_in=_check_in(row),
    )


def _check_in(row: Any) -> CheckIn | None:
    if row.check_in_scan_id is None:
        return None
    return CheckIn(
        row.checked_in_station,
        row.checked_in_at.replace(tzinfo=UTC),
        uuid.UUID(row.check_in_scan_id),
    )


def _registration_row(r: Registration) -> dict[str, object]:
    return {
        "registration_id": str(r.registration_id),
        "convention_id": str(r.convention_id),
        "email_key": r.email_key,
        "email_hash": identity_hash(r.email_key),
        "badge_type": r.badge_type,
        "status": r.status.value,
        "request_hash": r.request_hash,
        "active_key": identity_hash(str(r.convention_id), r.email_key) if r.active else None,
        "email": r.email,
        "name": r.name,
        "ticket_serial": r.ticket_serial,
        "checked_in_station": None if r.check_in is None else r.check_in.station,
        "checked_in_at": None if r.check_in is None else _naive(r.check_in.scanned_at),
        "check_in_scan_id": None if r.check_in is None else str(r.check_in.scan_id),
    }
