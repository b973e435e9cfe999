"""Check-in at the door as pure rules: given events, when a scan, then events; the earliest
scan wins whatever order the scans arrive in, in the decider and in the read model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.lodging.decider import OBSERVED, observe
from consumers.lodging.state import LodgingState
from consumers.registration.book import RegistrationBook
from consumers.registration.decider import decide
from gateway.waiting import _outcome_of
from projections.orders.projector import Projection, decode_events, project_event
from projections.reporting.star import StarImage
from projections.website.projector import Changes, ReadModelImage, project_events
from schemas.catalogue import OrderLine
from schemas.checkin import (
    AttendeeCheckedIn,
    CheckInAttendee,
    CheckInRefusal,
    CheckInRefused,
    CheckInSuperseded,
)
from schemas.envelope import HEADER_TYPE, Envelope
from schemas.orders import OrderExpired, OrderPaid
from schemas.registration import (
    AttendeeRegistered,
    BadgeTypeSpec,
    ConventionCreated,
    ConventionOpened,
    Event,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationTransferred,
    RejectionReason,
)
from schemas.registry import event_id, payload_of, wrap

CID = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
OTHER = uuid.UUID("00000000-0000-0000-0000-0000000000c2")
OPENING = datetime(2027, 5, 1, 9, 0, tzinfo=UTC)
CREATED = ConventionCreated(
    convention_id=CID,
    name="FurCon",
    starts_on=date(2027, 5, 1),
    ends_on=date(2027, 5, 3),
    badge_types=(
        BadgeTypeSpec(code="STD", name="Standard", price_cents=4000, quota=500),
        BadgeTypeSpec(code="FREE", name="Free", price_cents=0, quota=500),
    ),
    request_hash="h",
)
OPENED = ConventionOpened(convention_id=CID)


def rid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def sid(n: int) -> uuid.UUID:
    return uuid.UUID(int=1_000_000 + n)


def _terms(n: int, price: int) -> OrderTerms:
    seat = OrderLine(
        kind="badge",
        code="STD" if price else "FREE",
        name="Seat",
        quantity=1,
        unit_price_cents=price,
        total_cents=price,
    )
    return OrderTerms(
        order_id=rid(n), lines=(seat,), subtotal_cents=price, total_cents=price, currency="EUR"
    )


def free(n: int, convention_id: uuid.UUID = CID) -> AttendeeRegistered:
    return AttendeeRegistered(
        convention_id=convention_id,
        registration_id=rid(n),
        email=f"a{n}@example.org",
        name=f"Attendee {n}",
        badge_type="FREE",
        request_hash=f"h{n}",
        order=_terms(n, 0),
    )


def placed(n: int) -> OrderPlaced:
    return OrderPlaced(
        convention_id=CID,
        registration_id=rid(n),
        email=f"a{n}@example.org",
        name=f"Attendee {n}",
        badge_type="STD",
        request_hash=f"h{n}",
        order=_terms(n, 4000),
        hold_until=OPENING - timedelta(days=30),
    )


def paid(n: int) -> OrderPaid:
    return OrderPaid(
        convention_id=CID,
        registration_id=rid(n),
        order_id=rid(n),
        payment_id=f"pay-{n}",
        amount_cents=4000,
        currency="EUR",
        confirms_registration=True,
    )


def transferred(n: int, name: str) -> RegistrationTransferred:
    return RegistrationTransferred(
        convention_id=CID,
        registration_id=rid(n),
        badge_type="FREE",
        email=f"{name.lower()}@example.org",
        name=name,
        account_id=uuid.uuid4(),
    )


def scan(
    n: int,
    station: str = "Door A",
    minutes: float = 0,
    *,
    scan: int | None = None,
    serial: int = 0,
    convention_id: uuid.UUID = CID,
) -> CheckInAttendee:
    return CheckInAttendee(
        convention_id=convention_id,
        registration_id=rid(n),
        ticket_serial=serial,
        station=station,
        scanned_at=OPENING + timedelta(minutes=minutes),
        scan_id=sid(n if scan is None else scan),
    )


def given_when(history: Sequence[Event], command: CheckInAttendee) -> list[Event]:
    book = RegistrationBook()
    for event in history:
        book.apply(event)
    return decide(book.situation(command), command)


def checked_in(command: CheckInAttendee, name: str, badge: str = "FREE") -> AttendeeCheckedIn:
    return AttendeeCheckedIn(
        convention_id=command.convention_id,
        registration_id=command.registration_id,
        badge_type=badge,
        name=name,
        station=command.station,
        scanned_at=command.scanned_at,
        scan_id=command.scan_id,
    )


def refused(
    command: CheckInAttendee,
    reason: CheckInRefusal,
    winner: CheckInAttendee | None = None,
) -> CheckInRefused:
    return CheckInRefused(
        convention_id=command.convention_id,
        registration_id=command.registration_id,
        station=command.station,
        scanned_at=command.scanned_at,
        scan_id=command.scan_id,
        reason=reason,
        checked_in_station=None if winner is None else winner.station,
        checked_in_at=None if winner is None else winner.scanned_at,
    )


BASE = [CREATED, OPENED]


def test_a_free_registration_is_checked_in_at_its_first_scan() -> None:
    command = scan(1)
    assert given_when([*BASE, free(1)], command) == [checked_in(command, "Attendee 1")]


def test_a_paid_registration_is_checked_in() -> None:
    command = scan(1)
    assert given_when([*BASE, placed(1), paid(1)], command) == [
        checked_in(command, "Attendee 1", "STD")
    ]


def test_an_unknown_registration_is_refused() -> None:
    command = scan(9)
    assert given_when([*BASE, free(1)], command) == [
        refused(command, CheckInRefusal.UNKNOWN_REGISTRATION)
    ]


def test_a_registration_of_another_convention_is_unknown_here() -> None:
    command = scan(1)
    assert given_when([*BASE, free(1, OTHER)], command) == [
        refused(command, CheckInRefusal.UNKNOWN_REGISTRATION)
    ]


def test_a_cancelled_registrations_ticket_is_revoked() -> None:
    cancelled = RegistrationCancelled(convention_id=CID, registration_id=rid(1), badge_type="FREE")
    command = scan(1)
    assert given_when([*BASE, free(1), cancelled], command) == [
        refused(command, CheckInRefusal.REVOKED)
    ]


def test_a_ticket_issued_before_a_transfer_is_revoked_and_the_new_one_admits_the_new_holder() -> (
    None
):
    history = [*BASE, free(1), transferred(1, "Bea"), transferred(1, "Cy")]
    old = scan(1, serial=1)
    assert given_when(history, old) == [refused(old, CheckInRefusal.REVOKED)]
    current = scan(1, serial=2)
    assert given_when(history, current) == [checked_in(current, "Cy")]


def test_a_registration_not_paid_is_refused() -> None:
    expired = OrderExpired(
        convention_id=CID,
        registration_id=rid(2),
        order_id=rid(2),
        lines=_terms(2, 4000).lines,
        expires_registration=True,
    )
    rejected = RegistrationRejected(
        convention_id=CID,
        registration_id=rid(3),
        email="a3@example.org",
        name="Attendee 3",
        badge_type="STD",
        request_hash="h3",
        reason=RejectionReason.SOLD_OUT,
    )
    history = [*BASE, placed(1), placed(2), expired, rejected]
    for n in (1, 2, 3):
        command = scan(n)
        assert given_when(history, command) == [refused(command, CheckInRefusal.NOT_PAID)]


def test_revoked_goes_before_not_paid_and_before_already_checked_in() -> None:
    first = scan(1, "Door A", 0)
    cancelled = RegistrationCancelled(convention_id=CID, registration_id=rid(1), badge_type="FREE")
    history = [*BASE, free(1), checked_in(first, "Attendee 1"), cancelled]
    again = scan(1, "Door B", 5, scan=2)
    assert given_when(history, again) == [refused(again, CheckInRefusal.REVOKED)]


def test_a_later_scan_is_refused_naming_where_and_when_the_attendee_was_checked_in() -> None:
    first = scan(1, "Door A", 0)
    later = scan(1, "Door B", 3, scan=2)
    history = [*BASE, free(1), checked_in(first, "Attendee 1")]
    assert given_when(history, later) == [
        refused(later, CheckInRefusal.ALREADY_CHECKED_IN, winner=first)
    ]


def test_an_earlier_scan_arriving_late_supersedes_the_check_in() -> None:
    later = scan(1, "Door B", 3)
    earlier = scan(1, "Door A", 1, scan=2)
    history = [*BASE, free(1), checked_in(later, "Attendee 1")]
    assert given_when(history, earlier) == [
        CheckInSuperseded(
            convention_id=CID,
            registration_id=rid(1),
            badge_type="FREE",
            name="Attendee 1",
            station="Door A",
            scanned_at=earlier.scanned_at,
            scan_id=earlier.scan_id,
            superseded_station="Door B",
            superseded_scanned_at=later.scanned_at,
            superseded_scan_id=later.scan_id,
        )
    ]


def test_scans_at_the_same_moment_go_to_the_station_name() -> None:
    b = scan(1, "Door B", 0)
    a = scan(1, "Door A", 0, scan=2)
    history = [*BASE, free(1), checked_in(b, "Attendee 1")]
    assert [e.message_type for e in given_when(history, a)] == ["CheckInSuperseded"]
    history = [*BASE, free(1), checked_in(a, "Attendee 1")]
    assert given_when(history, b) == [refused(b, CheckInRefusal.ALREADY_CHECKED_IN, winner=a)]


def test_the_check_in_scan_sent_again_decides_nothing() -> None:
    first = scan(1)
    assert given_when([*BASE, free(1), checked_in(first, "Attendee 1")], first) == []


def test_a_station_clock_without_a_zone_is_utc() -> None:
    naive = scan(1).model_copy(update={"scanned_at": OPENING.replace(tzinfo=None)})
    [event] = given_when([*BASE, free(1)], naive)
    assert isinstance(event, AttendeeCheckedIn)
    assert event.scanned_at == OPENING
    assert event.scanned_at.tzinfo is not None


def test_the_state_counts_transfers_and_keeps_the_earliest_check_in() -> None:
    later = scan(1, "Door B", 3, serial=1)
    earlier = scan(1, "Door A", 1, scan=2, serial=1)
    book = RegistrationBook()
    history: list[Event] = [*BASE, free(1), transferred(1, "Bea"), checked_in(later, "Bea")]
    history += given_when(history, earlier)
    for event in history:
        book.apply(event)
    registration = book.registrations[rid(1)]
    assert registration.ticket_serial == 1
    assert registration.check_in is not None
    assert (registration.check_in.station, registration.check_in.scan_id) == ("Door A", sid(2))


# --- the decision the gateway reads off the stream ------------------------------------------


def _record(event: Event) -> bytes:
    envelope = wrap(
        event,
        message_id=uuid.uuid4(),
        occurred_at=OPENING,
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        key=str(CID),
        actor="test",
    )
    return envelope.encode()


def test_the_decision_waiter_answers_check_ins_from_the_stream() -> None:
    first = scan(1)
    accepted = _outcome_of(_record(checked_in(first, "A")), "AttendeeCheckedIn")
    assert accepted is not None
    assert (accepted.accepted, accepted.reason, accepted.registration) == (True, None, None)
    history = [*BASE, free(1), checked_in(scan(1, "Door B", 5, scan=5), "Attendee 1")]
    [superseding] = given_when(history, first)
    outcome = _outcome_of(_record(superseding), "CheckInSuperseded")
    assert outcome is not None
    assert outcome.accepted
    late = refused(scan(1, "Door C", 9, scan=3), CheckInRefusal.ALREADY_CHECKED_IN, first)
    outcome = _outcome_of(_record(late), "CheckInRefused")
    assert outcome is not None
    assert (outcome.outcome, outcome.reason) == ("rejected", "already_checked_in")


def _check_in_events() -> list[Event]:
    first = scan(1, "Door B", 5)
    history = [*BASE, free(1), checked_in(first, "A")]
    [superseding] = given_when(history, scan(1, "Door A", 1, scan=2))
    late = refused(scan(1, "Door C", 9, scan=3), CheckInRefusal.ALREADY_CHECKED_IN, first)
    return [checked_in(first, "A"), superseding, late]


def test_the_star_schema_the_orders_projector_and_lodging_pass_check_ins_over() -> None:
    for event in _check_in_events():
        value = _record(event)
        envelope = Envelope.model_validate_json(value)
        star = StarImage("secret")
        star.apply(envelope, event)
        assert star.result() == []
        headers = [(HEADER_TYPE, event.message_type.encode())]
        record = ConsumerRecord("events", 0, 0, 0, 0, b"k", value, None, 1, len(value), headers)
        events, dead_letters = decode_events([record])
        assert (len(events), dead_letters) == (1, [])
        orders = Projection()
        project_event(orders, envelope, event)
        assert (orders.writes.steps, orders.changed_orders) == ([], set())
        assert event.message_type not in OBSERVED
        lodging = LodgingState()
        assert observe(lodging, event, OPENING) == []
        assert lodging.registrations == {}


# --- any arrival order ----------------------------------------------------------------------

STATIONS = ("Door A", "Door B", "Door C", "Door D")
CHECK_IN_TYPES = ("AttendeeCheckedIn", "CheckInSuperseded", "CheckInRefused")
REGISTRATIONS = 3


@st.composite
def scans_in_any_order(draw: st.DrawFn) -> list[CheckInAttendee]:
    """Scans of a few registrations at four stations, some at the same moment, some sent
    twice (a station syncing its queue again), arriving in any order."""
    count = draw(st.integers(min_value=1, max_value=12))
    made = [
        scan(
            draw(st.integers(min_value=1, max_value=REGISTRATIONS)),
            draw(st.sampled_from(STATIONS)),
            draw(st.integers(min_value=0, max_value=4)),
            scan=index,
        )
        for index in range(count)
    ]
    resent = draw(st.lists(st.sampled_from(made), max_size=4))
    return draw(st.permutations(made + resent))


def _decided(arrivals: Sequence[CheckInAttendee]) -> tuple[RegistrationBook, list[Envelope]]:
    """The scans decided one by one as the decider's runtime does: a command already decided
    (the same scan, hence the same command id) is dropped before deciding."""
    book = RegistrationBook()
    envelopes: list[Envelope] = []
    for n in range(1, REGISTRATIONS + 1):
        registered: tuple[Event, ...] = (free(n),) if n == 1 else (placed(n), paid(n))
        for event in registered:
            book.apply(event)
            envelopes.append(_envelope(event, uuid.uuid4(), 0))
    seen: set[uuid.UUID] = set()
    for command in arrivals:
        command_id = uuid.uuid5(command.scan_id, "check-in")
        if command_id in seen:
            continue
        seen.add(command_id)
        for index, event in enumerate(decide(book.situation(command), command)):
            book.apply(event)
            envelopes.append(_envelope(event, command_id, index))
    return book, envelopes


def _envelope(event: Event, command_id: uuid.UUID, index: int) -> Envelope:
    return wrap(
        event,
        message_id=event_id(command_id, index),
        occurred_at=OPENING,
        correlation_id=command_id,
        causation_id=command_id,
        key=str(CID),
        actor="test",
    )


@settings(max_examples=300, deadline=None)
@given(scans_in_any_order())
def test_whatever_the_arrival_order_the_earliest_scan_is_the_one_check_in(
    arrivals: list[CheckInAttendee],
) -> None:
    book, envelopes = _decided(arrivals)
    earliest: dict[uuid.UUID, CheckInAttendee] = {}
    for command in arrivals:
        best = earliest.get(command.registration_id)
        rank = (command.scanned_at, command.station, command.scan_id)
        if best is None or rank < (best.scanned_at, best.station, best.scan_id):
            earliest[command.registration_id] = command
    for registration_id, winner in earliest.items():
        check_in = book.registrations[registration_id].check_in
        assert check_in is not None
        assert (check_in.scan_id, check_in.station) == (winner.scan_id, winner.station)
        assert check_in.scanned_at == winner.scanned_at

    image = ReadModelImage()
    image.fold_events([(envelope, _event(envelope)) for envelope in envelopes])
    rows = image.check_in_scans
    assert {row["scan_id"] for row in rows.values()} == {str(c.scan_id) for c in arrivals}
    for registration_id, winner in earliest.items():
        mine = [row for row in rows.values() if row["registration_id"] == str(registration_id)]
        [won] = [row for row in mine if row["outcome"] == "checked_in"]
        assert won["scan_id"] == str(winner.scan_id)
        at = winner.scanned_at.replace(tzinfo=None)
        for row in mine:
            if row is not won:
                assert row["outcome"] in ("superseded", "already_checked_in")
                assert (row["winner_station"], row["winner_scanned_at"]) == (winner.station, at)
        registration = image.registrations[str(registration_id)]
        assert (registration["checked_in_station"], registration["checked_in_at"]) == (
            winner.station,
            at,
        )

    batched = ReadModelImage()
    for envelope in envelopes:
        if envelope.type not in CHECK_IN_TYPES:
            batched.fold_events([(envelope, _event(envelope))])
    checks = [(e, _event(e)) for e in envelopes if e.type in CHECK_IN_TYPES]
    batched.apply(project_events(checks, set(), Changes()))
    assert batched.check_in_scans == image.check_in_scans, "one batch applies as one by one"


def _event(envelope: Envelope) -> Event:
    message = payload_of(envelope)
    assert isinstance(message, Event)
    return message
