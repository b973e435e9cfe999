"""What the housing bureau does: offers its room blocks, holds, confirms, modifies and
cancels reservations, and lets "the hotel" act on its own.

Every change to a convention runs in one transaction that first locks that convention's row:
changes to one convention are thereby serialised (a block can never be over-booked, and the
convention's event sequence has no gaps and follows commit order), while other conventions
go on in parallel. Each change writes its event to the outbox in the same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from base64 import b32encode
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.simulators.lodging import store
from infra.simulators.lodging.seed import ROOM_TYPES, hotels_for, nights_between, release_date

MAX_NIGHTS = 14
HELD, WAITLISTED, CONFIRMED, CANCELLED = "held", "waitlisted", "confirmed", "cancelled"
ROOMS_TAKEN = (HELD, CONFIRMED)


class Refusal(Exception):
    """A request the bureau will not carry out: an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Stay:
    hotel: str
    room_type: str
    check_in: date
    check_out: date
    guests: tuple[str, ...]

    def nights(self) -> list[date]:
        return nights_between(self.check_in, self.check_out - timedelta(days=1))

    def check(self) -> None:
        if self.room_type not in ROOM_TYPES:
            raise Refusal(
                422, "unknown_room_type", f"room_type must be one of {', '.join(ROOM_TYPES)}"
            )
        if self.check_out <= self.check_in:
            raise Refusal(422, "invalid_dates", "check_out must be after check_in")
        if (self.check_out - self.check_in).days > MAX_NIGHTS:
            raise Refusal(422, "too_many_nights", f"at most {MAX_NIGHTS} nights")


@dataclass(frozen=True)
class StayChanges:
    """A modification: the fields given replace the reservation's; the others stay."""

    room_type: str | None = None
    check_in: date | None = None
    check_out: date | None = None
    guests: tuple[str, ...] | None = None

    def applied_to(self, stay: Stay) -> Stay:
        changed = {k: v for k, v in vars(self).items() if v is not None}
        return replace(stay, **changed)


def ack_for(idempotency_key: str) -> str:
    """The acknowledgement number a key gets: derived from the key, so a retried request
    lands on the same reservation even when two retries race."""
    digest = hashlib.sha256(f"lodging-ack:{idempotency_key}".encode()).digest()
    return "HB-" + b32encode(digest).decode()[:8]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _stay_of(row: Row[Any]) -> Stay:
    return Stay(row.hotel, row.room_type, row.check_in, row.check_out, tuple(row.guests))


def reservation_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "ack": row.ack,
        "convention_id": row.convention_id,
        "reference": row.reference,
        "hotel": row.hotel,
        "room_type": row.room_type,
        "check_in": row.check_in.isoformat(),
        "check_out": row.check_out.isoformat(),
        "guests": list(row.guests),
        "status": row.status,
        "total_cents": int(row.total_cents),
        "created_at": row.created_at.isoformat() + "Z",
        "updated_at": row.updated_at.isoformat() + "Z",
    }


class _Change:
    """One transaction on one convention, holding its lock: hands out its event sequence
    numbers and writes the events to the outbox."""

    def __init__(self, conn: AsyncConnection, convention_id: str, next_sequence: int) -> None:
        self.conn = conn
        self.convention_id = convention_id
        self.next_sequence = next_sequence
        self.emitted = 0

    async def emit(self, event_type: str, ack: str | None, data: dict[str, Any]) -> None:
        event_id = str(uuid.uuid4())
        body = {
            "event_id": event_id,
            "type": event_type,
            "convention_id": self.convention_id,
            "sequence": self.next_sequence,
            "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "ack": ack,
            "data": data,
        }
        await self.conn.execute(
            store.outbox.insert().values(
                event_id=event_id, convention_id=self.convention_id, body=body
            )
        )
        self.next_sequence += 1
        self.emitted += 1

    async def finish(self) -> None:
        if self.emitted:
            c = store.conventions.c
            await self.conn.execute(
                update(store.conventions)
                .where(c.convention_id == self.convention_id)
                .values(next_sequence=self.next_sequence)
            )


