"""The lodging projector's pure parts: how a room request row evolves, and how `booked`
follows it (one rule, whatever the event)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import pytest

from gateway.lodging_views import pickup_percent
from projections.lodging.projector import (
    Projection,
    RequestRow,
    booked_delta,
    evolve_request,
    requested_row,
)
from schemas.lodging import (
    CancelledBy,
    FailureReason,
    HotelDeclined,
    LodgingCommandRejected,
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
    RoomWaitlisted,
    Stay,
)

CID = uuid.uuid4()
RID = uuid.uuid4()
REQ = uuid.uuid4()
AT = datetime(2027, 1, 1, 12, 0)
STAY = Stay(room_type="KING", check_in=date(2027, 6, 1), check_out=date(2027, 6, 3), guests=("A",))
LONGER = Stay(
    room_type="KING", check_in=date(2027, 6, 1), check_out=date(2027, 6, 4), guests=("A",)
)


def requested() -> RoomRequested:
    return RoomRequested(
        convention_id=CID,
        request_id=REQ,
        registration_id=RID,
        hotels=("HQ", "ANNEX"),
        stay=STAY,
        request_hash="h",
    )


def held(hotel: str = "HQ") -> RoomHeld:
    return RoomHeld(
        convention_id=CID, request_id=REQ, hotel=hotel, ack="A1", stay=STAY, total_cents=30000
    )


def fold(*events: object) -> RequestRow | None:
    row: RequestRow | None = None
    for event in events:
        row = evolve_request(row, event, AT)  # type: ignore[arg-type]
    return row


def night(day: int, hotel: str = "HQ") -> tuple[str, str, str, date]:
    return (str(CID), hotel, "KING", date(2027, 6, day))


def test_a_request_is_requested_until_held_then_takes_each_night() -> None:
    before = fold(requested())
    assert before is not None
    assert before.status == "requested"
    after = evolve_request(before, held(), AT)
    assert after is not None
    assert (after.status, after.hotel, after.ack) == ("held", "HQ", "A1")
    assert booked_delta(before, after) == {night(1): 1, night(2): 1}


def test_confirming_a_held_room_books_nothing_more() -> None:
    before = fold(requested(), held())
    confirmed = RoomConfirmed(
        convention_id=CID, request_id=REQ, hotel="HQ", ack="A1", stay=STAY, total_cents=30000
    )
    after = evolve_request(before, confirmed, AT)
    assert after is not None
    assert after.status == "confirmed"
    assert booked_delta(before, after) == {}


def test_cancelling_releases_every_night_and_records_who() -> None:
    before = fold(requested(), held())
    after = evolve_request(
        before,
        RoomCancelled(convention_id=CID, request_id=REQ, by=CancelledBy.HOTEL, release=True),
        AT,
    )
    assert after is not None
    assert (after.status, after.cancelled_by) == ("cancelled", "hotel")
    assert booked_delta(before, after) == {night(1): -1, night(2): -1}
    released = evolve_request(after, RoomReleased(convention_id=CID, request_id=REQ, acks=()), AT)
    assert released is not None
    assert released.released
    assert released.status == "cancelled"


def test_a_changed_stay_moves_only_the_nights_that_differ() -> None:
    before = fold(requested(), held())
    changed = RoomChanged(
        convention_id=CID,
        request_id=REQ,
        hotel="HQ",
        ack="A2",
        previous=STAY,
        stay=LONGER,
        total_cents=45000,
        by="hotel",
    )
    after = evolve_request(before, changed, AT)
    assert after is not None
    assert (after.status, after.check_out) == ("held", date(2027, 6, 4))
    assert booked_delta(before, after) == {night(3): 1}


def test_a_change_of_hotel_moves_every_night() -> None:
    before = fold(requested(), held())
    changed = RoomChanged(
        convention_id=CID,
        request_id=REQ,
        hotel="ANNEX",
        ack="B1",
        previous=STAY,
        stay=STAY,
        total_cents=1,
        by="reconciliation",
    )
    delta = booked_delta(before, evolve_request(before, changed, AT))
    assert delta == {night(1): -1, night(2): -1, night(1, "ANNEX"): 1, night(2, "ANNEX"): 1}


def test_declines_waitlisting_and_failure_take_no_rooms() -> None:
    declined = HotelDeclined(convention_id=CID, request_id=REQ, hotel="HQ", reason="full")
    row = fold(requested(), declined, declined)
    assert row is not None
    assert row.declined == ("HQ",)
    assert row.status == "requested"
    waitlisted = evolve_request(
        row,
        RoomWaitlisted(convention_id=CID, request_id=REQ, hotel="ANNEX", ack=None, position=3),
        AT,
    )
    assert waitlisted is not None
    assert waitlisted.waitlist_position == 3
    assert booked_delta(row, waitlisted) == {}
    failed = evolve_request(
        fold(requested(), held()),
        RoomRequestFailed(
            convention_id=CID, request_id=REQ, reason=FailureReason.NO_AVAILABILITY, detail="x"
        ),
        AT,
    )
    assert failed is not None
    assert (failed.status, failed.reason) == ("failed", "no_availability")
    assert booked_delta(fold(requested(), held()), failed) == {night(1): -1, night(2): -1}


def test_parking_and_retrying_set_and_clear_the_parked_step() -> None:
    parked = fold(
        requested(),
        RoomRequestParked(convention_id=CID, request_id=REQ, step="hold", error="timeout"),
    )
    assert parked is not None
    assert (parked.parked_step, parked.parked_error) == ("hold", "timeout")
    retried = evolve_request(parked, RoomRequestRetried(convention_id=CID, request_id=REQ), AT)
    assert retried is not None
    assert retried.parked_step is None
    assert retried.parked_error is None


def test_an_event_about_an_unknown_request_makes_no_row() -> None:
    assert fold(held()) is None


def pending_row() -> RequestRow:
    command = RequestRoom(
        convention_id=CID,
        request_id=REQ,
        registration_id=RID,
        hotels=("HQ",),
        stay=STAY,
        request_hash="h",
    )
    return requested_row(command, AT, accepted=False)


def test_a_refusal_fails_a_row_only_its_command_made() -> None:
    refused = RoomRequestRefused(
        convention_id=CID,
        request_id=REQ,
        request_hash="other",
        reason=FailureReason.IDEMPOTENCY_KEY_REUSED,
    )
    failed = evolve_request(pending_row(), refused, AT)
    assert failed is not None
    assert (failed.status, failed.reason) == (
        "failed",
        "idempotency_key_reused",
    )
    accepted = fold(requested())
    assert evolve_request(accepted, refused, AT) == accepted


def test_a_rejected_request_command_fails_its_pending_row() -> None:
    rejected = LodgingCommandRejected(
        convention_id=CID,
        command="RequestRoom",
        request_id=REQ,
        reason=FailureReason.REGISTRATION_NOT_CONFIRMED,
    )
    row = evolve_request(pending_row(), rejected, AT)
    assert row is not None
    assert row.status == "failed"


def test_the_event_after_the_pending_row_keeps_its_creation_time() -> None:
    later = datetime(2027, 1, 2)
    row = evolve_request(pending_row(), requested(), later)
    assert row is not None
    assert row.accepted
    assert (row.created_at, row.updated_at) == (AT, later)


def test_a_projection_sums_the_moves_of_a_whole_batch() -> None:
    projection = Projection(before={})
    cancel = RoomCancelled(convention_id=CID, request_id=REQ, by=CancelledBy.ATTENDEE, release=True)
    for event in (requested(), held(), cancel):
        projection.fold_request(str(REQ), event, AT)
    assert {key: n for key, n in projection.booked.items() if n} == {}
    assert projection.after[str(REQ)].status == "cancelled"


def test_a_row_survives_the_database_round_trip() -> None:
    row = fold(requested(), held())
    assert row is not None
    stored = row.to_db()
    assert stored["hotels"] == '["HQ", "ANNEX"]'

    class Db:
        def __getattr__(self, name: str) -> object:
            return stored[name]

    assert RequestRow.from_db(Db()) == row


@pytest.mark.parametrize(
    ("booked", "block", "percent"), [(0, 0, 0.0), (1, 3, 33.3), (2, 3, 66.7), (5, 4, 125.0)]
)
def test_pickup_percent_has_one_decimal(booked: int, block: int, percent: float) -> None:
    assert pickup_percent(booked, block) == percent


def test_a_requeued_room_gives_its_nights_back_until_held_again() -> None:
    before = fold(requested(), held())
    requeued = RoomRequeued(convention_id=CID, request_id=REQ, reason="missing_at_partner")
    after = evolve_request(before, requeued, AT)
    assert after is not None
    assert (after.status, after.hotel, after.ack) == ("requested", None, None)
    assert booked_delta(before, after) == {night(1): -1, night(2): -1}
