"""The partner bridge on a real broker and MariaDB: the partner's own events in, our lodging
commands out, repeats as the same message, poison set aside while the bridge moves on."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from consumers.registration import tables as write_tables
from infra.bootstrap import BRIDGE, build_bridge, group_name
from infra.services import free_port
from infra.settings import Settings
from infra.simulators.lodging import store
from producers.dead_letters import read_dead_letters
from schemas.lodging import ApplyPartnerBlock, ApplyPartnerReservation, partner_command_id
from schemas.registration import Message
from schemas.registry import decode_message
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.integration.test_partner_sim import (
    FROM,
    NO_FAULTS,
    Sim,
    events_of,
    hold,
    hold_body,
    new_convention,
)
from tests.support import engine_for, eventually, produce, read_topic, running

pytestmark = pytest.mark.integration


def bridge_group(settings: Settings) -> str:
    return group_name(settings, BRIDGE)


def partner_event(convention_id: uuid.UUID, sequence: int, event_type: str) -> dict[str, Any]:
    """An event in the partner's format, as its simulator writes it."""
    ack = "HB-ABCD2345"
    if event_type.startswith("reservation."):
        data: dict[str, Any] = {
            "ack": ack,
            "convention_id": str(convention_id),
            "reference": str(uuid.uuid4()),
            "hotel": "GRAND",
            "room_type": "KING",
            "check_in": "2027-05-01",
            "check_out": "2027-05-03",
            "guests": ["Ada Lovelace"],
            "status": event_type.removeprefix("reservation."),
            "total_cents": 39800,
            "created_at": "2027-01-10T09:00:00.000001Z",
            "updated_at": "2027-01-10T09:00:00.000001Z",
        }
    else:
        data = {"hotel": "GRAND", "room_type": "DQ", "night": "2027-05-02", "rate_cents": 21900}
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "convention_id": str(convention_id),
        "sequence": sequence,
        "occurred_at": "2027-01-10T09:00:01Z",
        "ack": ack if event_type.startswith("reservation.") else None,
        "data": data,
    }


def partner_record(body: dict[str, Any]) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    return (
        body["convention_id"],
        json.dumps(body).encode(),
        [("type", body["type"].encode())],
    )


def summary(message: Message) -> tuple[object, ...]:
    """What a bridged command says, in short."""
    if isinstance(message, ApplyPartnerReservation):
        return (message.change, message.by, message.sequence)
    assert isinstance(message, ApplyPartnerBlock)
    return ("block", message.size, message.rate_cents, message.sequence)


async def stored_offsets(settings: Settings) -> int:
    """How far the bridge's group has got, over every partition of the partner topic."""
    positions = write_tables.consumer_positions
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        total = (
            await conn.execute(
                select(func.coalesce(func.sum(positions.c.next_offset), 0)).where(
                    positions.c.group_name == bridge_group(settings),
                    positions.c.topic == Topics(settings.topic_prefix).partner_lodging_events,
                )
            )
        ).scalar_one()
    return int(total)


