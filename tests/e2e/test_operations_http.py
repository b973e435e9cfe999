"""The operations routes end to end: a record the decider cannot read shows up in the
dead-letter list and goes back to its topic when retried (where the decider sets it aside
again, now marked as replayed); a registration's history comes back from the event archive
in the order its events happened, for admins and the convention's staff only. Other tests'
records share the topics: each test looks only for its own."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from gateway.deps import Gateway
from gateway.operations import read_dead_letter_topic
from gateway.problems import PROBLEM_JSON, Problem
from infra.services import free_port
from schemas.topics import Topics
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import (
    bearer,
    fresh_email,
    problem_type,
    session_token,
    verified_account,
)
from tests.e2e.test_registration_http import create_open_convention
from tests.support import eventually, produce

pytestmark = pytest.mark.e2e

DEAD_LETTERS = "/api/v1/admin/dead-letters"


def history_url(registration_id: str) -> str:
    return f"/api/v1/admin/registrations/{registration_id}/history"


def assert_problem(answer: httpx.Response, status: int, kind: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    if kind is not None:
        assert problem_type(answer) == kind, answer.text


async def test_a_dead_letter_is_listed_and_sent_back_to_its_topic(stack: Stack) -> None:
    topics = Topics(stack.settings.topic_prefix)
    poison = f"not an envelope {uuid.uuid4().hex}"
    key = str(uuid.uuid4())
    await produce(
        stack.settings,
        topics.registration_commands,
        [(key, poison.encode(), [("probe", b"operations")])],
    )

    async with stack.client() as client:

        async def mine(replayed: bool) -> list[dict[str, Any]]:
            answer = await client.get(DEAD_LETTERS, headers=stack.admin, params={"limit": 500})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            assert page["topic"] == topics.dead_letter
            assert len(page["items"]) <= min(500, page["total"])
            return [
                item
                for item in page["items"]
                if item["value"] == poison and ("replayed_from" in item["headers"]) == replayed
            ]

        [item, *_] = await eventually(
            lambda: mine(replayed=False), bool, what="the poison record set aside"
        )
        assert re.fullmatch(r"[0-9]+:[0-9]+", item["id"]), item
        assert datetime.fromisoformat(item["timestamp"]).tzinfo is not None
        assert item["source_topic"] == topics.registration_commands
        assert isinstance(item["source_partition"], int)
        assert isinstance(item["source_offset"], int)
        assert item["consumer_group"]
        assert item["error_class"]
        assert item["error"]
        assert item["key"] == key
        assert item["value_truncated"] is False
        assert item["headers"] == {"probe": "operations"}

        newest = await client.get(DEAD_LETTERS, headers=stack.admin, params={"limit": 1})
        assert newest.status_code == 200, newest.text
        assert len(newest.json()["items"]) == 1

        retried = await client.post(f"{DEAD_LETTERS}/{item['id']}/retry", headers=stack.admin)
        assert retried.status_code == 202, retried.text
        assert retried.json() == {"id": item["id"], "replayed_to": topics.registration_commands}

        [again, *_] = await eventually(
            lambda: mine(replayed=True), bool, what="the retried record set aside again"
        )
        assert again["headers"]["replayed_from"] == f"{topics.dead_letter}:{item['id']}"
        assert again["id"] != item["id"]
        assert again["key"] == key

        for malformed in ("not-an-id", "1:", "-1:5", "1:2:3", "1:99999999999999999999"):
            assert_problem(
                await client.post(f"{DEAD_LETTERS}/{malformed}/retry", headers=stack.admin),
                400,
                "validation-error",
            )
        for unknown in ("0:999999999", "999:0"):
            assert_problem(
                await client.post(f"{DEAD_LETTERS}/{unknown}/retry", headers=stack.admin),
                404,
                "dead-letter-not-found",
            )
        assert_problem(await client.get(DEAD_LETTERS), 401, "unauthorized")
        assert_problem(
            await client.get(DEAD_LETTERS, headers=stack.admin, params={"limit": 0}), 400
        )


async def test_a_silent_broker_is_a_503_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker that takes the connection and never answers."""
    monkeypatch.setattr("gateway.operations.BROKER_SECONDS", 1.0)
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    gateway = cast(
        Gateway, SimpleNamespace(kafka_bootstrap_servers=f"127.0.0.1:{port}", topics=Topics("x."))
    )
    try:
        async with asyncio.timeout(15):
            with pytest.raises(Problem) as refused:
                await read_dead_letter_topic(gateway)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "2"}


async def test_a_registrations_history_for_admins_and_its_staff(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 10)
    (staff_id, staff_email), (_, attendee_email) = await asyncio.gather(
        *(_account(stack, tag) for tag in ("history-staff", "history-attendee"))
    )
    async with stack.client() as client:
        granted = await client.post(
            f"/api/v1/admin/accounts/{staff_id}/roles",
            headers=stack.admin,
            json={"role": "staff", "convention_id": convention_id},
        )
        assert granted.status_code == 200, granted.text
        staff = bearer(await session_token(stack, staff_email))
        attendee = bearer(await session_token(stack, attendee_email))
        made = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": fresh_email("history"), "name": "Ada Lovelace", "badge_type": "STD"},
        )
        assert made.status_code == 201, made.text
        registration_id = str(made.json()["registration_id"])
        cancelled = await client.delete(f"/api/v1/registrations/{registration_id}")
        assert cancelled.status_code == 200, cancelled.text

        async def history() -> dict[str, Any]:
            answer = await client.get(history_url(registration_id), headers=stack.admin)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        body = await eventually(
            history,
            lambda b: "RegistrationCancelled" in [e["type"] for e in b["events"]],
            what="the cancellation in the registration's history",
        )
        assert body["registration_id"] == registration_id
        events = body["events"]
        types = [event["type"] for event in events]
        assert types.index("AttendeeRegistered") < types.index("RegistrationCancelled"), types
        order = [
            (datetime.fromisoformat(e["occurred_at"]), e["topic"], e["partition"], e["offset"])
            for e in events
        ]
        assert order == sorted(order)
        for event in events:
            assert event["payload"]["registration_id"] == registration_id, event
            assert event["topic"] in Topics(stack.settings.topic_prefix).event_topics()
            assert event["version"] >= 1
            assert event["actor"]
            uuid.UUID(event["event_id"])
            uuid.UUID(event["correlation_id"])
        assert len({event["event_id"] for event in events}) == len(events)

        by_staff = await client.get(history_url(registration_id), headers=staff)
        assert by_staff.status_code == 200, by_staff.text
        assert by_staff.json() == body
        assert_problem(await client.get(history_url(registration_id)), 401, "unauthorized")
        refused = await client.get(history_url(registration_id), headers=attendee)
        assert refused.status_code in (403, 404), refused.text
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        assert_problem(
            await client.get(history_url(str(uuid.uuid4())), headers=stack.admin),
            404,
            "registration-not-found",
        )
        assert_problem(await client.get(history_url(str(uuid.uuid4())), headers=staff), 403)


async def _account(stack: Stack, tag: str) -> tuple[str, str]:
    email = fresh_email(tag)
    return await verified_account(stack, email), email
