"""The lodging projector: lodging events (and the lodging commands the gateway just published,
shown at once) into the lodging read models in `butterfly_read`.

A room request is folded in memory, event by event, by the pure `evolve_request`; the rooms a
request takes from the blocks follow from the row alone (`rooms_taken`), so `booked` moves by
`booked_delta(before, after)` whatever the event was: one rule for holds, confirmations,
cancellations, changes of stay and reconciliation's corrections alike. Everything else an
event does is a statement queued in event order (`Writes`), consecutive statements of one
kind run as one executemany.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from aiokafka import TopicPartition
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from projections.lodging import tables as t
from schemas.envelope import HEADER_TYPE, Envelope, UndecodableMessage, header
from schemas.lodging import (
    LODGING_EVENTS,
    ROOMS_TAKEN,
    HotelBlockChanged,
    HotelDeclined,
    HotelInventorySynced,
    HotelSyncRequested,
    LodgingCommandRejected,
    LodgingReconciled,
    LotteryDrawn,
    LotteryEntered,
    LotteryOpened,
    ReconcileLodging,
    ReconciliationRequested,
    RequestRoom,
    RoomCancelled,
    RoomChanged,
    RoomConfirmed,
    RoomHeld,
    RoomReleased,
    RoomRequested,
    RoomRequestFailed,
    RoomRequestParked,
    RoomRequestRefused,
    RoomRequestRetried,
    RoomRequeued,
    RoomStatus,
    RoomWaitlisted,
    Stay,
    SyncHotels,
)
from schemas.registration import Event
from schemas.registry import decode_message
from schemas.topics import Topics

log = structlog.get_logger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"
REQUESTED = "requested"
DONE = "done"
FAILED = "failed"

NightKey = tuple[str, str, str, date]
"""(convention id, hotel, room type, night)."""


@dataclass(frozen=True)
class RequestRow:
    """A row of `lodging_requests`, as the fold sees it."""

    request_id: str
    convention_id: str
    registration_id: str
    status: str
    hotels: tuple[str, ...]
    room_type: str
    check_in: date
    check_out: date
    guests: tuple[str, ...]
    request_hash: str
    created_at: datetime
    updated_at: datetime
    declined: tuple[str, ...] = ()
    hotel: str | None = None
    ack: str | None = None
    total_cents: int | None = None
    reason: str | None = None
    detail: str | None = None
    waitlist_position: int | None = None
    parked_step: str | None = None
    parked_error: str | None = None
    cancelled_by: str | None = None
    released: bool = False
    lottery_draw: int | None = None
    accepted: bool = False

    @classmethod
    def from_db(cls, row: Any) -> RequestRow:
        values = {f.name: getattr(row, f.name) for f in fields(cls)}
        for name in ("hotels", "declined", "guests"):
            values[name] = tuple(json.loads(values[name]))
        values["released"] = bool(values["released"])
        values["accepted"] = bool(values["accepted"])
        return cls(**values)

    def to_db(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("hotels", "declined", "guests"):
            values[name] = json.dumps(list(values[name]))
        values["status"] = str(self.status)
        return values


def nights(check_in: date, check_out: date) -> list[date]:
    """The nights of a stay, as `Stay.nights()` counts them: check-in up to check-out."""
    return [check_in + timedelta(days=n) for n in range((check_out - check_in).days)]


def rooms_taken(row: RequestRow | None) -> list[NightKey]:
    """The block nights a request holds a room on: none unless it is held or confirmed."""
    if row is None or row.status not in ROOMS_TAKEN or row.hotel is None:
        return []
    return [
        (row.convention_id, row.hotel, row.room_type, night)
        for night in nights(row.check_in, row.check_out)
    ]


def booked_delta(before: RequestRow | None, after: RequestRow | None) -> dict[NightKey, int]:
    """How `booked` moves when a request goes from `before` to `after`: -1 on every night it
    held and +1 on every night it holds, the nights it keeps cancelling out."""
    delta: dict[NightKey, int] = defaultdict(int)
    for key in rooms_taken(before):
        delta[key] -= 1
    for key in rooms_taken(after):
        delta[key] += 1
    return {key: change for key, change in delta.items() if change}


def _stay(stay: Stay) -> dict[str, Any]:
    return {
        "room_type": stay.room_type,
        "check_in": stay.check_in,
        "check_out": stay.check_out,
        "guests": tuple(stay.guests),
    }


def requested_row(
    message: RequestRoom | RoomRequested, at: datetime, *, accepted: bool
) -> RequestRow:
    return RequestRow(
        request_id=str(message.request_id),
        convention_id=str(message.convention_id),
        registration_id=str(message.registration_id),
        status=RoomStatus.REQUESTED,
        hotels=tuple(message.hotels),
        request_hash=message.request_hash,
        created_at=at,
        updated_at=at,
        accepted=accepted,
        **_stay(message.stay),
    )


def evolve_request(row: RequestRow | None, event: Event, at: datetime) -> RequestRow | None:
    """The request row after `event` (pure). An event about a request the read model does not
    know leaves it unknown; only `RoomRequested` makes one."""
    if isinstance(event, RoomRequested):
        made = requested_row(event, row.created_at if row else at, accepted=True)
        return replace(made, updated_at=at, lottery_draw=event.lottery_draw)
    if row is None:
        return None
    changes = _request_changes(row, event)
    if changes is None:
        return row
    return replace(row, **changes, updated_at=at)


def _request_changes(row: RequestRow, event: Event) -> dict[str, Any] | None:
    match event:
        case HotelDeclined():
            declined = row.declined if event.hotel in row.declined else (*row.declined, event.hotel)
            return {"declined": declined}
        case RoomHeld():
            return _booked(RoomStatus.HELD, event.hotel, event.ack, event.stay, event.total_cents)
        case RoomConfirmed():
            return _booked(
                RoomStatus.CONFIRMED, event.hotel, event.ack, event.stay, event.total_cents
            )
        case RoomChanged():
            return _booked(row.status, event.hotel, event.ack, event.stay, event.total_cents)
        case RoomWaitlisted():
            return {
                "status": RoomStatus.WAITLISTED,
                "hotel": event.hotel,
                "ack": event.ack,
                "waitlist_position": event.position,
            }
        case RoomRequestFailed():
            detail = event.detail[:500]
            return {"status": RoomStatus.FAILED, "reason": event.reason.value, "detail": detail}
        case RoomCancelled():
            return {"status": RoomStatus.CANCELLED, "cancelled_by": event.by.value}
        case RoomRequeued():
            return {"status": RoomStatus.REQUESTED, "hotel": None, "ack": None}
        case RoomReleased():
            return {"released": True}
        case RoomRequestParked():
            return {"parked_step": event.step, "parked_error": event.error}
        case RoomRequestRetried():
            return {"parked_step": None, "parked_error": None}
        case RoomRequestRefused() if not row.accepted:
            return _refused(event.reason.value)
        case LodgingCommandRejected() if (
            event.command == RequestRoom.message_type and not row.accepted
        ):
            return _refused(event.reason.value)
        case _:
            return None


def _booked(status: str, hotel: str, ack: str, stay: Stay, total_cents: int) -> dict[str, Any]:
    return {
        "status": status,
        "hotel": hotel,
        "ack": ack,
        "total_cents": total_cents,
        "waitlist_position": None,
        **_stay(stay),
    }


def _refused(reason: str) -> dict[str, Any]:
    """A row only its command made, whose command was refused: it never became a request."""
    return {"status": RoomStatus.FAILED, "reason": reason}


def _naive_utc(moment: datetime) -> datetime:
    """Read models store UTC without a zone."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None)


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
    """What one batch does: request rows before and after, booked moves, other writes."""

    before: dict[str, RequestRow]
    after: dict[str, RequestRow] = field(default_factory=dict)
    booked: dict[NightKey, int] = field(default_factory=lambda: defaultdict(int))
    writes: Writes = field(default_factory=Writes)
    applied: list[dict[str, Any]] = field(default_factory=list)

    def current(self, request_id: str) -> RequestRow | None:
        return self.after.get(request_id, self.before.get(request_id))

    def fold_request(self, request_id: str, event: Event, at: datetime) -> None:
        row = self.current(request_id)
        new = evolve_request(row, event, at)
        if new is None or new == row:
            return
        for key, change in booked_delta(row, new).items():
            self.booked[key] += change
        self.after[request_id] = new


