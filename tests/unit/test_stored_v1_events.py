"""Events stored before registrations were orders (schema version 1) still replay: they
decode through the upcasters, and fold into the decider's state and the website read model
as they did when they were written."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from consumers.registration.book import RegistrationBook
from projections.website.projector import ReadModelImage
from schemas.envelope import Envelope
from schemas.registration import Event
from schemas.registry import MESSAGE_TYPES, UPCASTERS, decode_message

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "registration_events_v1.jsonl"


def stored_events() -> list[tuple[Envelope, Event]]:
    events = []
    for line in FIXTURE.read_bytes().splitlines():
        envelope, message = decode_message(line, json.loads(line)["type"])
        assert isinstance(message, Event)
        events.append((envelope, message))
    return events


def test_the_fixture_is_version_1_of_every_upcast_event_it_holds() -> None:
    raw = [json.loads(line) for line in FIXTURE.read_bytes().splitlines()]
    assert {r["schema_version"] for r in raw} == {1}
    upcast = {r["type"] for r in raw if MESSAGE_TYPES[r["type"]].schema_version > 1}
    assert upcast == {name for name, _ in UPCASTERS if issubclass(MESSAGE_TYPES[name], Event)}


def test_v1_events_decode_to_the_current_version() -> None:
    events = stored_events()
    assert [e.schema_version for e, _ in events] == [1] * len(events)
    created = events[0][1]
    assert created.message_type == "ConventionCreated"
    assert created.policy.currency == "EUR"  # type: ignore[attr-defined]
    registered = [m for _, m in events if m.message_type == "AttendeeRegistered"]
    assert [m.order for m in registered] == [None] * 4  # type: ignore[attr-defined]
    cancelled = next(m for _, m in events if m.message_type == "RegistrationCancelled")
    assert cancelled.options_released == ()  # type: ignore[attr-defined]


def test_v1_events_fold_into_the_deciders_state() -> None:
    book = RegistrationBook()
    for _, event in stored_events():
        book.apply(event)
    [convention] = book.conventions.values()
    assert convention.status == "open"
    assert {b.code: (b.quota, b.taken) for b in convention.badge_types} == {
        "STD": (2, 2),
        "VIP": (1, 1),
    }
    statuses = Counter(r.status for r in book.registrations.values())
    assert statuses == {"confirmed": 3, "rejected": 2, "cancelled": 1}
    holders = {email for (_, email) in book.holders}
    assert holders == {"alice@example.org", "carol@example.org", "dave@example.org"}


def test_v1_events_rebuild_the_website_read_model() -> None:
    image = ReadModelImage()
    image.fold_events(stored_events())
    assert image.set_aside == 0
    assert len(image.applied_events) == 9
    [convention] = image.conventions.values()
    assert convention["status"] == "open"
    assert {b["code"]: (b["quota"], b["sold"]) for b in image.badge_types.values()} == {
        "STD": (2, 2),
        "VIP": (1, 1),
    }
    rows = sorted((r["email"], r["status"], r["reason"]) for r in image.registrations.values())
    assert rows == [
        ("alice@example.org", "confirmed", None),
        ("alice@example.org", "rejected", "already_registered"),
        ("bob@example.org", "cancelled", None),
        ("carol@example.org", "confirmed", None),
        ("carol@example.org", "rejected", "sold_out"),
        ("dave@example.org", "confirmed", None),
    ]
