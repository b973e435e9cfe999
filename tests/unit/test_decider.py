"""The registration rules as pure functions: given events, when a command, then events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.registration.book import RegistrationBook
from consumers.registration.decider import decide
from consumers.registration.state import (
    Convention,
    ConventionStatus,
    Registration,
    RegistrationStatus,
    Situation,
)
from schemas.catalogue import OrderLine
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
    OrderTerms,
    RegisterAttendee,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationRequestRefused,
    RejectionReason,
    TransferRegistration,
)

CID = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
BADGES = (
    BadgeTypeSpec(code="STD", name="Standard", price_cents=0, quota=2),
    BadgeTypeSpec(code="VIP", name="Sponsor", price_cents=0, quota=1),
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
    """A free seat, confirmed at once, with the order that records it."""
    name = {"STD": "Standard", "VIP": "Sponsor"}[badge]
    seat = OrderLine(
        kind="badge", code=badge, name=name, quantity=1, unit_price_cents=0, total_cents=0
    )
    return AttendeeRegistered(
        convention_id=CID,
        registration_id=rid(n),
        email=email,
        name=f"Attendee {n}",
        badge_type=badge,
        request_hash=f"h{n}",
        order=OrderTerms(
            order_id=rid(n), lines=(seat,), subtotal_cents=0, total_cents=0, currency="EUR"
        ),
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
            assert confirmed == badge_type.taken
            assert confirmed <= badge_type.quota
        emails = [r.email_key for r in active]
        assert len(emails) == len(set(emails))


def refused(command: RegisterAttendee) -> RegistrationRequestRefused:
    return RegistrationRequestRefused(
        convention_id=command.convention_id,
        registration_id=command.registration_id,
        request_hash=command.request_hash,
        reason=RejectionReason.IDEMPOTENCY_KEY_REUSED,
    )


def test_a_reused_idempotency_key_with_another_request_is_refused() -> None:
    history = [CREATED, OPENED, registered(1, "a@x.org")]
    other = RegisterAttendee(
        convention_id=CID,
        registration_id=rid(1),
        email="b@x.org",
        name="Someone else",
        badge_type="STD",
        request_hash="another-request",
    )
    assert given_when(history, other) == [refused(other)]


def test_a_refused_reuse_leaves_the_registration_as_the_first_request_made_it() -> None:
    book = RegistrationBook()
    for event in [CREATED, OPENED, registered(1, "a@x.org")]:
        book.apply(event)
    before = book.registrations[rid(1)]
    convention_before = book.conventions[CID]
    other = RegisterAttendee(
        convention_id=CID,
        registration_id=rid(1),
        email="b@x.org",
        name="Someone else",
        badge_type="VIP",
        request_hash="another-request",
    )
    events = decide(book.situation(other), other)
    assert events == [refused(other)]
    for event in events:
        book.apply(event)
    assert book.registrations[rid(1)] == before
    assert book.registrations[rid(1)].request_hash == "h1"
    assert book.conventions[CID] == convention_before
    assert set(book.holders) == {(CID, "a@x.org")}


def test_a_reused_key_is_refused_whatever_the_first_decision_was() -> None:
    first = register(1, "a@x.org", badge="GOLD")
    history = [CREATED, OPENED, rejected(first, RejectionReason.UNKNOWN_BADGE_TYPE)]
    other = register(1, "a@x.org").model_copy(update={"request_hash": "another-request"})
    assert given_when(history, other) == [refused(other)]


def test_the_same_request_under_the_same_key_is_not_decided_again() -> None:
    history = [CREATED, OPENED, registered(1, "a@x.org")]
    assert given_when(history, register(1, "a@x.org")) == []
    first = register(2, "b@x.org", badge="GOLD")
    history.append(rejected(first, RejectionReason.UNKNOWN_BADGE_TYPE))
    assert given_when(history, first) == []


CID2 = uuid.UUID("00000000-0000-0000-0000-0000000000c2")


def test_a_cancellation_naming_another_conventions_registration_is_unknown() -> None:
    other_created = CREATED.model_copy(update={"convention_id": CID2, "name": "OtherCon"})
    other_registered = registered(1, "a@x.org").model_copy(update={"convention_id": CID2})
    history = [CREATED, OPENED, other_created, ConventionOpened(convention_id=CID2)]
    history.append(other_registered)
    command = CancelRegistration(convention_id=CID, registration_id=rid(1))
    assert given_when(history, command) == [
        CancellationRejected(
            convention_id=CID, registration_id=rid(1), reason=RejectionReason.UNKNOWN_REGISTRATION
        )
    ]
    own = CancelRegistration(convention_id=CID2, registration_id=rid(1))
    assert given_when(history, own) == [
        RegistrationCancelled(convention_id=CID2, registration_id=rid(1), badge_type="STD")
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("jose@x.org", "JOSE@X.ORG"),
        ("jose@x.org", "\uff4a\uff4f\uff53\uff45@x.org"),  # full-width
        ("jos\u00e9@x.org", "jose\u0301@x.org"),  # é == e + combining acute
        ("strasse@x.org", "stra\u00dfe@x.org"),
        ("fi@x.org", "\ufb01@x.org"),
        ("a@b\u00fccher.example", "a@xn--bcher-kva.example"),
        ("a@xn--bcher-kva.example", "a@B\u00dcCHER.example"),
    ],
)
def test_addresses_that_normalise_alike_are_one_person(first: str, second: str) -> None:
    command = register(2, second)
    assert given_when([CREATED, OPENED, registered(1, first)], command) == [
        rejected(command, RejectionReason.ALREADY_REGISTERED)
    ]


def test_addresses_that_normalise_alike_conflict_within_one_batch() -> None:
    book = RegistrationBook()
    for event in [CREATED, OPENED]:
        book.apply(event)
    decisions = []
    for command in [register(1, "jose\u0301@x.org"), register(2, "JOS\u00c9@x.org")]:
        events = decide(book.situation(command), command)
        for event in events:
            book.apply(event)
        decisions.append(events)
    assert decisions[0] == [registered(1, "jose\u0301@x.org")]
    assert decisions[1] == [
        rejected(register(2, "JOS\u00c9@x.org"), RejectionReason.ALREADY_REGISTERED)
    ]


def test_addresses_that_differ_by_an_accent_are_two_people() -> None:
    history = [CREATED, OPENED, registered(1, "jose@x.org")]
    assert given_when(history, register(2, "jos\u00e9@x.org")) == [registered(2, "jos\u00e9@x.org")]
    book = RegistrationBook()
    for event in [*history, registered(2, "jos\u00e9@x.org")]:
        book.apply(event)
    assert book.conventions[CID].badge("STD").taken == 2  # type: ignore[union-attr]


def test_a_transfer_moves_the_seat_to_the_new_holder_and_keeps_the_quota() -> None:
    convention_id, registration_id = uuid.uuid4(), uuid.uuid4()
    convention = Convention(convention_id, "Con", ConventionStatus.OPEN, (), "h")
    held = Registration(
        registration_id, convention_id, "a@example.org", "GA", RegistrationStatus.CONFIRMED, "h"
    )
    transfer = TransferRegistration(
        convention_id=convention_id,
        registration_id=registration_id,
        to_account_id=uuid.uuid4(),
        email="b@example.org",
        name="Bea",
    )
    [moved] = decide(Situation(convention, held, None), transfer)
    assert moved.message_type == "RegistrationTransferred"
    other = Registration(
        uuid.uuid4(), convention_id, "b@example.org", "GA", RegistrationStatus.CONFIRMED, "h"
    )
    [refused] = decide(Situation(convention, held, other), transfer)
    assert refused.message_type == "TransferRejected"
    assert refused.reason == "already_registered"  # type: ignore[attr-defined]
    cancelled = Registration(
        registration_id, convention_id, "a@example.org", "GA", RegistrationStatus.CANCELLED, "h"
    )
    [refused] = decide(Situation(convention, cancelled, None), transfer)
    assert refused.reason == "not_transferable"  # type: ignore[attr-defined]