class LodgingProjector:
    """Projects `lodging.events` and, from `lodging.commands`, the requests, syncs and
    reconciliations the gateway just asked for (shown as requested until decided)."""

    def __init__(self, topics: Topics) -> None:
        self._topics = topics

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        dead_letters: list[DeadLetter] = []
        if tp.topic == self._topics.lodging_commands:
            await project_commands(conn, records)
            return HandledBatch()
        events: list[tuple[Envelope, Event]] = []
        for record in records:
            try:
                envelope, message = decode_message(
                    record.value, header(record.headers, HEADER_TYPE)
                )
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            # Registration messages (any other valid message) on a lodging topic are not ours.
            if isinstance(message, LODGING_EVENTS):
                events.append((envelope, message))
        events = await _unapplied(conn, events)
        projection = Projection(before=await _load_requests(conn, events))
        for envelope, event in events:
            project_event(projection, envelope, event)
        await write_projection(conn, projection)
        log.debug(
            "lodging_batch_projected",
            partition=f"{tp.topic}[{tp.partition}]",
            records=len(records),
            events=len(events),
            dead_letters=len(dead_letters),
        )
        return HandledBatch(dead_letters=dead_letters)


async def project_commands(conn: AsyncConnection, records: Sequence[Record]) -> None:
    """Show what the gateway just asked for as requested, unless already known. A command
    that cannot be decoded is skipped (the decider dead-letters it); one the decider already
    refused (its events can come first: they are on another topic) ends failed at once."""
    writes = Writes()
    pending: dict[str, RequestRoom | SyncHotels | ReconcileLodging] = {}
    for record in records:
        try:
            envelope, message = decode_message(record.value, header(record.headers, HEADER_TYPE))
        except UndecodableMessage:
            continue
        at = _naive_utc(envelope.occurred_at)
        match message:
            case RequestRoom():
                writes.add(_INSERT_REQUEST, requested_row(message, at, accepted=False).to_db())
            case SyncHotels():
                writes.add(_INSERT_SYNC, _sync_row(message.convention_id, message.sync_id, at))
            case ReconcileLodging():
                row = _reconciliation_row(message.convention_id, message.reconciliation_id, at)
                writes.add(_INSERT_RECONCILIATION, row)
            case _:
                continue
        pending[str(envelope.message_id)] = message
    if not pending:
        return
    await writes.run(conn)
    refused = Writes()
    for outcome in await conn.execute(_REJECTED_OUTCOMES, {"ids": list(pending)}):
        _refuse(refused, pending[outcome.command_id], outcome.reason, outcome.recorded_at)
    await refused.run(conn)


