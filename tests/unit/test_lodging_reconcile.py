"""Reconciliation's comparison: given our bookings and the partner's reservations, which
drifts, which corrections to our side, and which reservations to cancel at the partner."""

from __future__ import annotations

import uuid
from datetime import date

from consumers.lodging.partner import PartnerReservation, PartnerStatus
from consumers.lodging.reconcile import OurBooking, compare
from schemas.lodging import Correction, DriftKind, RoomStatus, Stay

STAY = Stay(
    room_type="KING", check_in=date(2027, 5, 1), check_out=date(2027, 5, 3), guests=("Ada",)
)
LONGER = STAY.model_copy(update={"check_out": date(2027, 5, 4)})


def ours(
    status: RoomStatus,
    ack: str | None = "HB-AAAAAAAA",
    *,
    request_id: uuid.UUID | None = None,
    hotel: str | None = "H1",
    stay: Stay = STAY,
    next_step: str | None = None,
    parked_step: str | None = None,
) -> OurBooking:
    return OurBooking(
        request_id=request_id or uuid.uuid4(),
        status=status,
        hotel=hotel,
        ack=ack,
        stay=stay,
        total_cents=20000,
        next_step=next_step,
        parked_step=parked_step,
    )


def theirs(
    booking: OurBooking | None,
    status: PartnerStatus,
    *,
    ack: str | None = None,
    hotel: str = "H1",
    stay: Stay = STAY,
    reference: str | None = None,
) -> PartnerReservation:
    return PartnerReservation(
        ack=ack or (booking.ack if booking and booking.ack else "HB-BBBBBBBB"),
        status=status,
        hotel=hotel,
        stay=stay,
        total_cents=30000,
        reference=reference or (str(booking.request_id) if booking else str(uuid.uuid4())),
    )


def test_matching_bookings_drift_nowhere() -> None:
    held, confirmed = ours(RoomStatus.HELD), ours(RoomStatus.CONFIRMED, "HB-CCCCCCCC")
    waiting = ours(RoomStatus.WAITLISTED, "HB-DDDDDDDD")

    assert compare(
        [held, confirmed, waiting],
        [theirs(held, "held"), theirs(confirmed, "confirmed"), theirs(waiting, "waitlisted")],
    ) == ([], [], [])


def test_a_booking_the_partner_lacks_is_requested_again() -> None:
    held = ours(RoomStatus.HELD)

    drifts, corrections, orphans = compare([held], [])

    assert [(d.kind, d.request_id, d.ack) for d in drifts] == [
        (DriftKind.MISSING_AT_PARTNER, held.request_id, held.ack)
    ]
    assert "redone" in drifts[0].repair
    assert corrections == [Correction(request_id=held.request_id, status=RoomStatus.REQUESTED)]
    assert orphans == []


def test_a_booking_cancelled_at_the_partner_is_cancelled() -> None:
    confirmed = ours(RoomStatus.CONFIRMED)

    drifts, corrections, _ = compare([confirmed], [theirs(confirmed, "cancelled")])

    assert [d.kind for d in drifts] == [DriftKind.CANCELLED_AT_PARTNER]
    assert [(c.status, c.ack) for c in corrections] == [(RoomStatus.CANCELLED, confirmed.ack)]


def test_a_partner_confirmation_we_missed_confirms_ours_with_its_stay() -> None:
    held, waiting = ours(RoomStatus.HELD), ours(RoomStatus.WAITLISTED, "HB-CCCCCCCC")

    drifts, corrections, _ = compare(
        [held, waiting], [theirs(held, "confirmed"), theirs(waiting, "confirmed", stay=LONGER)]
    )

    assert [d.kind for d in drifts] == [DriftKind.STATUS_DIFFERS] * 2
    assert corrections == [
        Correction(
            request_id=held.request_id,
            status=RoomStatus.CONFIRMED,
            hotel="H1",
            ack=held.ack,
            stay=STAY,
            total_cents=30000,
        ),
        Correction(
            request_id=waiting.request_id,
            status=RoomStatus.CONFIRMED,
            hotel="H1",
            ack=waiting.ack,
            stay=LONGER,
            total_cents=30000,
        ),
    ]


def test_a_partner_waitlisting_waitlists_ours() -> None:
    held, confirmed = ours(RoomStatus.HELD), ours(RoomStatus.CONFIRMED, "HB-CCCCCCCC")

    drifts, corrections, _ = compare(
        [held, confirmed], [theirs(held, "waitlisted"), theirs(confirmed, "waitlisted")]
    )

    assert [d.kind for d in drifts] == [DriftKind.STATUS_DIFFERS] * 2
    assert [c.status for c in corrections] == [RoomStatus.WAITLISTED] * 2


