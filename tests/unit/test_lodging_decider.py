"""The lodging decider's rules, pure: commands in, events out, state evolved."""

from __future__ import annotations

import copy
import uuid
from datetime import date, datetime

import pytest

from consumers.lodging.decider import decide, draw_order, evolve, observe, remember_sequence
from consumers.lodging.state import LodgingState
from schemas.lodging import (
    ApplyPartnerBlock,
    ApplyPartnerReservation,
    BlockNight,
    CancelRoomRequest,
    Correction,
    EnterLottery,
    FailureReason,
    HotelInventory,
    LotteryDrawn,
    OpenLottery,
    ParkRoomRequest,
    RecordConfirmation,
    RecordHold,
    RecordHotelInventory,
    RecordReconciliation,
    RecordRelease,
    RequestRoom,
    RetryRoomRequest,
    RoomStatus,
    RoomTypeBlock,
    RunLottery,
    Stay,
    SyncHotels,
)
from schemas.registration import (
    AttendeeRegistered,
    BadgeTypeSpec,
    Command,
    ConventionCreated,
    Event,
    RegistrationCancelled,
)

AT = datetime(2027, 1, 10, 12, 0)
CONVENTION = uuid.UUID("00000000-0000-0000-0000-00000000c0de")
STAY = Stay(
    room_type="KING", check_in=date(2027, 3, 5), check_out=date(2027, 3, 7), guests=("Ada",)
)


def run(state: LodgingState, message: Command | Event) -> list[Event]:
    """Decide (or observe) and evolve, as the runtime does."""
    if isinstance(message, Command):
        events = decide(state, message, AT)
    else:
        events = observe(state, message, AT)
    for event in events:
        evolve(state, event, AT, partition=0)
    if isinstance(message, Command):
        remember_sequence(state, message)
    return events


def names(events: list[Event]) -> list[str]:
    return [e.message_type for e in events]


def inventory(sizes: dict[str, int]) -> tuple[HotelInventory, ...]:
    nights = [date(2027, 3, d) for d in range(4, 9)]
    return tuple(
        HotelInventory(
            code=code,
            name=f"Hotel {code}",
            room_types=(
                RoomTypeBlock(
                    code="KING",
                    description="one king bed",
                    nights=tuple(
                        BlockNight(night=n, size=size, booked=0, rate_cents=15000) for n in nights
                    ),
                ),
            ),
        )
        for code, size in sizes.items()
    )


def synced_state(sizes: dict[str, int] | None = None) -> LodgingState:
    state = LodgingState()
    run(
        state,
        ConventionCreated(
            convention_id=CONVENTION,
            name="Con",
            starts_on=date(2027, 3, 5),
            ends_on=date(2027, 3, 7),
            badge_types=(BadgeTypeSpec(code="GA", name="General", price_cents=0, quota=10),),
            request_hash="h",
        ),
    )
    sync_id = uuid.uuid4()
    assert names(run(state, SyncHotels(convention_id=CONVENTION, sync_id=sync_id))) == [
        "HotelSyncRequested"
    ]
    run(
        state,
        RecordHotelInventory(
            convention_id=CONVENTION,
            sync_id=sync_id,
            hotels=inventory(sizes or {"AAA": 2, "BBB": 2}),
        ),
    )
    return state


def registered(state: LodgingState) -> uuid.UUID:
    registration_id = uuid.uuid4()
    run(
        state,
        AttendeeRegistered(
            convention_id=CONVENTION,
            registration_id=registration_id,
            email="a@example.org",
            name="Ada",
            badge_type="GA",
            request_hash="h",
        ),
    )
    return registration_id


def request(
    state: LodgingState, registration_id: uuid.UUID, hotels: tuple[str, ...] = ("AAA", "BBB")
) -> uuid.UUID:
    request_id = uuid.uuid4()
    events = run(
        state,
        RequestRoom(
            convention_id=CONVENTION,
            request_id=request_id,
            registration_id=registration_id,
            hotels=hotels,
            stay=STAY,
            request_hash="r",
        ),
    )
    assert names(events) == ["RoomRequested"]
    return request_id


def booked(state: LodgingState, hotel: str) -> list[int]:
    blocks = state.blocks_of(CONVENTION)
    return [blocks[(hotel, "KING", n)].booked for n in STAY.nights()]