def _refuse(
    w: Writes, message: RequestRoom | SyncHotels | ReconcileLodging, reason: str, at: datetime
) -> None:
    match message:
        case RequestRoom():
            w.add(_REFUSE_REQUEST, {"id": str(message.request_id), "reason": reason, "at": at})
        case SyncHotels():
            w.add(_FAIL_SYNC, {"id": str(message.sync_id), "error": reason, "at": at})
        case ReconcileLodging():
            w.add(
                _FAIL_RECONCILIATION,
                {"id": str(message.reconciliation_id), "error": reason, "at": at},
            )


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


async def _load_requests(
    conn: AsyncConnection, events: Iterable[tuple[Envelope, Event]]
) -> dict[str, RequestRow]:
    ids = {str(rid) for _, event in events if (rid := getattr(event, "request_id", None))}
    if not ids:
        return {}
    rows = await conn.execute(_SELECT_REQUESTS, {"ids": sorted(ids)})
    return {row.request_id: RequestRow.from_db(row) for row in rows}


def project_event(p: Projection, envelope: Envelope, event: Event) -> None:
    """Add what one event does to the batch's projection."""
    at = _naive_utc(envelope.occurred_at)
    cid = str(event.convention_id)
    p.applied.append({"event_id": str(envelope.message_id), "applied_at": at})
    request_id = getattr(event, "request_id", None)
    if request_id is not None:
        p.fold_request(str(request_id), event, at)
    _record_outcome(p, envelope, event, at)
    w = p.writes
    match event:
        case HotelSyncRequested():
            row = _sync_row(event.convention_id, event.sync_id, at)
            w.add(_UPSERT_SYNC_REQUESTED, row | _nights_of(event))
        case HotelInventorySynced():
            w.add(_FINISH_SYNC, _sync_finished(event, at))
            if event.error is None:
                w.add(_UPSERT_NIGHTS, *_inventory_rows(event, at))
        case HotelBlockChanged():
            w.add(_UPSERT_BLOCK, _block_row(event, at))
        case LotteryOpened():
            w.add(_OPEN_LOTTERY, {"convention_id": cid, "status": "open", "opened_at": at})
        case LotteryEntered():
            w.add(_UPSERT_ENTRY, _entry_row(event, at))
        case LotteryDrawn():
            w.add(_DRAW_LOTTERY, _drawn_row(event, at))
            w.add(_SET_RESULT, *_draw_results(event))
        case ReconciliationRequested():
            w.add(
                _INSERT_RECONCILIATION,
                _reconciliation_row(event.convention_id, event.reconciliation_id, at),
            )
        case LodgingReconciled():
            w.add(_FINISH_RECONCILIATION, _reconciled_row(event, at))
        case LodgingCommandRejected() if envelope.causation_id is not None:
            _rejected_work(w, event, str(envelope.causation_id), at)
        case _:
            pass


