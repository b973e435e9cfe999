"""The registration rules as pure functions: given events, when a command, then events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.registration.book import RegistrationBook
from consumers.registration.decider import decide
from consumers.registration.state import RegistrationStatus
from schemas.registration import (
    AttendeeRegistered,
    BadgeTypeSpec,
    CancellationRejected,
    CancelRegistration,
    CloseConvention,
    Command,
    ConventionClosed,
    ConventionCommandRejected,
    ConventionCreated,
    ConventionOpened,
    CreateConvention,
    Event,
    OpenConvention,
    RegisterAttendee,
    RegistrationCancelled,
    RegistrationRejected,
    RejectionReason,
)

CID = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
BADGES = (
    BadgeTypeSpec(code="STD", name="Standard", price_cents=5000, quota=2),
    BadgeTypeSpec(code="VIP", name="Sponsor", price_cents=20000, quota=1),
)
CREATED = ConventionCreated(
    convention_id=CID,
    name="FurCon",
    starts_on=date(2027, 1, 1),
    ends_on=date(2027, 1, 3),
    badge_types=BADGES,
    request_hash="h",
)
OPENED = ConventionOpened(convention_id=CID)


def rid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def register(n: int, email: str, badge: str = "STD") -> RegisterAttendee:
    return RegisterAttendee(
        convention_id=CID,
        registration_id=rid(n),
        email=email,
        name=f"Attendee {n}",
        badge_type=badge,
        request_hash=f"h{n}",
    )


def registered(n: int, email: str, badge: str = "STD") -> AttendeeRegistered:
    return AttendeeRegistered(
        convention_id=CID,
        registration_id=rid(n),
        email=email,
        name=f"Attendee {n}",
        badge_type=badge,
        request_hash=f"h{n}",
    )


def given_when(history: Sequence[Event], command: Command) -> list[Event]:
    book = RegistrationBook()
    for event in history:
        book.apply(event)
    return decide(book.situation(command), command)


def rejected(command: RegisterAttendee, reason: RejectionReason) -> RegistrationRejected:
    return RegistrationRejected(
        convention_id=command.convention_id,
        registration_id=command.registration_id,
        email=command.email,
        name=command.name,
        badge_type=command.badge_type,
        request_hash=command.request_hash,
        reason=reason,
    )


def test_an_open_convention_with_seats_confirms() -> None:
    assert given_when([CREATED, OPENED], register(1, "a@x.org")) == [registered(1, "a@x.org")]


def test_no_registration_before_the_convention_opens() -> None:
    command = register(1, "a@x.org")
    assert given_when([CREATED], command) == [rejected(command, RejectionReason.NOT_OPEN)]


def test_no_registration_for_an_unknown_convention() -> None:
    command = register(1, "a@x.org")
    assert given_when([], command) == [rejected(command, RejectionReason.NOT_OPEN)]


def test_no_registration_after_close() -> None:
    command = register(1, "a@x.org")
    closed = ConventionClosed(convention_id=CID)
    assert given_when([CREATED, OPENED, closed], command) == [
        rejected(command, RejectionReason.NOT_OPEN)
    ]


def test_the_badge_type_must_exist() -> None:
    command = register(1, "a@x.org", badge="GOLD")
    assert given_when([CREATED, OPENED], command) == [
        rejected(command, RejectionReason.UNKNOWN_BADGE_TYPE)
    ]


def test_never_more_than_the_quota() -> None:
    history = [CREATED, OPENED, registered(1, "a@x.org"), registered(2, "b@x.org")]
    command = register(3, "c@x.org")
    assert given_when(history, command) == [rejected(command, RejectionReason.SOLD_OUT)]


def test_quotas_are_per_badge_type() -> None:
    history = [CREATED, OPENED, registered(1, "a@x.org"), registered(2, "b@x.org")]
    assert given_when(history, register(3, "c@x.org", "VIP")) == [registered(3, "c@x.org", "VIP")]


def test_one_active_registration_per_email_case_insensitively() -> None:
    command = register(2, "  Ada@X.org ")
    assert given_when([CREATED, OPENED, registered(1, "ada@x.org")], command) == [
        rejected(command, RejectionReason.ALREADY_REGISTERED)
    ]


def test_cancelling_frees_the_seat_and_the_email() -> None:
    history = [
        CREATED,
        OPENED,
        registered(1, "a@x.org"),
        registered(2, "b@x.org"),
        RegistrationCancelled(convention_id=CID, registration_id=rid(1), badge_type="STD"),
    ]
    assert given_when(history, register(3, "c@x.org")) == [registered(3, "c@x.org")]
    assert given_when(history, register(4, "a@x.org")) == [registered(4, "a@x.org")]


def test_a_confirmed_registration_can_be_cancelled() -> None:
    command = CancelRegistration(convention_id=CID, registration_id=rid(1))
    assert given_when([CREATED, OPENED, registered(1, "a@x.org")], command) == [
        RegistrationCancelled(convention_id=CID, registration_id=rid(1), badge_type="STD")
    ]


def test_only_confirmed_registrations_can_be_cancelled() -> None:
    command = CancelRegistration(convention_id=CID, registration_id=rid(1))
    cancelled = RegistrationCancelled(convention_id=CID, registration_id=rid(1), badge_type="STD")
    history = [CREATED, OPENED, registered(1, "a@x.org"), cancelled]
    assert given_when(history, command) == [
        CancellationRejected(
            convention_id=CID, registration_id=rid(1), reason=RejectionReason.NOT_CANCELLABLE
        )
    ]
    assert given_when([CREATED, OPENED], command) == [
        CancellationRejected(
            convention_id=CID, registration_id=rid(1), reason=RejectionReason.UNKNOWN_REGISTRATION
        )
    ]


def test_a_decided_registration_is_not_decided_again() -> None:
    assert given_when([CREATED, OPENED, registered(1, "a@x.org")], register(1, "a@x.org")) == []


def test_life_cycle_draft_open_closed() -> None:
    open_ = OpenConvention(convention_id=CID)
    close = CloseConvention(convention_id=CID)
    assert given_when([CREATED], open_) == [OPENED]
    assert given_when([CREATED, OPENED], close) == [ConventionClosed(convention_id=CID)]
    assert given_when([CREATED], close) == [
        ConventionCommandRejected(
            convention_id=CID, command="CloseConvention", reason=RejectionReason.INVALID_TRANSITION
        )
    ]
    assert given_when([CREATED, OPENED, ConventionClosed(convention_id=CID)], open_) == [
        ConventionCommandRejected(
            convention_id=CID, command="OpenConvention", reason=RejectionReason.INVALID_TRANSITION
        )
    ]
    assert given_when([], open_) == [
        ConventionCommandRejected(
            convention_id=CID, command="OpenConvention", reason=RejectionReason.UNKNOWN_CONVENTION
        )
    ]


def test_creating_an_existing_convention_is_a_redelivery() -> None:
    command = CreateConvention(
        convention_id=CID,
        name="FurCon",
        starts_on=date(2027, 1, 1),
        ends_on=date(2027, 1, 3),
        badge_types=BADGES,
        request_hash="h",
    )
    assert given_when([], command) == [CREATED]
    assert given_when([CREATED], command) == []


EMAILS = ["a@x.org", "A@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"]
ACTIONS = st.one_of(
    st.tuples(
        st.just("register"),
        st.integers(0, 40),
        st.sampled_from(EMAILS),
        st.sampled_from(["STD", "VIP", "NOPE"]),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 40), st.just(""), st.just("")),
    st.tuples(st.sampled_from(["open", "close"]), st.just(0), st.just(""), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ACTIONS, max_size=80))
def test_no_command_sequence_oversells_or_double_registers(
    actions: list[tuple[str, int, str, str]],
) -> None:
    book = RegistrationBook()
    book.apply(CREATED)
    for action, n, email, badge in actions:
        command: Command
        if action == "register":
            command = RegisterAttendee(
                convention_id=CID,
                registration_id=rid(n),
                email=email,
                name="x",
                badge_type=badge,
                request_hash="h",
            )
        elif action == "cancel":
            command = CancelRegistration(convention_id=CID, registration_id=rid(n))
        elif action == "open":
            command = OpenConvention(convention_id=CID)
        else:
            command = CloseConvention(convention_id=CID)
        for event in decide(book.situation(command), command):
            book.apply(event)

        convention = book.conventions[CID]
        active = [
            r for r in book.registrations.values() if r.status is RegistrationStatus.CONFIRMED
        ]
        for badge_type in convention.badge_types:
            confirmed = sum(1 for r in active if r.badge_type == badge_type.code)
            assert confirmed == badge_type.confirmed
            assert confirmed <= badge_type.quota
        emails = [r.email_key for r in active]
        assert len(emails) == len(set(emails))