def test_a_request_goes_through_hold_and_confirm_and_books_its_nights() -> None:
    state = synced_state()
    request_id = request(state, registered(state))
    assert state.requests[request_id].next_step == "hold"

    held = run(
        state,
        RecordHold(
            convention_id=CONVENTION,
            request_id=request_id,
            attempt=0,
            hotel="AAA",
            outcome="held",
            ack="HB-1",
            total_cents=30000,
        ),
    )
    assert names(held) == ["RoomHeld"]
    assert state.requests[request_id].next_step == "confirm"
    assert booked(state, "AAA") == [1, 1]

    confirmed = run(
        state, RecordConfirmation(convention_id=CONVENTION, request_id=request_id, ack="HB-1")
    )
    assert names(confirmed) == ["RoomConfirmed"]
    assert state.requests[request_id].status is RoomStatus.CONFIRMED
    assert state.requests[request_id].next_step is None
    assert booked(state, "AAA") == [1, 1]


def test_a_full_hotel_is_compensated_by_the_next_preference_then_fails_with_a_reason() -> None:
    state = synced_state()
    request_id = request(state, registered(state))

    def refused(attempt: int, hotel: str) -> list[Event]:
        return run(
            state,
            RecordHold(
                convention_id=CONVENTION,
                request_id=request_id,
                attempt=attempt,
                hotel=hotel,
                outcome="refused",
                reason="no_availability",
            ),
        )

    assert names(refused(0, "AAA")) == ["HotelDeclined"]
    assert state.requests[request_id].attempt == 1
    assert state.requests[request_id].next_step == "hold"
    assert refused(0, "AAA") == []  # the same answer again changes nothing
    assert names(refused(1, "BBB")) == ["HotelDeclined", "RoomRequestFailed"]
    assert state.requests[request_id].status is RoomStatus.FAILED
    assert state.requests[request_id].reason == FailureReason.NO_AVAILABILITY


def test_the_last_preference_waitlisting_leaves_the_request_waitlisted() -> None:
    state = synced_state()
    request_id = request(state, registered(state), hotels=("AAA",))
    events = run(
        state,
        RecordHold(
            convention_id=CONVENTION,
            request_id=request_id,
            attempt=0,
            hotel="AAA",
            outcome="waitlisted",
            ack="HB-W",
        ),
    )
    assert names(events) == ["RoomWaitlisted"]
    assert state.requests[request_id].status is RoomStatus.WAITLISTED
    assert booked(state, "AAA") == [0, 0]


def test_requests_that_do_not_fit_the_blocks_fail_with_their_reason() -> None:
    state = synced_state()
    registration_id = registered(state)

    def failure(**changes: object) -> str | None:
        body = {
            "convention_id": CONVENTION,
            "request_id": uuid.uuid4(),
            "registration_id": registration_id,
            "hotels": ("AAA",),
            "stay": STAY,
            "request_hash": "x",
        } | changes
        events = run(state, RequestRoom.model_validate(body))
        assert names(events)[0] == "RoomRequested"
        return state.requests[body["request_id"]].reason  # type: ignore[index]

    assert failure(hotels=("ZZZ",)) == FailureReason.UNKNOWN_HOTEL
    assert (
        failure(stay=STAY.model_copy(update={"room_type": "DQ"})) == FailureReason.UNKNOWN_ROOM_TYPE
    )
    late = Stay(
        room_type="KING", check_in=date(2027, 3, 8), check_out=date(2027, 3, 10), guests=("A",)
    )
    assert failure(stay=late) == FailureReason.NIGHTS_OUTSIDE_BLOCK
    request(state, registration_id)
    assert failure() == FailureReason.ALREADY_REQUESTED


def test_a_reused_request_id_with_another_body_is_refused_and_changes_nothing() -> None:
    state = synced_state()
    registration_id = registered(state)
    request_id = request(state, registration_id)
    again = RequestRoom(
        convention_id=CONVENTION,
        request_id=request_id,
        registration_id=registration_id,
        hotels=("BBB",),
        stay=STAY,
        request_hash="other",
    )
    assert names(run(state, again)) == ["RoomRequestRefused"]
    assert state.requests[request_id].hotels == ("AAA", "BBB")