def _record_outcome(p: Projection, envelope: Envelope, event: Event, at: datetime) -> None:
    if envelope.causation_id is None:
        return
    row = {
        "command_id": str(envelope.causation_id),
        "outcome": ACCEPTED,
        "reason": None,
        "subject_id": _subject(event),
        "recorded_at": at,
    }
    match event:
        case LodgingCommandRejected():
            p.writes.add(
                _UPSERT_OUTCOME,
                row
                | {
                    "command": event.command[:40],
                    "outcome": REJECTED,
                    "reason": event.reason.value,
                },
            )
        case RoomRequestRefused():
            p.writes.add(
                _UPSERT_OUTCOME,
                row
                | {
                    "command": RequestRoom.message_type,
                    "outcome": REJECTED,
                    "reason": event.reason.value,
                },
            )
        case _:
            p.writes.add(_INSERT_OUTCOME, row | {"command": envelope.type[:40]})


def _subject(event: Event) -> str | None:
    for name in ("request_id", "registration_id", "sync_id", "reconciliation_id"):
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    return str(event.convention_id)


def _rejected_work(w: Writes, event: LodgingCommandRejected, command_id: str, at: datetime) -> None:
    """A refused sync or reconciliation ends there (the gateway made its id the command's)."""
    failed = {"id": command_id, "error": event.reason.value, "at": at}
    if event.command == SyncHotels.message_type:
        w.add(_FAIL_SYNC, failed)
    elif event.command == ReconcileLodging.message_type:
        w.add(_FAIL_RECONCILIATION, failed)


def _sync_row(convention_id: uuid.UUID, sync_id: uuid.UUID, at: datetime) -> dict[str, Any]:
    return {
        "sync_id": str(sync_id),
        "convention_id": str(convention_id),
        "status": REQUESTED,
        "first_night": None,
        "last_night": None,
        "requested_at": at,
    }


def _nights_of(event: HotelSyncRequested) -> dict[str, Any]:
    return {"first_night": event.first_night, "last_night": event.last_night}


def _sync_finished(event: HotelInventorySynced, at: datetime) -> dict[str, Any]:
    return _sync_row(event.convention_id, event.sync_id, at) | {
        "status": FAILED if event.error else DONE,
        "error": event.error[:500] if event.error else None,
        "finished_at": at,
    }


def _inventory_rows(event: HotelInventorySynced, at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "convention_id": str(event.convention_id),
            "hotel": hotel.code,
            "room_type": room_type.code,
            "night": night.night,
            "hotel_name": hotel.name,
            "description": room_type.description,
            "size": night.size,
            "rate_cents": night.rate_cents,
            "release_date": night.release_date,
            "listed_at": at,
        }
        for hotel in event.hotels
        for room_type in hotel.room_types
        for night in room_type.nights
    ]


