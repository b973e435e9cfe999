"""The gateway's decision stream reads records anyone with access to the topics can write:
none of them may stop it or answer a request it does not belong to."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka.structs import ConsumerRecord

from gateway.waiting import DecisionStream, Ticket, _Waiting
from schemas.envelope import HEADER_CONSUMER_GROUP, HEADER_SOURCE_TOPIC

WAITED = "6b1d5a1e-7d2c-4a55-9d0c-4f1e2d3c4b5a"


def record(
    topic: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=headers or [],
    )


HOSTILE = [
    b"not json",
    b"\xff\xfe",
    b"[1, 2, 3]",
    json.dumps({"causation_id": [WAITED]}).encode(),
    json.dumps({"causation_id": {"id": WAITED}}).encode(),
    json.dumps({"message_id": [WAITED]}).encode(),
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"causation_id": WAITED, "type": "AttendeeRegistered", "payload": {}}).encode(),
]


@pytest.mark.parametrize("value", HOSTILE)
async def test_a_hostile_record_is_passed_over(value: bytes) -> None:
    stream = DecisionStream(
        "127.0.0.1:1",
        events_topic="events",
        dead_letter_topic="dead",
        commands_topic="commands",
        decider_group="decider",
    )
    waiting = _Waiting()
    waiting.add(Ticket(WAITED, asyncio.get_running_loop().create_future(), 0.0))
    set_aside = [(HEADER_CONSUMER_GROUP, b"decider"), (HEADER_SOURCE_TOPIC, b"commands")]
    stream._answer(record("events", value), waiting)
    stream._answer(record("dead", value, set_aside), waiting)
    assert not waiting.decided
    assert WAITED in waiting.tickets
