"""The decider's working set for one batch: state loaded from `butterfly_write`, evolved
in memory as events are decided, then written back in the batch's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select, tuple_, update
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
)


@dataclass
class RegistrationBook:
    conventions: dict[uuid.UUID, Convention] = field(default_factory=dict)
    registrations: dict[uuid.UUID, Registration] = field(default_factory=dict)
    holders: dict[tuple[uuid.UUID, str], Registration] = field(default_factory=dict)
    _new_conventions: set[uuid.UUID] = field(default_factory=set)
    _dirty_conventions: set[uuid.UUID] = field(default_factory=set)
    _new_registrations: set[uuid.UUID] = field(default_factory=set)
    _dirty_registrations: set[uuid.UUID] = field(default_factory=set)

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
            case _:
                return Situation(convention)

    def apply(self, event: Event) -> None:
        cid = event.convention_id
        before = self.conventions.get(cid)
        after = evolve_convention(before, event)
        if after is not None and after is not before:
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
                key = (new.convention_id, new.email_key)
                if new.active:
                    self.holders[key] = new
                elif self.holders.get(key) is not None and (
                    self.holders[key].registration_id == registration_id
                ):
                    del self.holders[key]

    @classmethod
    async def load(cls, conn: AsyncConnection, commands: Iterable[Command]) -> RegistrationBook:
        book = cls()
        commands = list(commands)
        convention_ids = {str(c.convention_id) for c in commands}
        registration_ids = {
            str(c.registration_id)
            for c in commands
            if isinstance(c, RegisterAttendee | CancelRegistration)
        }
        emails = {
            (str(c.convention_id), identity_hash(email_key(c.email)))
            for c in commands
            if isinstance(c, RegisterAttendee)
        }
        if convention_ids:
            await book._load_conventions(conn, convention_ids)
        if registration_ids:
            rows = await conn.execute(
                select(t.registrations).where(
                    t.registrations.c.registration_id.in_(registration_ids)
                )
            )
            for row in rows:
                book.registrations[uuid.UUID(row.registration_id)] = _registration(row)
        if emails:
            rows = await conn.execute(
                select(t.registrations).where(
                    tuple_(t.registrations.c.convention_id, t.registrations.c.email_hash).in_(
                        emails
                    ),
                    t.registrations.c.status == RegistrationStatus.CONFIRMED.value,
                )
            )
            for row in rows:
                reg = _registration(row)
                book.holders[(reg.convention_id, reg.email_key)] = reg
        return book

    async def _load_conventions(self, conn: AsyncConnection, ids: set[str]) -> None:
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
        for row in await conn.execute(
            select(t.conventions).where(t.conventions.c.convention_id.in_(ids))
        ):
            cid = uuid.UUID(row.convention_id)
            self.conventions[cid] = Convention(
                cid,
                row.name,
                ConventionStatus(row.status),
                tuple(badges.get(row.convention_id, ())),
                row.request_hash,
            )

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
            c = self.conventions[cid]
            await conn.execute(
                update(t.conventions)
                .where(t.conventions.c.convention_id == str(cid))
                .values(status=c.status.value)
            )
            for b in c.badge_types:
                await conn.execute(
                    update(t.badge_types)
                    .where(
                        t.badge_types.c.convention_id == str(cid), t.badge_types.c.code == b.code
                    )
                    .values(confirmed=b.confirmed)
                )
        changed = self._dirty_registrations - self._new_registrations
        for rid in sorted(changed, key=str):
            row = _registration_row(self.registrations[rid])
            await conn.execute(
                update(t.registrations)
                .where(t.registrations.c.registration_id == row["registration_id"])
                .values(status=row["status"], active_key=row["active_key"])
            )
        if self._new_registrations:
            await conn.execute(
                insert(t.registrations),
                [_registration_row(self.registrations[rid]) for rid in self._new_registrations],
            )


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