def _block_row(event: HotelBlockChanged, at: datetime) -> dict[str, Any]:
    return {
        "convention_id": str(event.convention_id),
        "hotel": event.hotel,
        "room_type": event.room_type,
        "night": event.night,
        "size": event.size,
        "rate_cents": event.rate_cents,
        "listed_at": at,
    }


def _entry_row(event: LotteryEntered, at: datetime) -> dict[str, Any]:
    return {
        "convention_id": str(event.convention_id),
        "registration_id": str(event.registration_id),
        "hotels": json.dumps(list(event.hotels)),
        "room_type": event.stay.room_type,
        "check_in": event.stay.check_in,
        "check_out": event.stay.check_out,
        "guests": json.dumps(list(event.stay.guests)),
        "entered_at": at,
    }


def _drawn_row(event: LotteryDrawn, at: datetime) -> dict[str, Any]:
    return {
        "convention_id": str(event.convention_id),
        "status": "drawn",
        "seed": event.seed,
        "entries": event.entries,
        "drawn_at": at,
    }


def _draw_results(event: LotteryDrawn) -> list[dict[str, Any]]:
    cid = str(event.convention_id)
    awarded = [
        {
            "c_id": cid,
            "r_id": str(a.registration_id),
            "result": "awarded",
            "request_id": str(a.request_id),
            "hotel": a.hotel,
            "rank": a.rank,
            "draw": a.draw,
            "position": None,
        }
        for a in event.awards
    ]
    waitlisted = [
        {
            "c_id": cid,
            "r_id": str(w.registration_id),
            "result": "waitlisted",
            "request_id": str(w.request_id),
            "hotel": None,
            "rank": None,
            "draw": w.draw,
            "position": w.position,
        }
        for w in event.waitlisted
    ]
    return awarded + waitlisted


def _reconciliation_row(
    convention_id: uuid.UUID, reconciliation_id: uuid.UUID, at: datetime
) -> dict[str, Any]:
    return {
        "reconciliation_id": str(reconciliation_id),
        "convention_id": str(convention_id),
        "status": REQUESTED,
        "drifts": "[]",
        "requested_at": at,
    }


def _reconciled_row(event: LodgingReconciled, at: datetime) -> dict[str, Any]:
    drifts = [drift.model_dump(mode="json") for drift in event.drifts]
    return _reconciliation_row(event.convention_id, event.reconciliation_id, at) | {
        "status": FAILED if event.error else DONE,
        "drifts": json.dumps(drifts),
        "error": event.error[:500] if event.error else None,
        "reconciled_at": _naive_utc(event.reconciled_at) if event.reconciled_at else at,
    }


async def write_projection(conn: AsyncConnection, p: Projection) -> None:
    await p.writes.run(conn)
    if p.after:
        await conn.execute(_UPSERT_REQUEST, [row.to_db() for row in p.after.values()])
    booked = [
        {"convention_id": c, "hotel": h, "room_type": r, "night": n, "booked": change}
        for (c, h, r, n), change in sorted(p.booked.items())
        if change
    ]
    if booked:
        await conn.execute(_ADD_BOOKED, booked)
    if p.applied:
        await conn.execute(_INSERT_APPLIED, p.applied)


