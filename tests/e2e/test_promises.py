"""What the API promised, checked against how things ended: every answer of a rush against
the registration's final state, a 202 after the decision wait against the decision that
came later, and the correlation id of every kind of answer against what is on Kafka."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from schemas.topics import Topics
from tests.e2e.conftest import Stack
from tests.e2e.test_registration_http import all_registrations, create_open_convention
from tests.support import eventually, read_topic

pytestmark = pytest.mark.e2e

DECIDED = ("confirmed", "rejected", "cancelled")
STACK_DECISION_WAIT = 10.0
"""BUTTERFLY_DECISION_WAIT_SECONDS of the stack's gateway (tests/e2e/conftest.py)."""


@dataclass(frozen=True)
class Sent:
    body: dict[str, str]
    headers: dict[str, str]
    what: str


async def final_registration(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """The registration behind `location` once it is decided."""
    answer = await eventually(
        lambda: client.get(location),
        lambda a: a.status_code == 200 and a.json()["status"] in DECIDED,
        timeout=60,
        interval=0.2,
        what=f"{location} decided",
    )
    return dict(answer.json())


async def badge_counts(stack: Stack, convention_id: str) -> dict[str, int]:
    async with stack.client() as client:
        answer = await client.get(f"/api/v1/conventions/{convention_id}")
    assert answer.status_code == 200, answer.text
    badge = answer.json()["badge_types"][0]
    return {k: int(badge[k]) for k in ("quota", "sold", "remaining")}


async def test_every_answer_of_a_rush_is_how_it_ended(stack: Stack) -> None:
    quota = 20
    convention_id = await create_open_convention(stack, quota)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    sent: list[Sent] = [
        Sent(
            {"email": f"fan{i}@example.org", "name": f"Fan {i}", "badge_type": "STD"},
            {"Idempotency-Key": f"promise-{i}"},
            "new",
        )
        for i in range(130)
    ]
    # The same person again (another spelling of the address), without a key.
    sent += [
        Sent(
            {"email": f"FAN{i}@Example.ORG", "name": f"Fan {i} again", "badge_type": "STD"},
            {},
            "same-email",
        )
        for i in range(0, 30, 3)
    ]
    # Retries of the same key and body, sent in the same rush.
    sent += [Sent(sent[i].body, sent[i].headers, "retry") for i in range(0, 40, 4)]
    assert len(sent) == 150
    order = list(range(len(sent)))
    random.Random(20270601).shuffle(order)

    async with stack.client(limits=httpx.Limits(max_connections=150)) as client:
        answered = await asyncio.wait_for(
            asyncio.gather(
                *(client.post(url, json=sent[i].body, headers=sent[i].headers) for i in order)
            ),
            60,
        )
    answers: dict[int, httpx.Response] = dict(zip(order, answered, strict=True))
    codes = Counter(a.status_code for a in answers.values())
    assert set(codes) <= {201, 409, 202}, {i: a.text for i, a in answers.items()}

    registrations = await eventually(
        lambda: all_registrations(stack, convention_id),
        lambda items: len(items) == 140 and all(r["status"] in DECIDED for r in items),
        timeout=60,
        interval=0.2,
        what="the 140 distinct registrations decided",
    )
    listed = {r["registration_id"]: r for r in registrations}

    async with stack.client(limits=httpx.Limits(max_connections=50)) as client:
        for i, answer in answers.items():
            body = answer.json()
            registration_id = body["registration_id"]
            assert answer.headers["location"] == f"/api/v1/registrations/{registration_id}"
            final = await final_registration(client, f"/api/v1/registrations/{registration_id}")
            assert listed[registration_id]["status"] == final["status"], (i, final)
            assert listed[registration_id]["reason"] == final["reason"], (i, final)
            if answer.status_code == 201:
                assert body["status"] == "confirmed", body
                assert final["status"] == "confirmed", (sent[i], body, final)
                assert final == body, "a 201 answers the registration as it stays"
            elif answer.status_code == 409:
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert body["reason"] in {"sold_out", "already_registered"}, body
                assert (final["status"], final["reason"]) == ("rejected", body["reason"]), (
                    sent[i],
                    body,
                    final,
                )
            else:
                assert body["status"] == "pending", body

    confirmed = [r for r in registrations if r["status"] == "confirmed"]
    assert len(confirmed) == quota
    assert len({r["email"].casefold() for r in confirmed}) == quota
    assert len(await all_registrations(stack, convention_id, status="confirmed")) == quota
    answered_confirmed = {
        a.json()["registration_id"] for a in answers.values() if a.status_code == 201
    }
    pending_answers = {
        a.json()["registration_id"] for a in answers.values() if a.status_code == 202
    }
    assert {r["registration_id"] for r in confirmed} - pending_answers == answered_confirmed, (
        "every confirmed registration was answered 201 (or 202), none was told 409"
    )
    assert await badge_counts(stack, convention_id) == {
        "quota": quota,
        "sold": quota,
        "remaining": 0,
    }

    # Concurrent duplicates of one key and body were answered alike.
    by_key: dict[str, list[httpx.Response]] = {}
    for i, answer in answers.items():
        if key := sent[i].headers.get("Idempotency-Key"):
            by_key.setdefault(key, []).append(answer)
    duplicates = {k: v for k, v in by_key.items() if len(v) == 2}
    assert len(duplicates) == 10
    for key, (one, other) in duplicates.items():
        if 202 not in (one.status_code, other.status_code):
            assert (one.status_code, one.json()) == (other.status_code, other.json()), key

    # A retry after the answer gets that answer again, status and body.
    keyed = {sent[i].headers["Idempotency-Key"]: i for i in answers if sent[i].headers}
    async with stack.client(limits=httpx.Limits(max_connections=50)) as client:
        again = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.post(url, json=sent[i].body, headers=sent[i].headers)
                    for i in keyed.values()
                )
            ),
            60,
        )
    for i, retried in zip(keyed.values(), again, strict=True):
        first = answers[i]
        if first.status_code == 202:
            assert retried.status_code in (201, 409), retried.text
            continue
        assert (retried.status_code, retried.json()) == (first.status_code, first.json()), (
            sent[i],
            first.text,
            retried.text,
        )
        assert retried.headers["location"] == first.headers["location"]
    assert len(await all_registrations(stack, convention_id)) == 140, "retries made nothing new"
    assert (await badge_counts(stack, convention_id))["sold"] == quota


