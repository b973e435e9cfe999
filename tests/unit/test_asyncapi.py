"""The AsyncAPI document: committed as generated, complete, and strict enough to tell a
message that keeps the contract from one that does not."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from producers.partner_bridge import TRANSLATORS
from schemas.accounts import ACCOUNT_TYPES, SignUp, account_envelope
from schemas.asyncapi import DOCUMENT_PATH, asyncapi_document, render
from schemas.envelope import Envelope
from schemas.partner import DATA_OF
from schemas.registration import ConventionOpened
from schemas.registry import MESSAGE_TYPES, wrap
from schemas.topics import Topics
from tests.contract import Contract

PREFIX = "test.contract."
TOPICS = Topics(PREFIX)
CONVENTION = uuid.UUID("6c4a0c1e-8a57-4c7b-9f0e-2d3b4a5c6d7e")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(PREFIX)


@pytest.fixture(scope="module")
def contract(document: dict[str, Any]) -> Contract:
    return Contract(document)


def test_the_committed_document_is_the_generated_one() -> None:
    """`python -m schemas.asyncapi` (or `make asyncapi`) rewrites it after a schema change."""
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == render(asyncapi_document())


def test_every_topic_is_a_channel_and_every_message_type_a_message(
    document: dict[str, Any],
) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert sorted(c["address"] for c in document["channels"].values()) == sorted(TOPICS.all())
    messages = document["components"]["messages"]
    assert set(MESSAGE_TYPES) | set(ACCOUNT_TYPES) | {"DeadLetter"} <= set(messages)
    for name, cls in {**MESSAGE_TYPES, **ACCOUNT_TYPES}.items():
        assert messages[name]["x-schema-version"] == cls.schema_version
    assert messages["AttendeeRegistered"]["x-upcast-from-versions"] == [1]


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


def envelope_record(envelope: Envelope) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return envelope.key.encode(), envelope.encode(), envelope.headers()


def opened() -> Envelope:
    return wrap(
        ConventionOpened(convention_id=CONVENTION),
        message_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        key=str(CONVENTION),
        actor="admin",
    )


def test_a_message_as_the_pipeline_writes_it_matches(contract: Contract) -> None:
    assert contract.problems(TOPICS.registration_events, *envelope_record(opened())) == []
    sign_up = account_envelope(
        SignUp(
            account_id=uuid.uuid4(),
            email="ada@example.org",
            name="Ada",
            password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ",
            verification_token="a" * 32,
        ),
        message_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        email_key="ada@example.org",
        actor="ada",
    )
    assert contract.problems(TOPICS.account_commands, *envelope_record(sign_up)) == []


def test_a_message_breaking_the_contract_is_told_apart(contract: Contract) -> None:
    key, value, headers = envelope_record(opened())
    body = json.loads(value)
    assert contract.problems(TOPICS.registration_commands, key, value, headers) != []
    assert contract.problems(TOPICS.registration_events, b"not-a-uuid", value, headers) != []
    newer = [(n, b"2" if n == "schema_version" else v) for n, v in headers]
    assert contract.problems(TOPICS.registration_events, key, value, newer) != []
    for broken in (
        {**body, "payload": {**body["payload"], "extra": 1}},
        {**body, "payload": {}},
        {**body, "schema_version": 2},
        {**body, "type": "ConventionClosed"},
        {key: v for key, v in body.items() if key != "actor"},
    ):
        found = contract.problems(
            TOPICS.registration_events, key, json.dumps(broken).encode(), headers
        )
        assert found != [], broken


def test_dead_letters_need_their_headers_and_carry_anything(contract: Contract) -> None:
    dead_letter_headers = [
        ("error", b"not JSON"),
        ("error_class", b"UndecodableMessage"),
        ("source_topic", TOPICS.registration_commands.encode()),
        ("source_partition", b"0"),
        ("source_offset", b"12"),
        ("consumer_group", b"decider"),
    ]
    assert contract.problems(TOPICS.dead_letter, b"k", b"\xff", dead_letter_headers) == []
    assert contract.problems(TOPICS.dead_letter, b"k", b"\xff", dead_letter_headers[:2]) != []


def partner_event(kind: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "convention_id": str(CONVENTION),
            "sequence": 3,
            "occurred_at": "2027-05-01T10:00:00Z",
            "ack": data.get("ack"),
            "data": data,
            "partner_field": "ignored",
        }
    ).encode()


def test_the_partners_feed_in_its_own_format(contract: Contract) -> None:
    night = date(2027, 6, 1).isoformat()
    held = partner_event(
        "reservation.held",
        {
            "ack": "ACK-1",
            "reference": "r-1",
            "hotel": "H",
            "room_type": "KING",
            "check_in": night,
            "check_out": "2027-06-03",
            "guests": ["Ada"],
            "total_cents": 30000,
            "status": "held",
        },
    )
    key = str(CONVENTION).encode()
    topic = TOPICS.partner_lodging_events
    assert contract.problems(topic, key, held, [("type", b"reservation.held")]) == []
    block = partner_event("block.changed", {"hotel": "H", "room_type": "K", "night": night})
    assert contract.problems(topic, key, block, [("type", b"block.changed")]) != []
    assert contract.problems(topic, key, held, [("type", b"reservation.lost")]) != []


def test_the_partner_topic_is_documented_with_every_type_the_bridge_reads() -> None:
    """The bridge and the document read the partner's format from one module
    (`schemas.partner`); every event type the bridge translates has its message."""
    document = asyncapi_document()
    channel = document["channels"]["partnerLodgingEvents"]
    documented = {
        document["components"]["messages"][m.rsplit("/", 1)[-1]]["title"]
        for m in (ref["$ref"] for ref in channel["messages"].values())
    }
    assert documented == set(TRANSLATORS) == set(DATA_OF)
