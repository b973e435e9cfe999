"""Queries against the lodging read models (`projections.lodging.tables`): what the lodging
routes answer from, and what they check a write against before publishing it."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.lodging_views import (
    HotelPickup,
    HotelsView,
    HotelView,
    LotteryAwardView,
    LotteryView,
    LotteryWaitlistView,
    NightView,
    Parked,
    PickupNight,
    PickupView,
    ReconciliationView,
    RoomRequestView,
    RoomTypePickup,
    RoomTypeView,
    SyncView,
    pickup_percent,
)
from gateway.reads import decode_cursor, encode_cursor
from projections.lodging import tables as t
from schemas.lodging import Drift

REGISTRATION_REQUESTS = 100
"""The most room requests a registration's listing answers (its latest): one is active at a
time, so more are cancelled or failed ones."""


@dataclass(frozen=True)
class KnownRequest:
    view: RoomRequestView
    request_hash: str


@dataclass(frozen=True)
class BlockNight:
    hotel: str
    room_type: str
    night: date


class LodgingReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _all(self, query: Any) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def _first(self, query: Any) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def block_nights(self, convention_id: uuid.UUID) -> set[BlockNight]:
        """Every night of every block the partner described for the convention."""
        n = t.hotel_nights.c
        rows = await self._all(
            select(n.hotel, n.room_type, n.night).where(
                n.convention_id == str(convention_id), n.listed_at.is_not(None)
            )
        )
        return {BlockNight(row.hotel, row.room_type, row.night) for row in rows}

    async def hotels(self, convention_id: uuid.UUID) -> HotelsView:
        n, s = t.hotel_nights.c, t.syncs.c
        rows = await self._all(
            select(t.hotel_nights)
            .where(n.convention_id == str(convention_id), n.listed_at.is_not(None))
            .order_by(n.hotel, n.room_type, n.night)
        )
        synced_at = (
            await self._first(
                select(func.max(s.finished_at)).where(
                    s.convention_id == str(convention_id), s.status == "done"
                )
            )
        )[0]
        hotels: dict[str, HotelView] = {}
        room_types: dict[tuple[str, str], RoomTypeView] = {}
        for row in rows:
            hotel = hotels.setdefault(
                row.hotel, HotelView(code=row.hotel, name=row.hotel_name, room_types=[])
            )
            if row.hotel_name:
                hotel.name = row.hotel_name
            key = (row.hotel, row.room_type)
            if key not in room_types:
                room_types[key] = RoomTypeView(
                    code=row.room_type, description=row.description, nights=[]
                )
                hotel.room_types.append(room_types[key])
            room_types[key].nights.append(
                NightView(
                    night=row.night,
                    block=row.size,
                    booked=row.booked,
                    left=max(row.size - row.booked, 0),
                    rate_cents=row.rate_cents,
                    release_date=row.release_date,
                )
            )
        return HotelsView(
            convention_id=convention_id,
            synced_at=_utc(synced_at),
            hotels=list(hotels.values()),
            lottery=await self.lottery_status(convention_id),
        )

    async def pickup(self, convention_id: uuid.UUID) -> PickupView:
        """Every block night, and any night our requests hold outside the blocks."""
        n = t.hotel_nights.c
        rows = await self._all(
            select(t.hotel_nights)
            .where(n.convention_id == str(convention_id))
            .order_by(n.hotel, n.room_type, n.night)
        )
        by_hotel: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_hotel[row.hotel].append(row)
        hotels = [_hotel_pickup(code, nights) for code, nights in by_hotel.items()]
        block = sum(h.block for h in hotels)
        booked = sum(h.booked for h in hotels)
        return PickupView(
            convention_id=convention_id,
            block=block,
            booked=booked,
            pickup_percent=pickup_percent(booked, block),
            hotels=hotels,
        )

    async def sync(self, sync_id: uuid.UUID) -> SyncView | None:
        row = await self._first(select(t.syncs).where(t.syncs.c.sync_id == str(sync_id)))
        if row is None:
            return None
        return SyncView(
            sync_id=uuid.UUID(row.sync_id),
            convention_id=uuid.UUID(row.convention_id),
            status=row.status,
            error=row.error,
            first_night=row.first_night,
            last_night=row.last_night,
            requested_at=_at(row.requested_at),
            finished_at=_utc(row.finished_at),
        )

    async def request(self, request_id: uuid.UUID) -> KnownRequest | None:
        row = await self._first(
            select(t.requests).where(t.requests.c.request_id == str(request_id))
        )
        return None if row is None else KnownRequest(_request_view(row), row.request_hash)

    async def active_request(self, registration_id: uuid.UUID) -> RoomRequestView | None:
        """A request of the registration that still asks for or holds a room."""
        r = t.requests.c
        row = await self._first(
            select(t.requests).where(
                r.registration_id == str(registration_id),
                r.status.in_(("requested", "held", "confirmed", "waitlisted")),
            )
        )
        return None if row is None else _request_view(row)

    async def requests_of(self, registration_id: uuid.UUID) -> list[RoomRequestView]:
        """A registration's room requests (the latest `REGISTRATION_REQUESTS`), oldest first."""
        r = t.requests.c
        rows = await self._all(
            select(t.requests)
            .where(r.registration_id == str(registration_id))
            .order_by(r.created_at.desc(), r.request_id.desc())
            .limit(REGISTRATION_REQUESTS)
        )
        return [_request_view(row) for row in reversed(rows)]

    async def requests(
        self,
        convention_id: uuid.UUID,
        *,
        status: str | None,
        parked: bool | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[RoomRequestView], str | None]:
        r = t.requests.c
        conditions: list[Any] = [r.convention_id == str(convention_id)]
        if status:
            conditions.append(r.status == status)
        if parked is not None:
            conditions.append(r.parked_step.is_not(None) if parked else r.parked_step.is_(None))
        if cursor:
            created, rid = decode_cursor(cursor)
            conditions.append(
                or_(r.created_at > created, and_(r.created_at == created, r.request_id > rid))
            )
        rows = await self._all(
            select(t.requests)
            .where(*conditions)
            .order_by(r.created_at, r.request_id)
            .limit(limit + 1)
        )
        items = [_request_view(row) for row in rows[:limit]]
        next_cursor = (
            encode_cursor(items[-1].created_at, str(items[-1].request_id))
            if len(rows) > limit
            else None
        )
        return items, next_cursor

    async def lottery_status(self, convention_id: uuid.UUID) -> str:
        row = await self._first(
            select(t.lottery.c.status).where(t.lottery.c.convention_id == str(convention_id))
        )
        return "closed" if row is None else str(row.status)

    async def lottery(self, convention_id: uuid.UUID) -> LotteryView:
        e = t.lottery_entries.c
        cid = str(convention_id)
        head = await self._first(select(t.lottery).where(t.lottery.c.convention_id == cid))
        entries = await self._all(
            select(t.lottery_entries)
            .where(e.convention_id == cid, e.result.is_not(None))
            .order_by(e.draw, e.registration_id)
        )
        entered = (await self._first(select(func.count()).where(e.convention_id == cid)))[0]
        return LotteryView(
            convention_id=convention_id,
            status="closed" if head is None else head.status,
            seed=None if head is None else head.seed,
            entries=head.entries if head is not None and head.entries is not None else entered,
            awards=[
                LotteryAwardView(
                    registration_id=uuid.UUID(row.registration_id),
                    request_id=_uuid(row.request_id),
                    hotel=row.hotel,
                    rank=row.rank,
                    draw=row.draw,
                )
                for row in entries
                if row.result == "awarded"
            ],
            waitlist=[
                LotteryWaitlistView(
                    registration_id=uuid.UUID(row.registration_id),
                    request_id=_uuid(row.request_id),
                    position=row.waitlist_position,
                    draw=row.draw,
                )
                for row in entries
                if row.result == "waitlisted"
            ],
        )

    async def reconciliation(self, reconciliation_id: uuid.UUID) -> ReconciliationView | None:
        c = t.reconciliations.c
        row = await self._first(
            select(t.reconciliations).where(c.reconciliation_id == str(reconciliation_id))
        )
        if row is None:
            return None
        return ReconciliationView(
            reconciliation_id=uuid.UUID(row.reconciliation_id),
            convention_id=uuid.UUID(row.convention_id),
            status=row.status,
            drifts=[Drift.model_validate(d) for d in json.loads(row.drifts)],
            error=row.error,
            requested_at=_at(row.requested_at),
            reconciled_at=_utc(row.reconciled_at),
        )