class Bureau:
    """The bureau's operations; `events_written` is called after each commit that wrote
    events, to wake the publisher."""

    def __init__(self, engine: AsyncEngine, events_written: Callable[[], None]) -> None:
        self.engine = engine
        self.events_written = events_written

    async def hotels(self, convention_id: str, first: date, last: date) -> dict[str, Any]:
        """The convention's hotels and blocks for nights `first - 1` to `last`, seeding the
        convention, and any night not seeded yet, first."""
        nights = nights_between(first - timedelta(days=1), last)
        seeded = hotels_for(convention_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(store.conventions).prefix_with("IGNORE").values(convention_id=convention_id)
            )
            await conn.execute(
                insert(store.hotels)
                .prefix_with("IGNORE")
                .values(
                    [
                        {"convention_id": convention_id, "code": h.code, "name": h.name}
                        for h in seeded
                    ]
                )
            )
            await conn.execute(
                insert(store.blocks)
                .prefix_with("IGNORE")
                .values(
                    [
                        {
                            "convention_id": convention_id,
                            "hotel": h.code,
                            "room_type": b.room_type,
                            "night": night,
                            "size": b.size,
                            "rate_cents": b.rate_cents,
                            "release_date": release_date(night),
                        }
                        for h in seeded
                        for b in h.blocks
                        for night in nights
                    ]
                )
            )
        b, h = store.blocks.c, store.hotels.c
        async with self.engine.connect() as conn:
            names = {
                row.code: row.name
                for row in await conn.execute(
                    select(h.code, h.name).where(h.convention_id == convention_id).order_by(h.code)
                )
            }
            rows = (
                await conn.execute(
                    select(store.blocks)
                    .where(b.convention_id == convention_id, b.night.between(nights[0], nights[-1]))
                    .order_by(b.hotel, b.room_type, b.night)
                )
            ).all()
        hotels: dict[str, dict[str, list[dict[str, Any]]]] = {code: {} for code in names}
        for row in rows:
            hotels[row.hotel].setdefault(row.room_type, []).append(
                {
                    "night": row.night.isoformat(),
                    "block": row.size,
                    "booked": row.booked,
                    "left": row.size - row.booked,
                    "rate_cents": row.rate_cents,
                    "release_date": row.release_date.isoformat(),
                }
            )
        return {
            "convention_id": convention_id,
            "hotels": [
                {
                    "code": code,
                    "name": names[code],
                    "room_types": [
                        {"code": rt, "description": ROOM_TYPES[rt], "nights": by_night}
                        for rt, by_night in sorted(room_types.items())
                    ],
                }
                for code, room_types in hotels.items()
            ],
        }

    async def hold(
        self,
        *,
        idempotency_key: str,
        request_hash: str,
        convention_id: str,
        reference: str,
        stay: Stay,
    ) -> tuple[dict[str, Any], bool]:
        """Hold a room for every night of `stay`, or waitlist the request if any night is
        full. The same key and body answer the reservation made first (and False)."""
        stay.check()
        ack = ack_for(idempotency_key)
        async with self.engine.begin() as conn:
            change = await self._lock(conn, convention_id)
            earlier = await self._reservation(conn, ack, lock=True)
            if earlier is not None:
                if earlier.request_hash != request_hash:
                    raise Refusal(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with another request",
                    )
                return reservation_json(earlier), False
            await self._known_hotel(conn, convention_id, stay.hotel)
            rates = await self._take_rooms(conn, convention_id, stay)
            status = HELD if rates is not None else WAITLISTED
            if rates is None:
                rates = await self._rates(conn, convention_id, stay)
            now = _now()
            await conn.execute(
                store.reservations.insert().values(
                    ack=ack,
                    convention_id=convention_id,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    reference=reference,
                    hotel=stay.hotel,
                    room_type=stay.room_type,
                    check_in=stay.check_in,
                    check_out=stay.check_out,
                    guests=list(stay.guests),
                    status=status,
                    total_cents=sum(rates),
                    created_at=now,
                    updated_at=now,
                )
            )
            row = await self._reservation(conn, ack)
            assert row is not None
            made = reservation_json(row)
            await change.emit(f"reservation.{status}", ack, made)
            await change.finish()
        self.events_written()
        return made, True

    async def confirm(self, ack: str) -> dict[str, Any]:
        """The caller confirms its hold; confirming twice is the same as once."""

        async def act(change: _Change, row: Row[Any]) -> dict[str, Any] | None:
            if row.status == CONFIRMED:
                return None
            if row.status != HELD:
                raise Refusal(409, f"reservation_{row.status}", f"the reservation is {row.status}")
            return await self._set_status(change, row, CONFIRMED, {"by": "guest"})

        return await self._on_reservation(ack, act)

    async def cancel(self, ack: str, *, by: str) -> dict[str, Any]:
        """Cancel and give the rooms back; cancelling twice is the same as once."""

        async def act(change: _Change, row: Row[Any]) -> dict[str, Any] | None:
            if row.status == CANCELLED:
                return None
            if row.status in ROOMS_TAKEN:
                await self._release_rooms(change.conn, row.convention_id, _stay_of(row))
            return await self._set_status(change, row, CANCELLED, {"by": by})

        return await self._on_reservation(ack, act)

    async def confirm_waitlisted(self, ack: str) -> dict[str, Any]:
        """The hotel found a room for a waitlisted request: it takes the rooms and confirms."""

        async def act(change: _Change, row: Row[Any]) -> dict[str, Any] | None:
            if row.status != WAITLISTED:
                raise Refusal(409, "not_waitlisted", f"the reservation is {row.status}")
            if await self._take_rooms(change.conn, row.convention_id, _stay_of(row)) is None:
                raise Refusal(409, "no_availability", "no room left for every night")
            return await self._set_status(
                change, row, CONFIRMED, {"by": "hotel", "from_waitlist": True}
            )

        return await self._on_reservation(ack, act)

    async def modify(self, ack: str, changes: StayChanges, *, by: str) -> dict[str, Any]:
        """Change nights, room type or guests. A reservation holding rooms must get a room
        for every new night, or nothing changes; a waitlisted one just changes its request."""

        async def act(change: _Change, row: Row[Any]) -> dict[str, Any] | None:
            if row.status == CANCELLED:
                raise Refusal(409, "reservation_cancelled", "the reservation is cancelled")
            before = _stay_of(row)
            after = changes.applied_to(before)
            if after == before:
                return None
            after.check()
            conn, convention_id = change.conn, row.convention_id
            if row.status in ROOMS_TAKEN:
                await self._release_rooms(conn, convention_id, before)
                rates = await self._take_rooms(conn, convention_id, after)
                if rates is None:
                    raise Refusal(409, "no_availability", "no room left for every new night")
            else:
                rates = await self._rates(conn, convention_id, after)
            await conn.execute(
                update(store.reservations)
                .where(store.reservations.c.ack == row.ack)
                .values(
                    room_type=after.room_type,
                    check_in=after.check_in,
                    check_out=after.check_out,
                    guests=list(after.guests),
                    total_cents=sum(rates),
                    updated_at=_now(),
                )
            )
            now = await self._reservation(conn, row.ack)
            assert now is not None
            previous = {
                "room_type": before.room_type,
                "check_in": before.check_in.isoformat(),
                "check_out": before.check_out.isoformat(),
                "guests": list(before.guests),
            }
            made = reservation_json(now)
            await change.emit(
                "reservation.modified", row.ack, {**made, "by": by, "previous": previous}
            )
            return made

        return await self._on_reservation(ack, act)

    async def change_block(
        self,
        convention_id: str,
        hotel: str,
        room_type: str,
        night: date,
        *,
        size: int | None,
        rate_cents: int | None,
    ) -> dict[str, Any]:
        """The hotel resizes or reprices one night of a block. It cannot shrink a block
        below the rooms already booked in it."""
        b = store.blocks.c
        async with self.engine.begin() as conn:
            change = await self._lock(conn, convention_id)
            where = (
                b.convention_id == convention_id,
                b.hotel == hotel,
                b.room_type == room_type,
                b.night == night,
            )
            row = (
                await conn.execute(select(store.blocks).where(*where).with_for_update())
            ).one_or_none()
            if row is None:
                raise Refusal(404, "unknown_block", "no such block for that hotel, room and night")
            new_size = row.size if size is None else size
            new_rate = row.rate_cents if rate_cents is None else rate_cents
            if new_size < row.booked:
                raise Refusal(409, "below_booked", f"{row.booked} rooms are booked already")
            await conn.execute(
                update(store.blocks).where(*where).values(size=new_size, rate_cents=new_rate)
            )
            where_json = {"hotel": hotel, "room_type": room_type, "night": night.isoformat()}
            if new_size != row.size:
                await change.emit(
                    "block.changed",
                    None,
                    {
                        **where_json,
                        "size": new_size,
                        "previous_size": row.size,
                        "booked": row.booked,
                    },
                )
            if new_rate != row.rate_cents:
                await change.emit(
                    "rate.changed",
                    None,
                    {**where_json, "rate_cents": new_rate, "previous_rate_cents": row.rate_cents},
                )
            await change.finish()
        if change.emitted:
            self.events_written()
        return {
            **where_json,
            "block": new_size,
            "booked": row.booked,
            "left": new_size - row.booked,
            "rate_cents": new_rate,
            "release_date": row.release_date.isoformat(),
        }

    async def reservation(self, ack: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await self._reservation(conn, ack)
        if row is None:
            raise Refusal(404, "unknown_reservation", f"no reservation {ack}")
        return reservation_json(row)

    async def reservations(
        self, convention_id: str, *, reference: str | None = None
    ) -> list[dict[str, Any]]:
        """The convention's reservations, or only those made under `reference`."""
        r = store.reservations.c
        query = select(store.reservations).where(r.convention_id == convention_id)
        if reference is not None:
            query = query.where(r.reference == reference)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(r.created_at, r.ack))
            return [reservation_json(row) for row in rows]

    async def _on_reservation(
        self,
        ack: str,
        act: Callable[[_Change, Row[Any]], Awaitable[dict[str, Any] | None]],
    ) -> dict[str, Any]:
        """Run `act` on the reservation under its convention's lock; `act` answers the new
        state, or None when there is nothing to do (the current state is answered)."""
        async with self.engine.connect() as conn:
            found = await self._reservation(conn, ack)
        if found is None:
            raise Refusal(404, "unknown_reservation", f"no reservation {ack}")
        async with self.engine.begin() as conn:
            change = await self._lock(conn, found.convention_id)
            row = await self._reservation(conn, ack, lock=True)
            assert row is not None
            made = await act(change, row)
            await change.finish()
        if change.emitted:
            self.events_written()
        return made if made is not None else reservation_json(row)

    async def _set_status(
        self, change: _Change, row: Row[Any], status: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        await change.conn.execute(
            update(store.reservations)
            .where(store.reservations.c.ack == row.ack)
            .values(status=status, updated_at=_now())
        )
        now = await self._reservation(change.conn, row.ack)
        assert now is not None
        made = reservation_json(now)
        await change.emit(f"reservation.{status}", row.ack, {**made, **extra})
        return made

    @staticmethod
    async def _lock(conn: AsyncConnection, convention_id: str) -> _Change:
        c = store.conventions.c
        next_sequence = (
            await conn.execute(
                select(c.next_sequence).where(c.convention_id == convention_id).with_for_update()
            )
        ).scalar_one_or_none()
        if next_sequence is None:
            raise Refusal(
                404,
                "unknown_convention",
                "the bureau has no blocks for this convention; ask for its hotels first",
            )
        return _Change(conn, convention_id, int(next_sequence))

    @staticmethod
    async def _reservation(
        conn: AsyncConnection, ack: str, *, lock: bool = False
    ) -> Row[Any] | None:
        query = select(store.reservations).where(store.reservations.c.ack == ack)
        if lock:
            query = query.with_for_update()
        return (await conn.execute(query)).one_or_none()

    @staticmethod
    async def _known_hotel(conn: AsyncConnection, convention_id: str, hotel: str) -> None:
        h = store.hotels.c
        found = (
            await conn.execute(
                select(h.code).where(h.convention_id == convention_id, h.code == hotel)
            )
        ).scalar_one_or_none()
        if found is None:
            raise Refusal(422, "unknown_hotel", f"no hotel {hotel} in this convention's blocks")

    @staticmethod
    async def _blocks(
        conn: AsyncConnection, convention_id: str, stay: Stay, *, lock: bool
    ) -> Sequence[Row[Any]]:
        b = store.blocks.c
        nights = stay.nights()
        query = select(store.blocks).where(
            b.convention_id == convention_id,
            b.hotel == stay.hotel,
            b.room_type == stay.room_type,
            b.night.in_(nights),
        )
        if lock:
            query = query.with_for_update()
        rows = (await conn.execute(query)).all()
        if len(rows) != len(nights):
            raise Refusal(422, "outside_block", "the block does not cover every night of this stay")
        return rows

    async def _rates(self, conn: AsyncConnection, convention_id: str, stay: Stay) -> list[int]:
        return [row.rate_cents for row in await self._blocks(conn, convention_id, stay, lock=False)]

    async def _take_rooms(
        self, conn: AsyncConnection, convention_id: str, stay: Stay
    ) -> list[int] | None:
        """Book one room on every night of `stay` and answer the nightly rates, or answer
        None (and book nothing) when any night has no room left."""
        rows = await self._blocks(conn, convention_id, stay, lock=True)
        if any(row.booked >= row.size for row in rows):
            return None
        await self._shift_booked(conn, convention_id, stay, +1)
        return [row.rate_cents for row in rows]

    async def _release_rooms(self, conn: AsyncConnection, convention_id: str, stay: Stay) -> None:
        await self._shift_booked(conn, convention_id, stay, -1)

    @staticmethod
    async def _shift_booked(conn: AsyncConnection, convention_id: str, stay: Stay, by: int) -> None:
        b = store.blocks.c
        await conn.execute(
            update(store.blocks)
            .where(
                b.convention_id == convention_id,
                b.hotel == stay.hotel,
                b.room_type == stay.room_type,
                b.night.in_(stay.nights()),
            )
            .values(booked=b.booked + by)
        )
