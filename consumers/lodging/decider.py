"""The lodging decider: pure rules, no I/O, no clock (the command's time is passed in).

`decide(state, command, at)` returns the lodging events a command leads to; `observe(state,
event, at)` does the same for the registration events lodging reads (a created convention;
a cancelled registration, which cancels its room); `evolve(state, event, at, partition)`
applies a lodging event to the state. The runtime decides a command, evolves every event it
led to, then decides the next one.

A room request moves through `requested -> held -> confirmed` as the process manager records
what the partner answered; `next_step` tells it which partner call is due. The partner's own
events (translated by the bridge) arrive with the partner's per-convention `sequence`: one
not newer than the last applied to a request or block changes nothing, so repeated and
reordered partner events are applied once, in order.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from consumers.lodging.state import (
    Block,
    BlockKey,
    ConventionLodging,
    LodgingState,
    LotteryEntry,
    RoomRequest,
)
from schemas.lodging import (
    ApplyPartnerBlock,
    ApplyPartnerReservation,
    BlockNight,
    CancelledBy,
    CancelRoomRequest,
    Correction,
    EnterLottery,
    FailureReason,
    HotelBlockChanged,
    HotelDeclined,
    HotelInventory,
    HotelInventorySynced,
    HotelSyncRequested,
    LodgingCommandRejected,
    LodgingReconciled,
    LotteryAward,
    LotteryDrawn,
    LotteryEntered,
    LotteryOpened,
    LotteryWaitlisted,
    OpenLottery,
    ParkRoomRequest,
    ReconcileLodging,
    ReconciliationRequested,
    RecordConfirmation,
    RecordHold,
    RecordHotelInventory,
    RecordReconciliation,
    RecordRelease,
    RequestRoom,
    RetryRoomRequest,
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
    RunLottery,
    Stay,
    SyncHotels,
    lottery_request_id,
)
from schemas.registration import Command, ConventionCreated, Event, RegistrationCancelled

LOTTERY_REQUEST_HASH = "lottery"

HOLD, CONFIRM, RELEASE = "hold", "confirm", "release"


# --- rules ----------------------------------------------------------------------------------


def stay_fits(
    blocks: dict[BlockKey, Block], hotels: Sequence[str], stay: Stay
) -> FailureReason | None:
    """Every preferred hotel must be one the partner offers for this convention, with the
    room type, for every night of the stay."""
    if not blocks:
        return FailureReason.HOTELS_NOT_SYNCED
    known_hotels = {hotel for hotel, _, _ in blocks}
    for hotel in hotels:
        if hotel not in known_hotels:
            return FailureReason.UNKNOWN_HOTEL
        if not any(h == hotel and rt == stay.room_type for h, rt, _ in blocks):
            return FailureReason.UNKNOWN_ROOM_TYPE
        if any((hotel, stay.room_type, night) not in blocks for night in stay.nights()):
            return FailureReason.NIGHTS_OUTSIDE_BLOCK
    return None


def may_request(state: LodgingState, registration_id: uuid.UUID) -> FailureReason | None:
    """A room for a registration that is not cancelled and has no other room request going
    on. That the registration was confirmed, and belongs to the convention, the gateway
    checked against the read model before sending the command: lodging keeps only the
    cancellations, so it need not take in every registration of a rush."""
    if state.registration_status(registration_id) == "cancelled":
        return FailureReason.REGISTRATION_CANCELLED
    if state.active_request_of(registration_id) is not None:
        return FailureReason.ALREADY_REQUESTED
    return None


def draw_order(seed: int, registration_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The lottery's order: by a hash of the seed and the registration id, so the same
    entries and seed always give the same order, whatever order they were entered in."""
    return sorted(
        registration_ids,
        key=lambda rid: (hashlib.sha256(f"{seed}:{rid}".encode()).digest(), str(rid)),
    )


# --- deciding -------------------------------------------------------------------------------


def decide(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"{type(command).__name__} is not a lodging command")
    return handler(state, command, at)


def _rejected(command: Command, reason: FailureReason, **ids: uuid.UUID | None) -> list[Event]:
    return [
        LodgingCommandRejected(
            convention_id=command.convention_id,
            command=command.message_type,
            reason=reason,
            request_id=ids.get("request_id"),
            registration_id=ids.get("registration_id"),
        )
    ]