async def test_partner_events_become_lodging_commands_and_poison_is_set_aside(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = uuid.uuid4()
    held = partner_event(convention_id, 1, "reservation.held")
    confirmed = partner_event(convention_id, 2, "reservation.confirmed")
    repriced = partner_event(convention_id, 3, "rate.changed")
    after_poison = partner_event(convention_id, 4, "reservation.cancelled")
    key = str(convention_id)
    records = [
        partner_record(held),
        partner_record(confirmed),
        partner_record(held),
        (key, b"\x00 not a partner event", [("type", b"reservation.held")]),
        partner_record({**repriced, "type": "room.teleported"}),
        partner_record(repriced),
        partner_record(after_poison),
    ]
    await produce(settings, topics.partner_lodging_events, records)

    async with running(build_bridge(settings)):
        await eventually(
            lambda: stored_offsets(settings),
            lambda offset: offset == len(records),
            what="the bridge past every partner record",
        )

    commands = await eventually(
        lambda: read_topic(settings, topics.lodging_commands),
        lambda found: len(found) >= 5,
        what="five lodging commands",
    )
    assert len(commands) == 5
    assert {record.key for record in commands} == {key.encode()}
    decoded = [decode_message(r.value, dict(r.headers)["type"].decode()) for r in commands]
    ids = [envelope.message_id for envelope, _ in decoded]
    assert ids == [
        partner_command_id(held["event_id"]),
        partner_command_id(confirmed["event_id"]),
        partner_command_id(held["event_id"]),
        partner_command_id(repriced["event_id"]),
        partner_command_id(after_poison["event_id"]),
    ]
    assert commands[0].value == commands[2].value
    assert [summary(message) for _, message in decoded] == [
        ("held", "guest", 1),
        ("confirmed", "guest", 2),
        ("held", "guest", 1),
        ("block", None, 21900, 3),
        ("cancelled", "guest", 4),
    ]
    assert {envelope.actor for envelope, _ in decoded} == {"partner"}

    letters = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)
    assert [(letter.source_topic, letter.source_offset) for letter in letters] == [
        (topics.partner_lodging_events, 3),
        (topics.partner_lodging_events, 4),
    ]
    assert {letter.consumer_group for letter in letters} == {bridge_group(settings)}
    assert {letter.error_class for letter in letters} == {"UnreadablePartnerEvent"}
    assert letters[0].error is not None
    assert letters[0].error.startswith("not JSON")
    assert letters[1].error is not None
    assert "unknown partner event type 'room.teleported'" in letters[1].error


async def test_the_simulators_own_events_are_bridged_with_repeats_as_the_same_message(
    make_settings: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    sim = Sim(settings, free_port(), tmp_path_factory.mktemp("bridge-partner"))
    try:
        await sim.start()
        async with sim.client() as client:
            answer = await client.post(
                "/partner/admin/faults", json={**NO_FAULTS, "duplicate_rate": 1.0}
            )
            assert answer.status_code == 200, answer.text
            convention_id, hotel = await new_convention(client)
            held = await hold(client, hold_body(convention_id, hotel))
            assert held.status_code == 201, held.text
            ack = held.json()["ack"]
            confirmed = await client.post(f"/partner/v1/reservations/{ack}/confirm")
            assert confirmed.status_code == 200, confirmed.text
            changed = await client.post(
                "/partner/admin/hotel-actions",
                json={
                    "action": "change_block",
                    "convention_id": convention_id,
                    "hotel": hotel,
                    "room_type": "KING",
                    "night": FROM.isoformat(),
                    # past the seeded sizes (10 to 50), so the size always changes
                    "size": 60,
                    "rate_cents": 12345,
                },
            )
            assert changed.status_code == 200, changed.text
            cancelled = await client.post(
                "/partner/admin/hotel-actions", json={"action": "cancel", "ack": ack}
            )
            assert cancelled.status_code == 200, cancelled.text
        published = await eventually(
            lambda: events_of(sim, convention_id),
            lambda found: len(found) >= 10,
            timeout=90,
            what="five partner events, each published twice",
        )
    finally:
        try:
            await sim.stop()
        finally:
            await store.drop_store(settings)

    async with running(build_bridge(settings)):
        await eventually(
            lambda: stored_offsets(settings),
            lambda offset: offset == len(published),
            what="the bridge past every partner record",
        )
    commands = await eventually(
        lambda: read_topic(settings, topics.lodging_commands),
        lambda found: len(found) >= len(published),
        what="a lodging command for every partner record",
    )
    mine = sorted((r for r in commands if r.key == convention_id.encode()), key=lambda r: r.offset)
    decoded = [decode_message(r.value, dict(r.headers)["type"].decode()) for r in mine]
    assert [envelope.message_id for envelope, _ in decoded] == [
        partner_command_id(event["event_id"]) for event in published
    ]
    assert Counter(envelope.message_id for envelope, _ in decoded) == Counter(
        {partner_command_id(event["event_id"]): 2 for event in published}
    )
    once = [summary(message) for _, message in decoded[::2]]
    assert [said[:-1] for said in once] == [
        ("held", "guest"),
        ("confirmed", "guest"),
        ("block", 60, None),
        ("block", None, 12345),
        ("cancelled", "hotel"),
    ]
    assert [said[-1] for said in once] == [event["sequence"] for event in published[::2]]
    assert await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter) == []