def _hotel_pickup(code: str, rows: list[Any]) -> HotelPickup:
    by_type: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_type[row.room_type].append(row)
    room_types = [_room_type_pickup(room_type, nights) for room_type, nights in by_type.items()]
    block = sum(room_type.block for room_type in room_types)
    booked = sum(room_type.booked for room_type in room_types)
    name = next((row.hotel_name for row in rows if row.hotel_name), code)
    return HotelPickup(
        code=code,
        name=name,
        block=block,
        booked=booked,
        pickup_percent=pickup_percent(booked, block),
        room_types=room_types,
    )


def _room_type_pickup(code: str, rows: list[Any]) -> RoomTypePickup:
    nights = [
        PickupNight(
            night=row.night,
            block=row.size,
            booked=row.booked,
            pickup_percent=pickup_percent(row.booked, row.size),
        )
        for row in rows
    ]
    block = sum(night.block for night in nights)
    booked = sum(night.booked for night in nights)
    return RoomTypePickup(
        code=code,
        description=next((row.description for row in rows if row.description), ""),
        block=block,
        booked=booked,
        pickup_percent=pickup_percent(booked, block),
        nights=nights,
    )


def _request_view(row: Any) -> RoomRequestView:
    return RoomRequestView(
        request_id=uuid.UUID(row.request_id),
        registration_id=uuid.UUID(row.registration_id),
        convention_id=uuid.UUID(row.convention_id),
        status=row.status,
        hotels=json.loads(row.hotels),
        declined=json.loads(row.declined),
        hotel=row.hotel,
        room_type=row.room_type,
        check_in=row.check_in,
        check_out=row.check_out,
        nights=(row.check_out - row.check_in).days,
        guests=json.loads(row.guests),
        ack=row.ack,
        total_cents=row.total_cents,
        reason=row.reason,
        detail=row.detail,
        waitlist_position=row.waitlist_position,
        parked=None
        if row.parked_step is None
        else Parked(step=row.parked_step, error=row.parked_error),
        cancelled_by=row.cancelled_by,
        released=bool(row.released),
        lottery_draw=row.lottery_draw,
        created_at=_at(row.created_at),
        updated_at=_at(row.updated_at),
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def _at(moment: datetime) -> datetime:
    """Read models store UTC without a zone; the API says so explicitly."""
    return moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else _at(moment)