async def test_an_answer_that_outlasts_the_wait_is_202_and_the_decision_follows(
    stack: Stack,
) -> None:
    quota = 2
    convention_id = await create_open_convention(stack, quota)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    decider = stack.supervisor.pids["decider.registration"]
    slow_body = {"email": "slow@example.org", "name": "Slow", "badge_type": "STD"}
    async with stack.client() as client:
        early = await client.post(
            url, json={"email": "early@example.org", "name": "Early", "badge_type": "STD"}
        )
        assert early.status_code == 201, early.text

        os.kill(decider, signal.SIGSTOP)
        try:
            started = time.monotonic()
            waited = await client.post(url, json=slow_body, headers={"Idempotency-Key": "slow-1"})
            took = time.monotonic() - started
            at_once = await client.post(
                url,
                json={"email": "late@example.org", "name": "Late", "badge_type": "STD"},
                headers={"Prefer": "respond-async"},
            )
        finally:
            os.kill(decider, signal.SIGCONT)

        assert waited.status_code == 202, waited.text
        assert took >= STACK_DECISION_WAIT - 0.5, f"answered after {took:.1f} s, before the wait"
        pending = waited.json()
        assert pending["status"] == "pending"
        location = waited.headers["location"]
        assert location == (
            f"/api/v1/registrations/{pending['registration_id']}?command_id={pending['command_id']}"
        )
        assert at_once.status_code == 202, at_once.text
        assert at_once.headers["location"] == (
            f"/api/v1/registrations/{at_once.json()['registration_id']}"
        )

        slow = await final_registration(client, location)
        late = await final_registration(client, at_once.headers["location"])
        # One convention's commands are decided in the order they were sent.
        assert (slow["status"], slow["reason"]) == ("confirmed", None), slow
        assert (late["status"], late["reason"]) == ("rejected", "sold_out"), late
        assert slow["registration_id"] == pending["registration_id"]

        again = await client.post(url, json=slow_body, headers={"Idempotency-Key": "slow-1"})
        assert again.status_code == 201, again.text
        assert again.json() == slow

    confirmed = await all_registrations(stack, convention_id, status="confirmed")
    assert sorted(r["email"] for r in confirmed) == ["early@example.org", "slow@example.org"]
    assert await badge_counts(stack, convention_id) == {"quota": 2, "sold": 2, "remaining": 0}


def envelopes_about(
    records: list[Any], registration_id: str
) -> list[tuple[dict[str, bytes], dict[str, Any]]]:
    found = []
    for record in records:
        try:
            envelope = json.loads(record.value)
        except ValueError:
            continue
        if envelope.get("payload", {}).get("registration_id") == registration_id:
            found.append((dict(record.headers), envelope))
    return found