def test_a_cancelled_registration_cannot_ask_for_a_room() -> None:
    state = synced_state()
    registration_id = registered(state)
    run(
        state,
        RegistrationCancelled(
            convention_id=CONVENTION, registration_id=registration_id, badge_type="GA"
        ),
    )
    request_id = uuid.uuid4()
    events = run(
        state,
        RequestRoom(
            convention_id=CONVENTION,
            request_id=request_id,
            registration_id=registration_id,
            hotels=("AAA",),
            stay=STAY,
            request_hash="r",
        ),
    )
    assert names(events) == ["RoomRequested", "RoomRequestFailed"]
    assert state.requests[request_id].reason == FailureReason.REGISTRATION_CANCELLED


def held_request(state: LodgingState) -> tuple[uuid.UUID, uuid.UUID]:
    registration_id = registered(state)
    request_id = request(state, registration_id)
    run(
        state,
        RecordHold(
            convention_id=CONVENTION,
            request_id=request_id,
            attempt=0,
            hotel="AAA",
            outcome="held",
            ack="HB-1",
            total_cents=30000,
        ),
    )
    return registration_id, request_id


def test_cancelling_gives_the_rooms_back_and_asks_for_a_release_at_the_partner() -> None:
    state = synced_state()
    _, request_id = held_request(state)
    events = run(state, CancelRoomRequest(convention_id=CONVENTION, request_id=request_id))
    assert names(events) == ["RoomCancelled"]
    assert state.requests[request_id].next_step == "release"
    assert booked(state, "AAA") == [0, 0]
    assert names(
        run(state, CancelRoomRequest(convention_id=CONVENTION, request_id=request_id))
    ) == ["LodgingCommandRejected"]
    released = run(
        state, RecordRelease(convention_id=CONVENTION, request_id=request_id, acks=("HB-1",))
    )
    assert names(released) == ["RoomReleased"]
    assert state.requests[request_id].next_step is None


def test_a_cancelled_registration_cancels_its_room() -> None:
    state = synced_state()
    registration_id, request_id = held_request(state)
    events = run(
        state,
        RegistrationCancelled(
            convention_id=CONVENTION, registration_id=registration_id, badge_type="GA"
        ),
    )
    assert names(events) == ["RoomCancelled"]
    assert state.requests[request_id].reason == "cancelled_by_registration"
    assert state.requests[request_id].next_step == "release"


def partner(
    request_id: uuid.UUID, sequence: int, change: str, *, nights: int = 2, by: str = "hotel"
) -> ApplyPartnerReservation:
    stay = STAY.model_copy(update={"check_out": date(2027, 3, 5 + nights)})
    return ApplyPartnerReservation.model_validate(
        {
            "convention_id": CONVENTION,
            "partner_event_id": f"e{sequence}",
            "sequence": sequence,
            "change": change,
            "by": by,
            "ack": "HB-1",
            "reference": str(request_id),
            "hotel": "AAA",
            "stay": stay,
            "total_cents": 15000 * nights,
        }
    )


def test_a_hotel_cancellation_reaches_the_request_once() -> None:
    state = synced_state()
    _, request_id = held_request(state)
    events = run(state, partner(request_id, 7, "cancelled"))
    assert names(events) == ["RoomCancelled"]
    assert state.requests[request_id].reason == "cancelled_by_hotel"
    assert state.requests[request_id].next_step is None
    assert booked(state, "AAA") == [0, 0]
    assert run(state, partner(request_id, 7, "cancelled")) == []


def test_reordered_partner_events_apply_only_the_newest() -> None:
    state = synced_state()
    _, request_id = held_request(state)
    assert names(run(state, partner(request_id, 9, "modified", nights=1))) == ["RoomChanged"]
    assert booked(state, "AAA") == [1, 0]
    assert run(state, partner(request_id, 8, "modified", nights=2)) == []
    assert state.requests[request_id].stay.check_out == date(2027, 3, 6)


def test_block_changes_apply_in_sequence_order() -> None:
    state = synced_state()
    night = date(2027, 3, 5)

    def change(sequence: int, size: int) -> list[Event]:
        return run(
            state,
            ApplyPartnerBlock(
                convention_id=CONVENTION,
                partner_event_id=f"b{sequence}",
                sequence=sequence,
                hotel="AAA",
                room_type="KING",
                night=night,
                size=size,
            ),
        )

    assert names(change(4, 9)) == ["HotelBlockChanged"]
    assert change(3, 1) == []
    assert state.blocks_of(CONVENTION)[("AAA", "KING", night)].size == 9