def _request_room(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RequestRoom)
    earlier = state.requests.get(command.request_id)
    if earlier is not None:
        if earlier.request_hash == command.request_hash:
            return []
        return [
            RoomRequestRefused(
                convention_id=command.convention_id,
                request_id=command.request_id,
                request_hash=command.request_hash,
                reason=FailureReason.IDEMPOTENCY_KEY_REUSED,
            )
        ]
    requested = RoomRequested(
        convention_id=command.convention_id,
        request_id=command.request_id,
        registration_id=command.registration_id,
        hotels=command.hotels,
        stay=command.stay,
        request_hash=command.request_hash,
    )
    reason = _why_not(
        state, command.convention_id, command.registration_id, command.hotels, command.stay
    )
    if reason is None:
        return [requested]
    return [
        requested,
        RoomRequestFailed(
            convention_id=command.convention_id, request_id=command.request_id, reason=reason
        ),
    ]


def _why_not(
    state: LodgingState,
    convention_id: uuid.UUID,
    registration_id: uuid.UUID,
    hotels: Sequence[str],
    stay: Stay,
) -> FailureReason | None:
    if convention_id not in state.conventions:
        return FailureReason.UNKNOWN_CONVENTION
    known = state.registrations.get(registration_id)
    if known is not None and known[0] != convention_id:
        return FailureReason.UNKNOWN_REGISTRATION
    return may_request(state, registration_id) or stay_fits(
        state.blocks_of(convention_id), hotels, stay
    )


def _cancel(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, CancelRoomRequest)
    request = state.requests.get(command.request_id)
    if request is None or request.convention_id != command.convention_id:
        return _rejected(command, FailureReason.UNKNOWN_REQUEST, request_id=command.request_id)
    if not request.active:
        return _rejected(command, FailureReason.NOT_CANCELLABLE, request_id=command.request_id)
    return [_cancelled(request, CancelledBy.ATTENDEE)]


def _cancelled(request: RoomRequest, by: CancelledBy) -> RoomCancelled:
    """Cancelling tells the partner too whenever it may hold something for the request: an
    acknowledged reservation, or a hold that may have been sent."""
    release = request.ack is not None or request.status is RoomStatus.REQUESTED
    return RoomCancelled(
        convention_id=request.convention_id, request_id=request.request_id, by=by, release=release
    )


def _retry(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RetryRoomRequest)
    request = state.requests.get(command.request_id)
    if request is None or request.convention_id != command.convention_id:
        return _rejected(command, FailureReason.UNKNOWN_REQUEST, request_id=command.request_id)
    if request.parked_step is None:
        return _rejected(command, FailureReason.NOT_PARKED, request_id=command.request_id)
    return [RoomRequestRetried(convention_id=command.convention_id, request_id=request.request_id)]


def _record_hold(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RecordHold)
    request = state.requests.get(command.request_id)
    if (
        request is None
        or request.status is not RoomStatus.REQUESTED
        or request.next_step != HOLD
        or request.attempt != command.attempt
        or request.hotels[request.attempt] != command.hotel
    ):
        return []
    cid, rid = request.convention_id, request.request_id
    if command.outcome == "held" and command.ack is not None:
        return [
            RoomHeld(
                convention_id=cid,
                request_id=rid,
                hotel=command.hotel,
                ack=command.ack,
                stay=request.stay,
                total_cents=command.total_cents or 0,
            )
        ]
    if command.outcome == "waitlisted":
        return [
            RoomWaitlisted(convention_id=cid, request_id=rid, hotel=command.hotel, ack=command.ack)
        ]
    reason = command.reason or "refused"
    declined: list[Event] = [
        HotelDeclined(convention_id=cid, request_id=rid, hotel=command.hotel, reason=reason)
    ]
    if request.attempt + 1 < len(request.hotels):
        return declined
    failure = (
        FailureReason.NO_AVAILABILITY
        if reason.startswith("no_availability")
        else FailureReason.REFUSED_BY_PARTNER
    )
    return [
        *declined,
        RoomRequestFailed(convention_id=cid, request_id=rid, reason=failure, detail=reason[:500]),
    ]