async def test_every_answer_carries_the_correlation_id_it_was_sent(stack: Stack) -> None:
    """201, 409, 404, 400, 422 and 401 answers send the caller's X-Correlation-ID back; the
    201 and the 409 also put it on their commands and events. (503 from load shedding cannot
    be caused on the shared stack without starving the other tests; the gateway's unit tests
    cover it through `create_app`.)"""
    convention_id = await create_open_convention(stack, 1)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    topics = Topics(stack.settings.topic_prefix)
    ids: dict[str, str] = {}

    def tagged(what: str) -> dict[str, str]:
        ids[what] = str(uuid.uuid4())
        return {"X-Correlation-ID": ids[what]}

    async with stack.client() as client:
        answers = {
            "201": await client.post(
                url,
                headers=tagged("201"),
                json={"email": "corr@example.org", "name": "Corr", "badge_type": "STD"},
            ),
            "409": await client.post(
                url,
                headers=tagged("409"),
                json={"email": "other@example.org", "name": "Other", "badge_type": "STD"},
            ),
            "404 convention": await client.post(
                f"/api/v1/conventions/{uuid.uuid4()}/registrations",
                headers=tagged("404 convention"),
                json={"email": "nobody@example.org", "name": "Nobody", "badge_type": "STD"},
            ),
            "404 registration": await client.get(
                f"/api/v1/registrations/{uuid.uuid4()}", headers=tagged("404 registration")
            ),
            "404 route": await client.get("/api/v1/nowhere", headers=tagged("404 route")),
            "400 not json": await client.post(
                url,
                headers={**tagged("400 not json"), "content-type": "application/json"},
                content=b"{not json",
            ),
            "422": await client.post(
                url,
                headers=tagged("422"),
                json={"email": "not an address", "name": "Bad", "badge_type": "STD"},
            ),
            "401": await client.get("/api/v1/admin/conventions", headers=tagged("401")),
        }
        untagged = await client.get(f"/api/v1/registrations/{uuid.uuid4()}")

    statuses = {what: answer.status_code for what, answer in answers.items()}
    assert statuses == {
        "201": 201,
        "409": 409,
        "404 convention": 404,
        "404 registration": 404,
        "404 route": 404,
        "400 not json": 400,
        "422": 422,
        "401": 401,
    }, {what: answer.text for what, answer in answers.items()}
    returned = {what: answer.headers.get("x-correlation-id") for what, answer in answers.items()}
    assert returned == ids
    generated = untagged.headers.get("x-correlation-id")
    assert generated is not None
    assert str(uuid.UUID(generated)) not in ids.values()

    for what, status in (("201", "AttendeeRegistered"), ("409", "RegistrationRejected")):
        registration_id = answers[what].json()["registration_id"]
        correlation = ids[what]
        commands = envelopes_about(
            await read_topic(stack.settings, topics.registration_commands), registration_id
        )
        events = await eventually(
            functools.partial(_events_about, stack, topics, registration_id),
            lambda found: len(found) >= 1,
            what=f"the event of the {what} registration",
        )
        assert [e["type"] for _, e in commands] == ["RegisterAttendee"], commands
        assert {e["type"] for _, e in events} == {status}, events
        for headers, envelope in commands + events:
            assert headers["correlation_id"] == correlation.encode(), (what, headers)
            assert envelope["correlation_id"] == correlation, (what, envelope)


async def _events_about(
    stack: Stack, topics: Topics, registration_id: str
) -> list[tuple[dict[str, bytes], dict[str, Any]]]:
    return envelopes_about(
        await read_topic(stack.settings, topics.registration_events), registration_id
    )


async def test_what_a_client_is_answered_it_reads_back_at_once(stack: Stack) -> None:
    """Decisions are answered from the event stream; the answer waits until the website
    projector has applied it, so the very next read shows it: the registration's status and
    reason, and the convention's seat counts."""
    quota = 12
    convention_id = await create_open_convention(stack, quota)
    url = f"/api/v1/conventions/{convention_id}/registrations"

    async def register_then_read(client: httpx.AsyncClient, i: int) -> tuple[int, dict[str, Any]]:
        body = {"email": f"reader{i}@example.org", "name": f"Reader {i}", "badge_type": "STD"}
        answer = await client.post(url, json=body)
        assert answer.status_code in (201, 409), answer.text
        read = await client.get(answer.headers["location"])
        assert read.status_code == 200, read.text
        return answer.status_code, dict(read.json())

    async with stack.client(limits=httpx.Limits(max_connections=40)) as client:
        results = await asyncio.gather(*(register_then_read(client, i) for i in range(40)))
    for status, read in results:
        expected = ("confirmed", None) if status == 201 else ("rejected", "sold_out")
        assert (read["status"], read["reason"]) == expected, read
    assert Counter(status for status, _ in results) == {201: quota, 409: 40 - quota}
    counts = await badge_counts(stack, convention_id)
    assert counts == {"quota": quota, "sold": quota, "remaining": 0}
