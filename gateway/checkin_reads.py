"""Queries of check-in against the website read models (`projections.website.tables`): a
registration with what its ticket and badge say, each scan as the decider decided it, the
ticket list a station works offline from, and the door's summary; with the shapes the
check-in routes answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.reads import decode_cursor, encode_cursor
from projections.website import tables as t

CONFIRMED = "confirmed"
"""The status of a registration that may be checked in: free at once, or paid."""
CHECKED_IN = "checked_in"
SUPERSEDED = "superseded"
HOUR = "%Y-%m-%dT%H:00:00"


class ScanView(BaseModel):
    """A scan as decided: `outcome` is `checked_in`, `superseded` (the earlier scan at
    `winner_station` won) or the refusal's reason (`already_checked_in` names the winner)."""

    scan_id: uuid.UUID
    registration_id: uuid.UUID
    station: str
    scanned_at: datetime
    outcome: str
    winner_station: str | None
    winner_scanned_at: datetime | None


class ScanPage(BaseModel):
    items: list[ScanView]
    next: str | None


class StationKey(BaseModel):
    kid: str
    public_key: str
    """The raw 32-byte Ed25519 public key, base64url (WebCrypto's `raw` format)."""


class StationTicket(BaseModel):
    registration_id: uuid.UUID
    serial: int
    name: str
    badge_type: str
    checked_in_at: datetime | None
    checked_in_station: str | None


class StationTickets(BaseModel):
    convention_id: uuid.UUID
    generated_at: datetime
    keys: list[StationKey]
    tickets: list[StationTicket]


class BadgeTypeCount(BaseModel):
    badge_type: str
    registered: int
    checked_in: int


class HourCount(BaseModel):
    hour: datetime
    """The hour's start, UTC."""
    checked_in: int


class Conflict(BaseModel):
    """A scan that was the check-in until an earlier one (an offline station's) replaced it."""

    registration_id: uuid.UUID
    winner_station: str | None
    winner_scanned_at: datetime | None
    superseded_station: str
    superseded_scanned_at: datetime


class CheckInSummary(BaseModel):
    convention_id: uuid.UUID
    registered: int
    """Registrations that may be checked in (confirmed)."""
    checked_in: int
    """Of those, the ones checked in."""
    by_badge_type: list[BadgeTypeCount]
    by_hour: list[HourCount]
    conflicts: list[Conflict]


@dataclass(frozen=True)
class Holder:
    """A registration with what its ticket and badge show."""

    registration_id: uuid.UUID
    convention_id: uuid.UUID
    convention_name: str
    name: str
    badge_type: str
    badge_type_name: str
    status: str
    serial: int

    @property
    def badge_label(self) -> str:
        if self.badge_type_name and self.badge_type_name != self.badge_type:
            return f"{self.badge_type_name} ({self.badge_type})"
        return self.badge_type


@dataclass(frozen=True)
class DecidedScan:
    """A scan's row with its registration's name and badge type, to answer the station."""

    view: ScanView
    convention_id: uuid.UUID
    name: str | None
    badge_type: str | None
    checked_in_station: str | None
    checked_in_at: datetime | None


def utc(moment: datetime) -> datetime:
    """Read models store UTC without a zone; the API says so."""
    return moment.replace(tzinfo=UTC)


def _maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


def _scan_view(row: Any) -> ScanView:
    return ScanView(
        scan_id=uuid.UUID(row.scan_id),
        registration_id=uuid.UUID(row.registration_id),
        station=row.station,
        scanned_at=utc(row.scanned_at),
        outcome=row.outcome,
        winner_station=row.winner_station,
        winner_scanned_at=_maybe_utc(row.winner_scanned_at),
    )


class CheckInReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _all(self, query: Any) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def holder(self, registration_id: uuid.UUID) -> Holder | None:
        r, c, b = t.registrations.c, t.conventions.c, t.badge_types.c
        rows = await self._all(
            select(
                r.registration_id,
                r.convention_id,
                r.name,
                r.badge_type,
                r.status,
                r.ticket_serial,
                c.name.label("convention_name"),
                b.name.label("badge_type_name"),
            )
            .select_from(
                t.registrations.join(t.conventions, c.convention_id == r.convention_id).outerjoin(
                    t.badge_types, and_(b.convention_id == r.convention_id, b.code == r.badge_type)
                )
            )
            .where(r.registration_id == str(registration_id))
        )
        if not rows:
            return None
        row = rows[0]
        return Holder(
            registration_id=uuid.UUID(row.registration_id),
            convention_id=uuid.UUID(row.convention_id),
            convention_name=row.convention_name,
            name=row.name,
            badge_type=row.badge_type,
            badge_type_name=row.badge_type_name or row.badge_type,
            status=row.status,
            serial=int(row.ticket_serial),
        )

    async def station_tickets(self, convention_id: uuid.UUID) -> list[StationTicket]:
        """Every registration of the convention that may be checked in."""
        r = t.registrations.c
        rows = await self._all(
            select(
                r.registration_id,
                r.ticket_serial,
                r.name,
                r.badge_type,
                r.checked_in_at,
                r.checked_in_station,
            )
            .where(r.convention_id == str(convention_id), r.status == CONFIRMED)
            .order_by(r.registration_id)
        )
        return [
            StationTicket(
                registration_id=uuid.UUID(row.registration_id),
                serial=int(row.ticket_serial),
                name=row.name,
                badge_type=row.badge_type,
                checked_in_at=_maybe_utc(row.checked_in_at),
                checked_in_station=row.checked_in_station,
            )
            for row in rows
        ]

    async def decided(self, scan_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DecidedScan]:
        """The scans among `scan_ids` decided so far, with their registrations."""
        ids = sorted({str(scan_id) for scan_id in scan_ids})
        if not ids:
            return {}
        s, r = t.check_in_scans.c, t.registrations.c
        rows = await self._all(
            select(t.check_in_scans, r.name, r.badge_type, r.checked_in_station, r.checked_in_at)
            .select_from(
                t.check_in_scans.outerjoin(t.registrations, r.registration_id == s.registration_id)
            )
            .where(s.scan_id.in_(ids))
        )
        return {
            uuid.UUID(row.scan_id): DecidedScan(
                view=_scan_view(row),
                convention_id=uuid.UUID(row.convention_id),
                name=row.name,
                badge_type=row.badge_type,
                checked_in_station=row.checked_in_station,
                checked_in_at=_maybe_utc(row.checked_in_at),
            )
            for row in rows
        }

    async def scans(
        self, convention_id: uuid.UUID, *, station: str | None, cursor: str | None, limit: int
    ) -> ScanPage:
        """The convention's scans (or one station's) in the order they were scanned."""
        s = t.check_in_scans.c
        conditions: list[Any] = [s.convention_id == str(convention_id)]
        if station is not None:
            conditions.append(s.station == station)
        if cursor:
            scanned, scan_id = decode_cursor(cursor)
            conditions.append(
                or_(s.scanned_at > scanned, and_(s.scanned_at == scanned, s.scan_id > scan_id))
            )
        rows = await self._all(
            select(t.check_in_scans)
            .where(*conditions)
            .order_by(s.scanned_at, s.scan_id)
            .limit(limit + 1)
        )
        items = [_scan_view(row) for row in rows[:limit]]
        last = items[-1] if items else None
        return ScanPage(
            items=items,
            next=encode_cursor(last.scanned_at.replace(tzinfo=None), str(last.scan_id))
            if last is not None and len(rows) > limit
            else None,
        )

    async def summary(self, convention_id: uuid.UUID) -> CheckInSummary:
        r, b, s = t.registrations.c, t.badge_types.c, t.check_in_scans.c
        cid = str(convention_id)
        admitted = and_(r.convention_id == cid, r.status == CONFIRMED)
        counted = await self._all(
            select(r.badge_type, func.count(), func.count(r.checked_in_at))
            .where(admitted)
            .group_by(r.badge_type)
        )
        codes = await self._all(select(b.code).where(b.convention_id == cid).order_by(b.position))
        hour = func.date_format(r.checked_in_at, HOUR)
        hours = await self._all(
            select(hour.label("hour"), func.count())
            .where(admitted, r.checked_in_at.is_not(None))
            .group_by(hour)
            .order_by(hour)
        )
        conflicts = await self._all(
            select(t.check_in_scans)
            .where(s.convention_id == cid, s.outcome == SUPERSEDED)
            .order_by(s.winner_scanned_at, s.registration_id, s.scanned_at)
        )
        counts = {row[0]: (int(row[1]), int(row[2])) for row in counted}
        order = [row.code for row in codes] + sorted(set(counts) - {row.code for row in codes})
        by_badge_type = [
            BadgeTypeCount(badge_type=code, registered=registered, checked_in=checked_in)
            for code in order
            for registered, checked_in in [counts.get(code, (0, 0))]
        ]
        return CheckInSummary(
            convention_id=convention_id,
            registered=sum(count.registered for count in by_badge_type),
            checked_in=sum(count.checked_in for count in by_badge_type),
            by_badge_type=by_badge_type,
            by_hour=[
                HourCount(hour=utc(datetime.fromisoformat(row[0])), checked_in=int(row[1]))
                for row in hours
            ],
            conflicts=[
                Conflict(
                    registration_id=uuid.UUID(row.registration_id),
                    winner_station=row.winner_station,
                    winner_scanned_at=_maybe_utc(row.winner_scanned_at),
                    superseded_station=row.station,
                    superseded_scanned_at=utc(row.scanned_at),
                )
                for row in conflicts
            ],
        )