def _record_confirmation(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RecordConfirmation)
    request = state.requests.get(command.request_id)
    if (
        request is None
        or request.status is not RoomStatus.HELD
        or request.ack != command.ack
        or request.hotel is None
    ):
        return []
    return [
        RoomConfirmed(
            convention_id=request.convention_id,
            request_id=request.request_id,
            hotel=request.hotel,
            ack=command.ack,
            stay=request.stay,
            total_cents=request.total_cents or 0,
        )
    ]


def _record_release(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RecordRelease)
    request = state.requests.get(command.request_id)
    if request is None or not request.release_pending:
        return []
    return [
        RoomReleased(
            convention_id=request.convention_id, request_id=request.request_id, acks=command.acks
        )
    ]


def _park(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, ParkRoomRequest)
    request = state.requests.get(command.request_id)
    if request is None or request.next_step != command.step:
        return []
    return [
        RoomRequestParked(
            convention_id=request.convention_id,
            request_id=request.request_id,
            step=command.step,
            error=command.error,
        )
    ]


def _sync(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, SyncHotels)
    convention = state.conventions.get(command.convention_id)
    if convention is None:
        return _rejected(command, FailureReason.UNKNOWN_CONVENTION)
    return [
        HotelSyncRequested(
            convention_id=command.convention_id,
            sync_id=command.sync_id,
            first_night=convention.starts_on - timedelta(days=1),
            last_night=convention.ends_on,
        )
    ]


def _record_inventory(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RecordHotelInventory)
    convention = state.conventions.get(command.convention_id)
    if convention is None or convention.sync_id != command.sync_id:
        return []
    return [
        HotelInventorySynced(
            convention_id=command.convention_id,
            sync_id=command.sync_id,
            hotels=() if command.error else command.hotels,
            error=command.error,
        )
    ]


def _open_lottery(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, OpenLottery)
    convention = state.conventions.get(command.convention_id)
    if convention is None:
        return _rejected(command, FailureReason.UNKNOWN_CONVENTION)
    if convention.lottery == "drawn":
        return _rejected(command, FailureReason.LOTTERY_ALREADY_RUN)
    if convention.lottery == "open":
        return []
    return [LotteryOpened(convention_id=command.convention_id)]


def _enter_lottery(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, EnterLottery)
    convention = state.conventions.get(command.convention_id)
    rid = command.registration_id
    if convention is None:
        return _rejected(command, FailureReason.UNKNOWN_CONVENTION, registration_id=rid)
    if convention.lottery != "open":
        return _rejected(command, FailureReason.LOTTERY_NOT_OPEN, registration_id=rid)
    known = state.registrations.get(rid)
    if known is not None and known[0] != command.convention_id:
        return _rejected(command, FailureReason.UNKNOWN_REGISTRATION, registration_id=rid)
    reason = may_request(state, rid) or stay_fits(
        state.blocks_of(command.convention_id), command.hotels, command.stay
    )
    if reason is not None:
        return _rejected(command, reason, registration_id=rid)
    return [
        LotteryEntered(
            convention_id=command.convention_id,
            registration_id=rid,
            hotels=command.hotels,
            stay=command.stay,
        )
    ]