# Statements built once, run as executemany.
_APPLIED = select(t.applied_events.c.event_id).where(
    t.applied_events.c.event_id.in_(bindparam("ids", expanding=True))
)
_INSERT_APPLIED = insert(t.applied_events)
_SELECT_REQUESTS = select(t.requests).where(
    t.requests.c.request_id.in_(bindparam("ids", expanding=True))
)
_INSERT_REQUEST = insert(t.requests).prefix_with("IGNORE")
_request = insert(t.requests)
_UPSERT_REQUEST = _request.on_duplicate_key_update(
    {
        column.name: _request.inserted[column.name]
        for column in t.requests.columns
        if column.name not in ("request_id", "created_at")
    }
)
_nights = insert(t.hotel_nights)
_UPSERT_NIGHTS = _nights.on_duplicate_key_update(
    hotel_name=_nights.inserted.hotel_name,
    description=_nights.inserted.description,
    size=_nights.inserted.size,
    rate_cents=_nights.inserted.rate_cents,
    release_date=_nights.inserted.release_date,
    listed_at=_nights.inserted.listed_at,
)
_UPSERT_BLOCK = _nights.on_duplicate_key_update(
    size=_nights.inserted.size,
    rate_cents=_nights.inserted.rate_cents,
    listed_at=_nights.inserted.listed_at,
)
_ADD_BOOKED = _nights.on_duplicate_key_update(
    booked=t.hotel_nights.c.booked + _nights.inserted.booked
)
_INSERT_SYNC = insert(t.syncs).prefix_with("IGNORE")
_sync = insert(t.syncs)
_UPSERT_SYNC_REQUESTED = _sync.on_duplicate_key_update(
    first_night=_sync.inserted.first_night, last_night=_sync.inserted.last_night
)
_FINISH_SYNC = _sync.on_duplicate_key_update(
    status=_sync.inserted.status,
    error=_sync.inserted.error,
    finished_at=_sync.inserted.finished_at,
)
_FAIL_SYNC = (
    update(t.syncs)
    .where(t.syncs.c.sync_id == bindparam("id"), t.syncs.c.status == REQUESTED)
    .values(status=FAILED, error=bindparam("error"), finished_at=bindparam("at"))
)
_INSERT_RECONCILIATION = insert(t.reconciliations).prefix_with("IGNORE")
_reconciliation = insert(t.reconciliations)
_FINISH_RECONCILIATION = _reconciliation.on_duplicate_key_update(
    status=_reconciliation.inserted.status,
    drifts=_reconciliation.inserted.drifts,
    error=_reconciliation.inserted.error,
    reconciled_at=_reconciliation.inserted.reconciled_at,
)
_FAIL_RECONCILIATION = (
    update(t.reconciliations)
    .where(
        t.reconciliations.c.reconciliation_id == bindparam("id"),
        t.reconciliations.c.status == REQUESTED,
    )
    .values(status=FAILED, error=bindparam("error"), reconciled_at=bindparam("at"))
)
_lottery = insert(t.lottery)
_OPEN_LOTTERY = _lottery.on_duplicate_key_update(
    status=_lottery.inserted.status, opened_at=_lottery.inserted.opened_at
)
_DRAW_LOTTERY = _lottery.on_duplicate_key_update(
    status=_lottery.inserted.status,
    seed=_lottery.inserted.seed,
    entries=_lottery.inserted.entries,
    drawn_at=_lottery.inserted.drawn_at,
)
_entry = insert(t.lottery_entries)
_UPSERT_ENTRY = _entry.on_duplicate_key_update(
    {
        name: _entry.inserted[name]
        for name in ("hotels", "room_type", "check_in", "check_out", "guests", "entered_at")
    }
)
_e = t.lottery_entries.c
_SET_RESULT = (
    update(t.lottery_entries)
    .where(_e.convention_id == bindparam("c_id"), _e.registration_id == bindparam("r_id"))
    .values(
        result=bindparam("result"),
        request_id=bindparam("request_id"),
        hotel=bindparam("hotel"),
        rank=bindparam("rank"),
        draw=bindparam("draw"),
        waitlist_position=bindparam("position"),
    )
)
_o = t.command_outcomes.c
_REJECTED_OUTCOMES = select(_o.command_id, _o.reason, _o.recorded_at).where(
    _o.command_id.in_(bindparam("ids", expanding=True)), _o.outcome == REJECTED
)
_r = t.requests.c
_REFUSE_REQUEST = (
    update(t.requests)
    .where(_r.request_id == bindparam("id"), _r.accepted.is_(False))
    .values(status=RoomStatus.FAILED.value, reason=bindparam("reason"), updated_at=bindparam("at"))
)
_INSERT_OUTCOME = insert(t.command_outcomes).prefix_with("IGNORE")
_outcome = insert(t.command_outcomes)
_UPSERT_OUTCOME = _outcome.on_duplicate_key_update(
    command=_outcome.inserted.command,
    outcome=_outcome.inserted.outcome,
    reason=_outcome.inserted.reason,
    subject_id=_outcome.inserted.subject_id,
    recorded_at=_outcome.inserted.recorded_at,
)
