"""The partner bridge's translation: the partner's own events in, our lodging commands out,
and every record that is not a valid partner event refused with a clear reason."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncConnection

from producers.partner_bridge import (
    MAX_EVENT_BYTES,
    PartnerBridge,
    UnreadablePartnerEvent,
    partner_correlation_id,
    translate,
)
from schemas.envelope import Envelope
from schemas.lodging import ApplyPartnerBlock, ApplyPartnerReservation, Stay, partner_command_id
from schemas.registry import decode_message
from schemas.topics import Topics

CONVENTION = uuid.UUID("0b4f9a36-58a7-4c52-9b0e-5d2f7c1e8a10")
ACK = "HB-ABCD2345"


def reservation(**overrides: Any) -> dict[str, Any]:
    """A reservation as the partner shows it, every field it sends included."""
    return {
        "ack": ACK,
        "convention_id": str(CONVENTION),
        "reference": "3f0c2a7e-9d1b-4e55-8a61-2b7d9c4e1f03",
        "hotel": "GRAND",
        "room_type": "KING",
        "check_in": "2027-05-01",
        "check_out": "2027-05-03",
        "guests": ["Ada Lovelace"],
        "status": "held",
        "total_cents": 39800,
        "created_at": "2027-01-10T09:00:00.000001Z",
        "updated_at": "2027-01-10T09:00:00.000001Z",
        **overrides,
    }


def partner_event(
    event_type: str,
    data: dict[str, Any],
    *,
    ack: str | None = ACK,
    event_id: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "convention_id": str(CONVENTION),
        "sequence": 7,
        "occurred_at": "2027-01-10T09:00:01.5Z",
        "ack": ack,
        "data": data,
        **overrides,
    }


def block(**overrides: Any) -> dict[str, Any]:
    return {
        "hotel": "GRAND",
        "room_type": "DQ",
        "night": "2027-05-02",
        "size": 40,
        "previous_size": 35,
        "booked": 12,
        **overrides,
    }


def rate(**overrides: Any) -> dict[str, Any]:
    return {
        "hotel": "GRAND",
        "room_type": "DQ",
        "night": "2027-05-02",
        "rate_cents": 21900,
        "previous_rate_cents": 19900,
        **overrides,
    }


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def headers_of(body: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [("type", str(body["type"]).encode())]


def bridged(body: dict[str, Any]) -> tuple[Envelope, Any]:
    """The envelope a partner event becomes and its command, decoded as the decider will."""
    envelope = translate(encode(body), headers_of(body))
    decoded, command = decode_message(envelope.encode(), envelope.type)
    assert decoded.message_id == envelope.message_id
    return envelope, command


STAY = Stay(
    room_type="KING",
    check_in=date(2027, 5, 1),
    check_out=date(2027, 5, 3),
    guests=("Ada Lovelace",),
)


@pytest.mark.parametrize(
    ("event_type", "extra", "change", "by"),
    [
        ("reservation.held", {}, "held", "guest"),
        ("reservation.waitlisted", {"status": "waitlisted"}, "waitlisted", "guest"),
        ("reservation.confirmed", {"status": "confirmed", "by": "guest"}, "confirmed", "guest"),
        (
            "reservation.confirmed",
            {"status": "confirmed", "by": "hotel", "from_waitlist": True},
            "confirmed",
            "hotel",
        ),
        ("reservation.cancelled", {"status": "cancelled", "by": "hotel"}, "cancelled", "hotel"),
        ("reservation.cancelled", {"status": "cancelled", "by": "guest"}, "cancelled", "guest"),
    ],
)
def test_reservation_events_become_apply_partner_reservation(
    event_type: str, extra: dict[str, Any], change: str, by: str
) -> None:
    body = partner_event(event_type, reservation(**extra))
    envelope, command = bridged(body)

    assert command == ApplyPartnerReservation(
        convention_id=CONVENTION,
        partner_event_id=body["event_id"],
        sequence=7,
        change=change,
        by=by,
        ack=ACK,
        reference="3f0c2a7e-9d1b-4e55-8a61-2b7d9c4e1f03",
        hotel="GRAND",
        stay=STAY,
        total_cents=39800,
    )
    assert envelope.type == "ApplyPartnerReservation"


def test_a_modification_carries_the_new_stay() -> None:
    previous = {
        "room_type": "KING",
        "check_in": "2027-05-01",
        "check_out": "2027-05-03",
        "guests": ["Ada Lovelace"],
    }
    body = partner_event(
        "reservation.modified",
        reservation(
            room_type="DQ",
            check_out="2027-05-04",
            guests=["Ada Lovelace", "Charles Babbage"],
            total_cents=59700,
            status="confirmed",
            by="hotel",
            previous=previous,
        ),
    )
    _, command = bridged(body)

    assert command.change == "modified"
    assert command.by == "hotel"
    assert command.total_cents == 59700
    assert command.stay == Stay(
        room_type="DQ",
        check_in=date(2027, 5, 1),
        check_out=date(2027, 5, 4),
        guests=("Ada Lovelace", "Charles Babbage"),
    )


def test_a_block_change_becomes_apply_partner_block_with_its_size() -> None:
    body = partner_event("block.changed", block(), ack=None, sequence=12)
    _, command = bridged(body)

    assert command == ApplyPartnerBlock(
        convention_id=CONVENTION,
        partner_event_id=body["event_id"],
        sequence=12,
        hotel="GRAND",
        room_type="DQ",
        night=date(2027, 5, 2),
        size=40,
    )


def test_a_rate_change_becomes_apply_partner_block_with_its_rate() -> None:
    body = partner_event("rate.changed", rate(), ack=None, sequence=13)
    _, command = bridged(body)

    assert command == ApplyPartnerBlock(
        convention_id=CONVENTION,
        partner_event_id=body["event_id"],
        sequence=13,
        hotel="GRAND",
        room_type="DQ",
        night=date(2027, 5, 2),
        rate_cents=21900,
    )


def test_the_envelope_derives_from_the_partner_event() -> None:
    body = partner_event("reservation.held", reservation())
    envelope = translate(encode(body), headers_of(body))

    assert envelope.message_id == partner_command_id(body["event_id"])
    assert envelope.correlation_id == partner_correlation_id(body["event_id"])
    assert envelope.correlation_id != envelope.message_id
    assert envelope.causation_id is None
    assert envelope.occurred_at == datetime(2027, 1, 10, 9, 0, 1, 500000, tzinfo=UTC)
    assert envelope.key == str(CONVENTION)
    assert envelope.actor == "partner"
    assert dict(envelope.headers())["type"] == b"ApplyPartnerReservation"


def test_a_repeated_partner_event_is_the_same_message() -> None:
    body = partner_event("reservation.confirmed", reservation(status="confirmed", by="guest"))
    first = translate(encode(body), headers_of(body))
    again = translate(encode(body), headers_of(body))
    other = translate(encode({**body, "event_id": str(uuid.uuid4())}), headers_of(body))

    assert again.message_id == first.message_id
    assert again.encode() == first.encode()
    assert other.message_id != first.message_id


def test_fields_the_partner_adds_later_are_ignored() -> None:
    body = partner_event(
        "reservation.held",
        reservation(loyalty_tier="gold", notes={"late_arrival": True}),
        region="eu-west",
    )
    _, command = bridged(body)
    assert command.ack == ACK


def test_the_type_header_may_be_missing() -> None:
    body = partner_event("block.changed", block(), ack=None)
    assert translate(encode(body), None).type == "ApplyPartnerBlock"


def held(**data: Any) -> dict[str, Any]:
    return partner_event("reservation.held", reservation(**data))


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


POISON: dict[str, tuple[Callable[[], bytes | None], str]] = {
    "no value": (lambda: None, "no value"),
    "not JSON": (lambda: b"{not json", "not JSON"),
    "not UTF-8": (lambda: b'{"type": "\xff"}', "not JSON"),
    "nested too deep": (lambda: b"[" * 10_000, "not JSON"),
    "a JSON array": (lambda: encode([held()]), "not a partner event"),
    "no type": (lambda: encode(without(held(), "type")), "type"),
    "no event id": (lambda: encode(without(held(), "event_id")), "event_id"),
    "no data": (lambda: encode(without(held(), "data")), "data"),
    "no hotel": (
        lambda: encode(partner_event("reservation.held", without(reservation(), "hotel"))),
        "data.hotel",
    ),
    "no block size": (
        lambda: encode(partner_event("block.changed", without(block(), "size"), ack=None)),
        "data.size",
    ),
    "an unknown type": (
        lambda: encode(partner_event("reservation.teleported", reservation())),
        "unknown partner event type 'reservation.teleported'",
    ),
    "a convention id that is not a UUID": (
        lambda: encode({**held(), "convention_id": "con-2027"}),
        "convention_id",
    ),
    "a sequence as text": (lambda: encode({**held(), "sequence": "7"}), "sequence"),
    "a negative sequence": (lambda: encode({**held(), "sequence": -1}), "sequence"),
    "a huge sequence": (lambda: encode({**held(), "sequence": 10**30}), "sequence"),
    "a time without a zone": (
        lambda: encode({**held(), "occurred_at": "2027-01-10T09:00:01"}),
        "occurred_at",
    ),
    "a header that says another type": (
        lambda: encode(held()),
        "type header 'reservation.cancelled' differs",
    ),
    "an ack that differs from the reservation's": (
        lambda: encode({**held(), "ack": "HB-OTHER234"}),
        "ack",
    ),
    "a control character in a guest name": (
        lambda: encode(held(guests=["Ada\x00Lovelace"])),
        "U+0000",
    ),
    "a bidirectional override in a guest name": (
        lambda: encode(held(guests=["Ada \u202eecalevoL"])),
        "U+202E",
    ),
    "no guests": (lambda: encode(held(guests=[])), "guests"),
    "too many guests": (lambda: encode(held(guests=[f"Guest {i}" for i in range(5)])), "guests"),
    "a huge guest list": (lambda: encode(held(guests=["Ada"] * 10_000)), "guests"),
    "a reference our schema refuses": (lambda: encode(held(reference="r" * 201)), "reference"),
    "a huge total": (lambda: encode(held(total_cents=10**20)), "total_cents"),
    "a negative total": (lambda: encode(held(total_cents=-1)), "total_cents"),
    "a total as a float": (lambda: encode(held(total_cents=398.0)), "total_cents"),
    "a hotel code our schema refuses": (lambda: encode(held(hotel="grand hotel")), "hotel"),
    "a stay ending before it starts": (
        lambda: encode(held(check_in="2027-05-03", check_out="2027-05-01")),
        "check_out must be after check_in",
    ),
    "an unknown actor": (lambda: encode(held(by="robot")), "data.by"),
    "a block size as a boolean": (
        lambda: encode(partner_event("block.changed", block(size=True), ack=None)),
        "data.size",
    ),
    "a huge rate": (
        lambda: encode(partner_event("rate.changed", rate(rate_cents=10**12), ack=None)),
        "rate_cents",
    ),
    "an event id with control characters": (
        lambda: encode({**held(), "event_id": "evt\n1"}),
        "event_id",
    ),
    "a record larger than any partner event": (
        lambda: encode({**held(), "padding": "x" * MAX_EVENT_BYTES}),
        "larger than a partner event can be",
    ),
}


@pytest.mark.parametrize("case", list(POISON))
def test_poison_is_refused_with_a_clear_reason(case: str) -> None:
    make, reason = POISON[case]
    headers = [("type", b"reservation.cancelled")] if "header" in case else None
    with pytest.raises(UnreadablePartnerEvent, match=re.escape(reason)):
        translate(make(), headers)


class RecordingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """The real producer's interface, never started: `send` records and acknowledges."""

    def __init__(self) -> None:
        super().__init__(bootstrap_servers="127.0.0.1:9")
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(
        self, topic: str, *, value: bytes, key: bytes, headers: Any
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


def consumer_record(offset: int, value: bytes, event_type: str) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t.partner.lodging.events",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=str(CONVENTION).encode(),
        value=value,
        checksum=None,
        serialized_key_size=36,
        serialized_value_size=len(value),
        headers=[("type", event_type.encode())],
    )


async def test_a_batch_publishes_its_commands_and_sets_the_poison_aside() -> None:
    topics = Topics("t.")
    producer = RecordingProducer()
    bridge = PartnerBridge(topics, producer)
    good = partner_event("reservation.held", reservation())
    records = [
        consumer_record(0, encode(good), "reservation.held"),
        consumer_record(1, b"\x00garbage", "reservation.held"),
        consumer_record(2, encode(good), "reservation.held"),
        consumer_record(3, encode(partner_event("rate.changed", rate(), ack=None)), "rate.changed"),
    ]

    handled = await bridge.handle(
        cast(AsyncConnection, None), TopicPartition(topics.partner_lodging_events, 0), records
    )

    assert [dead.record.offset for dead in handled.dead_letters] == [1]
    assert isinstance(handled.dead_letters[0].error, UnreadablePartnerEvent)
    assert handled.after_commit is None
    assert [topic for topic, _, _ in producer.sent] == [topics.lodging_commands] * 3
    assert {key for _, key, _ in producer.sent} == {str(CONVENTION).encode()}
    ids = [json.loads(value)["message_id"] for _, _, value in producer.sent]
    assert ids[0] == ids[1] == str(partner_command_id(good["event_id"]))
    assert ids[2] != ids[0]