def test_a_changed_stay_or_hotel_takes_the_partners_keeping_our_status() -> None:
    moved, longer = ours(RoomStatus.HELD), ours(RoomStatus.CONFIRMED, "HB-CCCCCCCC")

    drifts, corrections, _ = compare(
        [moved, longer],
        [theirs(moved, "held", hotel="H2"), theirs(longer, "confirmed", stay=LONGER)],
    )

    assert [d.kind for d in drifts] == [DriftKind.STAY_DIFFERS] * 2
    assert [(c.status, c.hotel, c.stay, c.total_cents) for c in corrections] == [
        (RoomStatus.HELD, "H2", STAY, 30000),
        (RoomStatus.CONFIRMED, "H1", LONGER, 30000),
    ]
    assert "H2" in drifts[0].theirs
    assert "2027-05-04" in drifts[1].theirs


def test_requests_with_a_hold_in_flight_or_parked_are_left_alone() -> None:
    holding = ours(RoomStatus.REQUESTED, None, next_step="hold")
    rehold = ours(RoomStatus.HELD, next_step="hold")
    parked = ours(RoomStatus.REQUESTED, None, parked_step="hold")

    assert compare(
        [holding, rehold, parked],
        [
            theirs(holding, "held", ack="HB-EEEEEEEE"),
            theirs(parked, "waitlisted", ack="HB-FFFFFFFF"),
        ],
    ) == ([], [], [])


def test_requests_without_a_booking_are_not_missing() -> None:
    assert compare(
        [
            ours(RoomStatus.REQUESTED, None),
            ours(RoomStatus.FAILED, None),
            ours(RoomStatus.CANCELLED, "HB-AAAAAAAA"),
        ],
        [],
    ) == ([], [], [])


def test_reservations_nobody_of_ours_wants_are_orphans_to_cancel() -> None:
    cancelled = ours(RoomStatus.CANCELLED)
    failed = ours(RoomStatus.FAILED, None)
    moved_on = ours(RoomStatus.HELD, "HB-CCCCCCCC", hotel="H2")
    unknown = uuid.uuid4()
    found = [
        theirs(cancelled, "held"),
        theirs(failed, "waitlisted", ack="HB-DDDDDDDD"),
        theirs(moved_on, "held", ack="HB-EEEEEEEE"),
        theirs(moved_on, "held", ack="HB-CCCCCCCC", hotel="H2"),
        theirs(None, "confirmed", ack="HB-FFFFFFFF", reference=str(unknown)),
    ]

    drifts, corrections, orphans = compare([cancelled, failed, moved_on], found)

    assert orphans == ["HB-AAAAAAAA", "HB-DDDDDDDD", "HB-EEEEEEEE", "HB-FFFFFFFF"]
    assert [(d.kind, d.request_id, d.ack) for d in drifts] == [
        (DriftKind.ORPHAN_AT_PARTNER, cancelled.request_id, "HB-AAAAAAAA"),
        (DriftKind.ORPHAN_AT_PARTNER, failed.request_id, "HB-DDDDDDDD"),
        (DriftKind.ORPHAN_AT_PARTNER, moved_on.request_id, "HB-EEEEEEEE"),
        (DriftKind.ORPHAN_AT_PARTNER, unknown, "HB-FFFFFFFF"),
    ]
    assert all(d.repair == "cancel at the partner" for d in drifts)
    assert corrections == []


def test_cancelled_reservations_and_foreign_references_are_no_orphans() -> None:
    cancelled = ours(RoomStatus.CANCELLED)

    assert compare(
        [cancelled],
        [
            theirs(cancelled, "cancelled"),
            theirs(None, "held", ack="HB-GGGGGGGG", reference="walk-in guest"),
            theirs(None, "cancelled", ack="HB-HHHHHHHH"),
        ],
    ) == ([], [], [])


def test_drift_texts_stay_within_their_limit() -> None:
    long_names = STAY.model_copy(update={"guests": ("x" * 100,) * 4})
    held = ours(RoomStatus.HELD, stay=long_names)

    drifts, _, _ = compare([held], [theirs(held, "held", hotel="H2", stay=long_names)])

    assert all(len(d.ours) <= 500 and len(d.theirs) <= 500 for d in drifts)
