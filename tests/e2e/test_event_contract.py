"""The published event contract holds for what the running pipeline publishes: after real
traffic through the gateway, every record of every topic matches a message of its topic's
channel in the AsyncAPI document the gateway serves."""

from __future__ import annotations

from collections import Counter

import pytest

from producers.dead_letters import read_dead_letters
from schemas.asyncapi import asyncapi_document
from schemas.topics import Topics
from tests.contract import Contract
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import fresh_email, sign_up
from tests.e2e.test_catalogue_http import admin_url, new_convention
from tests.support import eventually, produce, read_topic

pytestmark = pytest.mark.e2e

GARBAGE = b"not an envelope"


async def test_every_published_record_matches_the_served_document(stack: Stack) -> None:
    topics = Topics(stack.settings.topic_prefix)
    async with stack.client() as client:
        served = await client.get("/schema/asyncapi.json")
        assert served.status_code == 200, served.text
        assert served.headers["content-type"].startswith("application/json")
        document = served.json()
        assert document == asyncapi_document(stack.settings.topic_prefix)
        assert {c["address"] for c in document["channels"].values()} == set(topics.all())

        convention_id = await new_convention(stack)
        option = await client.post(
            admin_url(convention_id, "options"),
            headers=stack.admin,
            json={"code": "PIN", "name": "Pin", "price_cents": 300, "quota": 5},
        )
        assert option.status_code == 201, option.text
        url = f"/api/v1/conventions/{convention_id}/registrations"
        free = await client.post(
            url, json={"email": fresh_email("free"), "name": "Free", "badge_type": "FREE"}
        )
        assert free.status_code == 201, free.text
        priced = await client.post(
            url,
            json={
                "email": fresh_email("paid"),
                "name": "Paid",
                "badge_type": "STD",
                "options": [{"code": "PIN"}],
            },
        )
        assert priced.status_code == 201, priced.text
        cancelled = await client.delete(f"/api/v1/registrations/{free.json()['registration_id']}")
        assert cancelled.status_code == 200, cancelled.text
    assert (await sign_up(stack, fresh_email("contract"))).status_code == 201
    await produce(stack.settings, topics.registration_commands, [(convention_id, GARBAGE, [])])

    async def set_aside() -> list[bytes]:
        entries = await read_dead_letters(
            stack.settings.kafka_bootstrap_servers, topics.dead_letter
        )
        return [entry.value for entry in entries]

    await eventually(set_aside, lambda values: GARBAGE in values, what="the garbage set aside")

    dead = await read_dead_letters(stack.settings.kafka_bootstrap_servers, topics.dead_letter)
    refused = {(d.source_topic, d.source_partition, d.source_offset) for d in dead}
    contract = Contract(document)
    seen: Counter[str] = Counter()
    problems: list[str] = []
    for topic in topics.all():
        for record in await read_topic(stack.settings, topic):
            if (record.topic, record.partition, record.offset) in refused:
                continue
            name, _ = contract.message_of(topic, record.headers)
            seen[f"{topic.removeprefix(topics.prefix)} {name}"] += 1
            problems += contract.problems(topic, record.key, record.value, record.headers)
    assert problems == []
    published = {kind.split(" ", 1)[1] for kind in seen}
    assert {
        "CreateConvention",
        "ConventionCreated",
        "RegisterAttendee",
        "AttendeeRegistered",
        "OrderPlaced",
        "RegistrationCancelled",
        "DefineOption",
        "OptionDefined",
        "SignUp",
        "AccountCreated",
        "DeadLetter",
    } <= published, seen