def test_parking_and_retrying_a_step() -> None:
    state = synced_state()
    request_id = request(state, registered(state))
    park = ParkRoomRequest(
        convention_id=CONVENTION, request_id=request_id, step="hold", error="partner down"
    )
    assert names(run(state, park)) == ["RoomRequestParked"]
    assert state.requests[request_id].next_step is None
    retry = RetryRoomRequest(convention_id=CONVENTION, request_id=request_id)
    assert names(run(state, retry)) == ["RoomRequestRetried"]
    assert state.requests[request_id].next_step == "hold"
    assert state.requests[request_id].retries == 1
    assert names(run(state, retry)) == ["LodgingCommandRejected"]


def lottery_state(entrants: int, sizes: dict[str, int]) -> tuple[LodgingState, list[uuid.UUID]]:
    state = synced_state(sizes)
    run(state, OpenLottery(convention_id=CONVENTION))
    registrations = [registered(state) for _ in range(entrants)]
    for registration_id in registrations:
        events = run(
            state,
            EnterLottery(
                convention_id=CONVENTION,
                registration_id=registration_id,
                hotels=("AAA", "BBB"),
                stay=STAY,
            ),
        )
        assert names(events) == ["LotteryEntered"]
    return state, registrations


def test_the_lottery_is_reproducible_fair_to_capacity_and_gives_nobody_two_rooms() -> None:
    state, registrations = lottery_state(7, {"AAA": 2, "BBB": 3})
    twin = copy.deepcopy(state)
    events = run(state, RunLottery(convention_id=CONVENTION, seed=42))
    assert events == run(twin, RunLottery(convention_id=CONVENTION, seed=42))

    drawn = events[0]
    assert isinstance(drawn, LotteryDrawn)
    assert len(drawn.awards) == 5
    assert len(drawn.waitlisted) == 2
    entrants = [a.registration_id for a in drawn.awards] + [
        w.registration_id for w in drawn.waitlisted
    ]
    assert sorted(entrants) == sorted(registrations)
    assert [a.hotel for a in drawn.awards].count("AAA") == 2
    assert [w.position for w in drawn.waitlisted] == [1, 2]
    assert sorted([a.draw for a in drawn.awards] + [w.draw for w in drawn.waitlisted]) == list(
        range(1, 8)
    )
    for registration_id in registrations:
        assert len(state.requests_of(registration_id)) == 1
    assert booked(state, "AAA") == [0, 0]  # awards are booked once the partner holds them
    assert names(run(state, RunLottery(convention_id=CONVENTION, seed=42))) == [
        "LodgingCommandRejected"
    ]


def test_another_seed_draws_another_order() -> None:
    state, _ = lottery_state(7, {"AAA": 1, "BBB": 1})
    twin = copy.deepcopy(state)
    first = run(state, RunLottery(convention_id=CONVENTION, seed=1))[0]
    second = run(twin, RunLottery(convention_id=CONVENTION, seed=2))[0]
    assert isinstance(first, LotteryDrawn)
    assert isinstance(second, LotteryDrawn)

    def order(drawn: LotteryDrawn) -> list[uuid.UUID]:
        places = [(a.draw, a.registration_id) for a in drawn.awards]
        places += [(w.draw, w.registration_id) for w in drawn.waitlisted]
        return [registration_id for _, registration_id in sorted(places)]

    assert order(first) != order(second)  # 7 entrants: the same order by chance is 1 in 5040


def test_the_draw_order_depends_only_on_seed_and_entrants() -> None:
    entrants = [uuid.UUID(int=n) for n in range(1, 50)]
    assert draw_order(7, entrants) == draw_order(7, list(reversed(entrants)))
    assert draw_order(7, entrants) != draw_order(8, entrants)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (RoomStatus.CANCELLED, ["RoomCancelled"]),
        (RoomStatus.REQUESTED, ["RoomRequeued"]),
        (RoomStatus.WAITLISTED, ["RoomWaitlisted"]),
    ],
)
def test_reconciliation_corrections_bring_our_side_to_the_partners(
    status: RoomStatus, expected: list[str]
) -> None:
    state = synced_state()
    _, request_id = held_request(state)
    events = run(
        state,
        RecordReconciliation(
            convention_id=CONVENTION,
            reconciliation_id=uuid.uuid4(),
            drifts=(),
            corrections=(Correction(request_id=request_id, status=status),),
        ),
    )
    assert names(events) == ["LodgingReconciled", *expected]
    assert state.requests[request_id].status is status
    assert booked(state, "AAA") == [0, 0]
