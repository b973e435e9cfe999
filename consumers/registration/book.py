"""The decider's state: `PartitionMemory` holds what one owned partition's decisions need
between batches; `RegistrationBook` is one batch's working set, taken from that memory,
evolved as events are decided, then written back in the batch's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.registration import tables as t
from consumers.registration.state import (
    BadgeType,
    Convention,
    ConventionStatus,
    Registration,
    RegistrationStatus,
    Situation,
    evolve_convention,
    evolve_registration,
)
from schemas.identity import email_key, identity_hash
from schemas.registration import (
    CancelRegistration,
    Command,
    ConventionCreated,
    Event,
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
            ).where(r.convention_id.in_(missing))
        )
        for row in rows:
            registration = _registration(row)
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
    _new_conventions: set[uuid.UUID] = field(default_factory=set)
    _dirty_conventions: set[uuid.UUID] = field(default_factory=set)
    _new_registrations: set[uuid.UUID] = field(default_factory=set)
    _dirty_registrations: set[uuid.UUID] = field(default_factory=set)

    def changed_conventions(self) -> set[uuid.UUID]:
        return self._new_conventions | self._dirty_conventions

    def changed_registrations(self) -> set[uuid.UUID]:
        return self._new_registrations | self._dirty_registrations

    def situation(self, command: Command) -> Situation:
        convention = self.conventions.get(command.convention_id)
        match command:
            case RegisterAttendee():
                holder = self.holders.get((command.convention_id, email_key(command.email)))
                return Situation(
                    convention, self.registrations.get(command.registration_id), holder
                )
            case CancelRegistration():
                return Situation(convention, self.registrations.get(command.registration_id))
            case TransferRegistration():
                holder = self.holders.get((command.convention_id, email_key(command.email)))
                return Situation(
                    convention, self.registrations.get(command.registration_id), holder
                )
            case _:
                return Situation(convention)

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
            if isinstance(command, RegisterAttendee | CancelRegistration | TransferRegistration):
                known = memory.registrations.get(command.registration_id)
                if known is not None:
                    book.registrations[command.registration_id] = known
            if isinstance(command, RegisterAttendee | TransferRegistration):
                key = (command.convention_id, email_key(command.email))
                holder = memory.holders.get(key)
                if holder is not None:
                    book.holders[key] = holder
        return book

    async def save(self, conn: AsyncConnection) -> None:
        """Write back what the decided events changed."""
        for cid in sorted(self._new_conventions, key=str):
            c = self.conventions[cid]
            await conn.execute(
                insert(t.conventions).values(
                    convention_id=str(cid),
                    name=c.name,
                    status=c.status.value,
                    request_hash=c.request_hash,
                )
            )
            if c.badge_types:
                await conn.execute(
                    insert(t.badge_types),
                    [
                        {
                            "convention_id": str(cid),
                            "code": b.code,
                            "name": b.name,
                            "price_cents": b.price_cents,
                            "quota": b.quota,
                            "confirmed": b.confirmed,
                        }
                        for b in c.badge_types
                    ],
                )
        for cid in sorted(self._dirty_conventions - self._new_conventions, key=str):
            c, before = self.conventions[cid], self._before[cid]
            if c.status is not before.status:
                await conn.execute(
                    update(t.conventions)
                    .where(t.conventions.c.convention_id == str(cid))
                    .values(status=c.status.value)
                )
            for b, was in zip(c.badge_types, before.badge_types, strict=True):
                if b.confirmed != was.confirmed:
                    await conn.execute(
                        update(t.badge_types)
                        .where(
                            t.badge_types.c.convention_id == str(cid),
                            t.badge_types.c.code == b.code,
                        )
                        .values(confirmed=b.confirmed)
                    )
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
                )
            )
        if self._new_registrations:
            await conn.execute(
                insert(t.registrations),
                [_registration_row(self.registrations[rid]) for rid in self._new_registrations],
            )


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
    found = {}
    for row in await conn.execute(
        select(t.conventions).where(t.conventions.c.convention_id.in_(ids))
    ):
        cid = uuid.UUID(row.convention_id)
        found[cid] = Convention(
            cid,
            row.name,
            ConventionStatus(row.status),
            tuple(badges.get(row.convention_id, ())),
            row.request_hash,
        )
    return found


def _registration(row: object) -> Registration:
    return Registration(
        registration_id=uuid.UUID(row.registration_id),  # type: ignore[attr-defined]
        convention_id=uuid.UUID(row.convention_id),  # type: ignore[attr-defined]
        email_key=row.email_key,  # type: ignore[attr-defined]
        badge_type=row.badge_type,  # type: ignore[attr-defined]
        status=RegistrationStatus(row.status),  # type: ignore[attr-defined]
        request_hash=row.request_hash,  # type: ignore[attr-defined]
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
    }