def _run_lottery(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    """Draw the entrants in the seed's order; each gets the first of their preferred hotels
    with a room left for every night, or a place on the waitlist in draw order. An entrant
    whose registration was cancelled, or who has a room request already, is left out:
    nobody gets two rooms."""
    assert isinstance(command, RunLottery)
    cid = command.convention_id
    convention = state.conventions.get(cid)
    if convention is None:
        return _rejected(command, FailureReason.UNKNOWN_CONVENTION)
    if convention.lottery != "open":
        reason = (
            FailureReason.LOTTERY_ALREADY_RUN
            if convention.lottery == "drawn"
            else FailureReason.LOTTERY_NOT_OPEN
        )
        return _rejected(command, reason)
    entries = state.entries_of(cid)
    left = {key: block.left for key, block in state.blocks_of(cid).items()}
    awards: list[LotteryAward] = []
    waitlisted: list[LotteryWaitlisted] = []
    follow_ups: list[Event] = []
    for draw, registration_id in enumerate(draw_order(command.seed, list(entries)), start=1):
        entry = entries[registration_id]
        if may_request(state, registration_id) is not None:
            continue
        request_id = lottery_request_id(cid, registration_id)
        awarded = _first_fitting(left, entry)
        if awarded is not None:
            rank, hotel = awarded
            for night in entry.stay.nights():
                left[(hotel, entry.stay.room_type, night)] -= 1
            awards.append(
                LotteryAward(
                    registration_id=registration_id,
                    request_id=request_id,
                    hotel=hotel,
                    rank=rank,
                    draw=draw,
                )
            )
            follow_ups.append(_lottery_request(cid, request_id, entry, (hotel,), draw))
        else:
            position = len(waitlisted) + 1
            waitlisted.append(
                LotteryWaitlisted(
                    registration_id=registration_id,
                    request_id=request_id,
                    position=position,
                    draw=draw,
                )
            )
            follow_ups.append(_lottery_request(cid, request_id, entry, entry.hotels, draw))
            follow_ups.append(
                RoomWaitlisted(
                    convention_id=cid,
                    request_id=request_id,
                    hotel=None,
                    ack=None,
                    position=position,
                )
            )
    drawn = LotteryDrawn(
        convention_id=cid,
        seed=command.seed,
        entries=len(entries),
        awards=tuple(awards),
        waitlisted=tuple(waitlisted),
    )
    return [drawn, *follow_ups]


def _first_fitting(left: dict[BlockKey, int], entry: LotteryEntry) -> tuple[int, str] | None:
    for rank, hotel in enumerate(entry.hotels, start=1):
        keys = [(hotel, entry.stay.room_type, night) for night in entry.stay.nights()]
        if all(left.get(key, 0) > 0 for key in keys):
            return rank, hotel
    return None


def _lottery_request(
    convention_id: uuid.UUID,
    request_id: uuid.UUID,
    entry: LotteryEntry,
    hotels: tuple[str, ...],
    draw: int,
) -> RoomRequested:
    return RoomRequested(
        convention_id=convention_id,
        request_id=request_id,
        registration_id=entry.registration_id,
        hotels=hotels,
        stay=entry.stay,
        request_hash=LOTTERY_REQUEST_HASH,
        lottery_draw=draw,
    )


def _reconcile(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, ReconcileLodging)
    if command.convention_id not in state.conventions:
        return _rejected(command, FailureReason.UNKNOWN_CONVENTION)
    return [
        ReconciliationRequested(
            convention_id=command.convention_id, reconciliation_id=command.reconciliation_id
        )
    ]


def _record_reconciliation(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, RecordReconciliation)
    if command.convention_id not in state.conventions:
        return []
    events: list[Event] = [
        LodgingReconciled(
            convention_id=command.convention_id,
            reconciliation_id=command.reconciliation_id,
            drifts=command.drifts,
            error=command.error,
            reconciled_at=at,
        )
    ]
    for correction in command.corrections:
        request = state.requests.get(correction.request_id)
        if request is not None and request.convention_id == command.convention_id:
            events.extend(_corrected(request, correction))
    return events


def _corrected(request: RoomRequest, correction: Correction) -> list[Event]:
    """Our side brought to the partner's truth for one request."""
    cid, rid = request.convention_id, request.request_id
    hotel = correction.hotel or request.hotel
    ack = correction.ack or request.ack
    stay = correction.stay or request.stay
    total = correction.total_cents if correction.total_cents is not None else request.total_cents
    if correction.status is RoomStatus.CANCELLED:
        if not request.active:
            return []
        return [
            RoomCancelled(
                convention_id=cid, request_id=rid, by=CancelledBy.RECONCILIATION, release=False
            )
        ]
    if correction.status is RoomStatus.REQUESTED:
        if not request.active or request.status is RoomStatus.REQUESTED:
            return []
        return [RoomRequeued(convention_id=cid, request_id=rid, reason="missing_at_partner")]
    if correction.status is RoomStatus.CONFIRMED and hotel is not None and ack is not None:
        if request.status is RoomStatus.CONFIRMED and (hotel, stay) == (
            request.hotel,
            request.stay,
        ):
            return []
        if request.status is RoomStatus.CONFIRMED:
            return [_changed(request, hotel, ack, stay, total or 0, "reconciliation")]
        return [
            RoomConfirmed(
                convention_id=cid,
                request_id=rid,
                hotel=hotel,
                ack=ack,
                stay=stay,
                total_cents=total or 0,
                by="reconciliation",
            )
        ]
    if correction.status is RoomStatus.WAITLISTED:
        if request.status is RoomStatus.WAITLISTED:
            return []
        return [RoomWaitlisted(convention_id=cid, request_id=rid, hotel=hotel, ack=ack)]
    if (
        correction.status is RoomStatus.HELD
        and request.status is RoomStatus.WAITLISTED
        and hotel is not None
        and ack is not None
    ):
        return [
            RoomHeld(
                convention_id=cid,
                request_id=rid,
                hotel=hotel,
                ack=ack,
                stay=stay,
                total_cents=total or 0,
            )
        ]
    if (
        request.rooms_taken
        and hotel is not None
        and ack is not None
        and (hotel, stay)
        != (
            request.hotel,
            request.stay,
        )
    ):
        return [_changed(request, hotel, ack, stay, total or 0, "reconciliation")]
    return []


def _changed(
    request: RoomRequest, hotel: str, ack: str, stay: Stay, total: int, by: str
) -> RoomChanged:
    return RoomChanged(
        convention_id=request.convention_id,
        request_id=request.request_id,
        hotel=hotel,
        ack=ack,
        previous=request.stay,
        stay=stay,
        total_cents=total,
        by="hotel" if by == "hotel" else "reconciliation",
    )


def _partner_reservation(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    """What the partner did to a reservation of ours. Only the reservation the request
    currently holds counts (an earlier hotel's, already given up, does not), and only an
    event newer than the last one applied."""
    assert isinstance(command, ApplyPartnerReservation)
    request = _referenced(state, command)
    if request is None or request.ack != command.ack or command.sequence <= request.sequence:
        return []
    cid, rid = request.convention_id, request.request_id
    if command.change == "cancelled":
        if not request.active:
            return []
        by = CancelledBy.HOTEL if command.by == "hotel" else CancelledBy.ATTENDEE
        return [RoomCancelled(convention_id=cid, request_id=rid, by=by, release=False)]
    if command.change == "confirmed":
        if request.status not in (RoomStatus.HELD, RoomStatus.WAITLISTED):
            return []
        return [
            RoomConfirmed(
                convention_id=cid,
                request_id=rid,
                hotel=command.hotel,
                ack=command.ack,
                stay=command.stay,
                total_cents=command.total_cents,
                by="hotel" if command.by == "hotel" else "guest",
            )
        ]
    if command.change == "modified":
        if not request.active or (command.hotel, command.stay) == (request.hotel, request.stay):
            return []
        return [
            _changed(
                request, command.hotel, command.ack, command.stay, command.total_cents, "hotel"
            )
        ]
    return []


def _referenced(state: LodgingState, command: ApplyPartnerReservation) -> RoomRequest | None:
    try:
        request_id = uuid.UUID(command.reference)
    except ValueError:
        return None
    request = state.requests.get(request_id)
    if request is None or request.convention_id != command.convention_id:
        return None
    return request


def _partner_block(state: LodgingState, command: Command, at: datetime) -> list[Event]:
    assert isinstance(command, ApplyPartnerBlock)
    block = state.blocks_of(command.convention_id).get(
        (command.hotel, command.room_type, command.night)
    )
    if block is None or command.sequence <= block.sequence:
        return []
    return [
        HotelBlockChanged(
            convention_id=command.convention_id,
            hotel=command.hotel,
            room_type=command.room_type,
            night=command.night,
            size=block.size if command.size is None else command.size,
            rate_cents=block.rate_cents if command.rate_cents is None else command.rate_cents,
        )
    ]


_DECIDERS = {
    RequestRoom: _request_room,
    CancelRoomRequest: _cancel,
    RetryRoomRequest: _retry,
    RecordHold: _record_hold,
    RecordConfirmation: _record_confirmation,
    RecordRelease: _record_release,
    ParkRoomRequest: _park,
    SyncHotels: _sync,
    RecordHotelInventory: _record_inventory,
    OpenLottery: _open_lottery,
    EnterLottery: _enter_lottery,
    RunLottery: _run_lottery,
    ReconcileLodging: _reconcile,
    RecordReconciliation: _record_reconciliation,
    ApplyPartnerReservation: _partner_reservation,
    ApplyPartnerBlock: _partner_block,
}


def remember_sequence(state: LodgingState, command: Command) -> None:
    """After a partner command is decided: the request or block it was about has seen the
    partner's events up to its sequence, whether or not it changed anything."""
    if isinstance(command, ApplyPartnerReservation):
        request = _referenced(state, command)
        if (
            request is not None
            and request.ack == command.ack
            and command.sequence > request.sequence
        ):
            request.sequence = command.sequence
            state.changed_requests.add(request.request_id)
    elif isinstance(command, ApplyPartnerBlock):
        key = (command.hotel, command.room_type, command.night)
        block = state.blocks_of(command.convention_id).get(key)
        if block is not None and command.sequence > block.sequence:
            block.sequence = command.sequence
            state.changed_blocks.add((command.convention_id, key))


# --- registration events --------------------------------------------------------------------


OBSERVED = frozenset({ConventionCreated.message_type, RegistrationCancelled.message_type})
"""The registration events lodging reads; the others (every registration of a rush) are
passed over by their `type` header, undecoded."""


def observe(state: LodgingState, event: Event, at: datetime) -> list[Event]:
    """Take in what lodging needs of a registration event; returns the lodging events it
    leads to (a cancelled registration cancels its room request and its lottery entry)."""
    if isinstance(event, ConventionCreated):
        if event.convention_id not in state.conventions:
            state.conventions[event.convention_id] = ConventionLodging(
                event.convention_id, event.starts_on, event.ends_on
            )
            state.changed_conventions.add(event.convention_id)
        return []
    if isinstance(event, RegistrationCancelled):
        _note_registration(state, event.registration_id, event.convention_id, "cancelled")
        state.entries_of(event.convention_id).pop(event.registration_id, None)
        state.removed_entries.add((event.convention_id, event.registration_id))
        return [
            _cancelled(request, CancelledBy.REGISTRATION)
            for request in state.requests_of(event.registration_id)
            if request.active
        ]
    return []


def _note_registration(
    state: LodgingState, registration_id: uuid.UUID, convention_id: uuid.UUID, status: str
) -> None:
    state.registrations[registration_id] = (convention_id, status)
    state.changed_registrations.add(registration_id)


# --- evolving -------------------------------------------------------------------------------


def evolve(state: LodgingState, event: Event, at: datetime, partition: int) -> None:
    """Apply one lodging event to the state (and mark what changed)."""
    request_id = getattr(event, "request_id", None)
    request = state.requests.get(request_id) if isinstance(request_id, uuid.UUID) else None
    before = request.taken_nights() if request is not None else []
    if isinstance(event, RoomRequested):
        request = _new_request(state, event, at, partition)
        before = []
    elif request is not None:
        _evolve_request(request, event)
    if request is not None:
        request.updated_at = at
        state.changed_requests.add(request.request_id)
        _rebook(state, request.convention_id, before, request.taken_nights())
        return
    _evolve_convention(state, event, at)


def _new_request(
    state: LodgingState, event: RoomRequested, at: datetime, partition: int
) -> RoomRequest:
    request = RoomRequest(
        request_id=event.request_id,
        convention_id=event.convention_id,
        registration_id=event.registration_id,
        partition_no=partition,
        status=RoomStatus.REQUESTED,
        hotels=tuple(event.hotels),
        stay=event.stay,
        request_hash=event.request_hash,
        created_at=at,
        updated_at=at,
        lottery_draw=event.lottery_draw,
        next_step=HOLD,
    )
    state.requests[request.request_id] = request
    return request


def _evolve_request(request: RoomRequest, event: Event) -> None:
    if isinstance(event, HotelDeclined):
        request.attempt += 1
        request.ack = None
        request.next_step = HOLD if request.attempt < len(request.hotels) else None
    elif isinstance(event, RoomHeld):
        request.status, request.hotel, request.ack = RoomStatus.HELD, event.hotel, event.ack
        request.total_cents, request.next_step = event.total_cents, CONFIRM
    elif isinstance(event, RoomConfirmed):
        request.status, request.hotel, request.ack = RoomStatus.CONFIRMED, event.hotel, event.ack
        request.stay, request.total_cents, request.next_step = event.stay, event.total_cents, None
    elif isinstance(event, RoomWaitlisted):
        request.status, request.next_step = RoomStatus.WAITLISTED, None
        request.hotel = event.hotel or request.hotel
        request.ack = event.ack or request.ack
    elif isinstance(event, RoomChanged):
        request.hotel, request.ack, request.stay = event.hotel, event.ack, event.stay
        request.total_cents = event.total_cents
    elif isinstance(event, RoomRequeued):
        request.status, request.ack, request.hotel = RoomStatus.REQUESTED, None, None
        request.next_step, request.parked_step, request.parked_error = HOLD, None, None
        request.retries += 1
    elif isinstance(event, RoomRequestFailed):
        request.status, request.reason, request.detail = (
            RoomStatus.FAILED,
            event.reason,
            event.detail,
        )
        request.next_step = None
    elif isinstance(event, RoomCancelled):
        request.status, request.reason = RoomStatus.CANCELLED, f"cancelled_by_{event.by}"
        request.release_pending = event.release
        request.next_step = RELEASE if event.release else None
        request.parked_step = request.parked_error = None
    elif isinstance(event, RoomReleased):
        request.release_pending, request.next_step = False, None
    elif isinstance(event, RoomRequestParked):
        request.parked_step, request.parked_error = event.step, event.error
        request.next_step = None
    elif isinstance(event, RoomRequestRetried):
        request.next_step, request.parked_step, request.parked_error = (
            request.parked_step,
            None,
            None,
        )
        request.retries += 1


def _rebook(
    state: LodgingState, convention_id: uuid.UUID, before: list[BlockKey], after: list[BlockKey]
) -> None:
    """Our booked count of every block night the request left or entered."""
    if before == after:
        return
    blocks = state.blocks_of(convention_id)
    for keys, delta in ((before, -1), (after, 1)):
        for key in keys:
            block = blocks.get(key)
            if block is not None:
                block.booked = max(block.booked + delta, 0)
                state.changed_blocks.add((convention_id, key))


def _evolve_convention(state: LodgingState, event: Event, at: datetime) -> None:
    cid = event.convention_id
    convention = state.conventions.get(cid)
    if convention is None:
        return
    state.changed_conventions.add(cid)
    if isinstance(event, HotelSyncRequested):
        convention.sync_id = event.sync_id
    elif isinstance(event, HotelInventorySynced):
        convention.sync_id = None
        if event.error is None:
            convention.synced_at = at
            _take_inventory(state, cid, event.hotels)
    elif isinstance(event, HotelBlockChanged):
        block = state.blocks_of(cid).get((event.hotel, event.room_type, event.night))
        if block is not None:
            block.size, block.rate_cents = event.size, event.rate_cents
            state.changed_blocks.add((cid, block.key))
    elif isinstance(event, LotteryOpened):
        convention.lottery = "open"
    elif isinstance(event, LotteryEntered):
        state.entries_of(cid)[event.registration_id] = LotteryEntry(
            event.registration_id, tuple(event.hotels), event.stay, at
        )
        state.changed_entries.add((cid, event.registration_id))
        state.removed_entries.discard((cid, event.registration_id))
    elif isinstance(event, LotteryDrawn):
        convention.lottery, convention.lottery_seed = "drawn", event.seed
    elif isinstance(event, ReconciliationRequested):
        convention.reconciliation_id = event.reconciliation_id
    elif (
        isinstance(event, LodgingReconciled)
        and convention.reconciliation_id == event.reconciliation_id
    ):
        convention.reconciliation_id = None


def _take_inventory(
    state: LodgingState, convention_id: uuid.UUID, hotels: Sequence[HotelInventory]
) -> None:
    """The partner's blocks as synced: sizes, rates and names from the partner, our own
    booked counts kept."""
    blocks = state.blocks_of(convention_id)
    for hotel in hotels:
        for room_type in hotel.room_types:
            for night in room_type.nights:
                key = (hotel.code, room_type.code, night.night)
                block = blocks.get(key)
                if block is None:
                    blocks[key] = _block(hotel, room_type.code, room_type.description, night)
                else:
                    block.hotel_name, block.description = hotel.name, room_type.description
                    block.size, block.rate_cents = night.size, night.rate_cents
                state.changed_blocks.add((convention_id, key))


def _block(hotel: HotelInventory, room_type: str, description: str, night: BlockNight) -> Block:
    return Block(
        hotel=hotel.code,
        room_type=room_type,
        night=night.night,
        hotel_name=hotel.name,
        description=description,
        size=night.size,
        rate_cents=night.rate_cents,
    )
