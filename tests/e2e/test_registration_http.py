"""Registration end to end: HTTP through the gateway, the decider and the projector, each
running as its own process."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from projections.reporting import tables as reporting
from tests.e2e.conftest import Stack
from tests.support import engine_for, eventually

pytestmark = pytest.mark.e2e


async def create_open_convention(stack: Stack, quota: int, code: str = "STD") -> str:
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=stack.admin,
            json={
                "name": "Rush Con",
                "starts_on": "2027-06-01",
                "ends_on": "2027-06-03",
                "badge_types": [
                    {"code": code, "name": "Standard", "price_cents": 0, "quota": quota}
                ],
            },
        )
        assert created.status_code == 201, created.text
        convention_id = str(created.json()["convention_id"])
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
        )
        assert opened.status_code == 200, opened.text
        assert opened.json()["status"] == "open"
    return convention_id


async def all_registrations(
    stack: Stack, convention_id: str, **params: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    async with stack.client() as client:
        while True:
            query = {"limit": "37", **params, **({"cursor": cursor} if cursor else {})}
            page = await client.get(
                f"/api/v1/admin/conventions/{convention_id}/registrations",
                headers=stack.admin,
                params=query,
            )
            assert page.status_code == 200, page.text
            items.extend(page.json()["items"])
            cursor = page.json()["next"]
            if cursor is None:
                return items


async def test_a_rush_sells_exactly_the_quota(stack: Stack) -> None:
    quota = 25
    convention_id = await create_open_convention(stack, quota)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    requests: list[tuple[dict[str, str], dict[str, str]]] = []
    for i in range(150):
        requests.append(
            (
                {"email": f"fan{i}@example.org", "name": f"Fan {i}", "badge_type": "STD"},
                {"Idempotency-Key": f"key-{i}"},
            )
        )
    for i in range(0, 30, 3):
        requests.append(
            ({"email": f"FAN{i}@Example.org", "name": f"Fan {i} again", "badge_type": "STD"}, {})
        )
    for i in range(0, 40, 4):
        requests.append((requests[i][0], {"Idempotency-Key": f"key-{i}"}))
    random.Random(7).shuffle(requests)

    async with stack.client(limits=httpx.Limits(max_connections=100)) as client:
        answers = await asyncio.gather(
            *(client.post(url, json=body, headers=headers) for body, headers in requests)
        )
    codes = Counter(a.status_code for a in answers)
    assert set(codes) <= {201, 409, 202}, codes
    for answer in answers:
        assert answer.headers["location"].startswith("/api/v1/registrations/")
        if answer.status_code == 409:
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["reason"] in {"sold_out", "already_registered"}

    registrations = await eventually(
        lambda: all_registrations(stack, convention_id),
        lambda items: len(items) == 160 and all(i["status"] != "pending" for i in items),
        what="every distinct registration decided",
    )
    confirmed = [r for r in registrations if r["status"] == "confirmed"]
    assert len(confirmed) == quota
    assert len({r["email"].casefold() for r in confirmed}) == quota
    rejected = Counter(r["reason"] for r in registrations if r["status"] == "rejected")
    assert sum(rejected.values()) == 160 - quota
    assert set(rejected) <= {"sold_out", "already_registered"}
    assert len(await all_registrations(stack, convention_id, status="confirmed")) == quota

    retried = Counter(a.json().get("registration_id") for a in answers)
    assert sum(1 for n in retried.values() if n == 2) == 10

    async with stack.client() as client:
        convention = (await client.get(f"/api/v1/conventions/{convention_id}")).json()
    badge = convention["badge_types"][0]
    assert (badge["quota"], badge["sold"], badge["remaining"]) == (quota, quota, 0)


async def test_a_decider_killed_mid_rush_loses_and_doubles_nothing(stack: Stack) -> None:
    quota = 40
    convention_id = await create_open_convention(stack, quota)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    decider = stack.supervisor.pids["decider.registration"]

    async with stack.client(limits=httpx.Limits(max_connections=50)) as client:

        async def register(i: int) -> httpx.Response:
            return await client.post(
                url,
                headers={"Prefer": "respond-async", "Idempotency-Key": f"kill-{i}"},
                json={"email": f"k{i}@example.org", "name": "K", "badge_type": "STD"},
            )

        first = await asyncio.gather(*(register(i) for i in range(60)))
        os.kill(decider, signal.SIGKILL)
        second = await asyncio.gather(*(register(i) for i in range(60, 120)))
    assert {a.status_code for a in first + second} == {202}

    await eventually(
        lambda: _pid_of(stack, "decider.registration"),
        lambda pid: pid not in (None, decider),
        what="the decider restarted",
    )
    registrations = await eventually(
        lambda: all_registrations(stack, convention_id),
        lambda items: len(items) == 120 and all(i["status"] != "pending" for i in items),
        timeout=60,
        what="every registration decided after the restart",
    )
    assert Counter(r["status"] for r in registrations) == {
        "confirmed": quota,
        "rejected": 120 - quota,
    }
    async with stack.client() as client:
        badge = (await client.get(f"/api/v1/conventions/{convention_id}")).json()["badge_types"][0]
    assert (badge["sold"], badge["remaining"]) == (quota, 0)


async def _pid_of(stack: Stack, role: str) -> int | None:
    return stack.supervisor.pids.get(role)


async def test_idempotency_async_answers_and_cancellation(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 1)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    body = {"email": "ada@example.org", "name": "Ada", "badge_type": "STD"}
    async with stack.client() as client:
        accepted = await client.post(
            url, json=body, headers={"Prefer": "respond-async", "Idempotency-Key": "ada-1"}
        )
        assert accepted.status_code == 202
        location = accepted.headers["location"]
        assert accepted.json()["registration_id"] in location

        async def status() -> str:
            return str((await client.get(location)).json()["status"])

        await eventually(status, lambda s: s == "confirmed", what="confirmed")
        again = await client.post(url, json=body, headers={"Idempotency-Key": "ada-1"})
        assert again.status_code == 201
        assert again.json()["registration_id"] == accepted.json()["registration_id"]
        other = await client.post(
            url, json={**body, "name": "Someone else"}, headers={"Idempotency-Key": "ada-1"}
        )
        assert other.status_code == 422
        assert other.json()["type"].endswith("idempotency-key-reused")

        full = await client.post(url, json={**body, "email": "bob@example.org"})
        assert full.status_code == 409
        assert full.json()["reason"] == "sold_out"
        rejected = await client.get(full.headers["location"])
        assert rejected.status_code == 200
        assert (rejected.json()["status"], rejected.json()["reason"]) == ("rejected", "sold_out")
        not_cancellable = await client.delete(full.headers["location"])
        assert not_cancellable.status_code == 409

        cancelled = await client.delete(location)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert (await client.delete(location)).status_code == 200
        freed = await client.post(url, json={**body, "email": "bob@example.org"})
        assert freed.status_code == 201
        badge = (await client.get(f"/api/v1/conventions/{convention_id}")).json()["badge_types"][0]
        assert (badge["sold"], badge["remaining"]) == (1, 0)


async def test_convention_life_cycle_and_listing(stack: Stack) -> None:
    draft = {
        "name": "Draft Con",
        "starts_on": "2027-07-01",
        "ends_on": "2027-07-01",
        "badge_types": [{"code": "DAY", "name": "Day pass", "price_cents": 0, "quota": 5}],
    }
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers={**stack.admin, "Idempotency-Key": "draft-con"},
            json=draft,
        )
        assert created.status_code == 201
        convention_id = created.json()["convention_id"]
        repeat = await client.post(
            "/api/v1/admin/conventions",
            headers={**stack.admin, "Idempotency-Key": "draft-con"},
            json=draft,
        )
        assert repeat.status_code == 201
        assert repeat.json()["convention_id"] == convention_id
        assert (await client.get(f"/api/v1/conventions/{convention_id}")).status_code == 404
        early = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": "early@example.org", "name": "E", "badge_type": "DAY"},
        )
        assert early.status_code == 409
        assert early.json()["reason"] == "not_open"
        close_draft = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/close", headers=stack.admin
        )
        assert close_draft.status_code == 409
        assert close_draft.json()["reason"] == "invalid_transition"
        assert (
            await client.post(
                f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
            )
        ).status_code == 200
        wrong_badge = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": "w@example.org", "name": "W", "badge_type": "GOLD"},
        )
        assert wrong_badge.json()["reason"] == "unknown_badge_type"
        closed = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/close", headers=stack.admin
        )
        assert closed.json()["status"] == "closed"
        late = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": "late@example.org", "name": "L", "badge_type": "DAY"},
        )
        assert late.json()["reason"] == "not_open"

        seen: list[str] = []
        cursor = None
        while True:
            page = (
                await client.get(
                    "/api/v1/conventions",
                    params={"limit": 1, **({"cursor": cursor} if cursor else {})},
                )
            ).json()
            seen.extend(item["convention_id"] for item in page["items"])
            cursor = page["next"]
            if cursor is None:
                break
        assert convention_id in seen
        assert len(seen) == len(set(seen))


async def test_the_correlation_id_follows_the_request_into_the_events(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 3)
    correlation = str(uuid.uuid4())
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers={"X-Correlation-ID": correlation},
            json={"email": "c@example.org", "name": "C", "badge_type": "STD"},
        )
    assert answer.status_code == 201
    assert answer.headers["x-correlation-id"] == correlation
    registration_id = answer.json()["registration_id"]

    async def archived() -> list[Any]:
        async with engine_for(stack.settings.db.reporting_url) as engine, engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        select(
                            reporting.event_archive.c.event_type,
                            reporting.event_archive.c.causation_id,
                        ).where(reporting.event_archive.c.correlation_id == correlation)
                    )
                ).all()
            )

    rows = await eventually(archived, lambda rows: len(rows) == 1, what="the archived event")
    assert rows[0].event_type == "AttendeeRegistered"
    assert rows[0].causation_id == registration_id


async def test_health_and_openapi(stack: Stack) -> None:
    async with stack.client() as client:
        health = await client.get("/health")
        body = health.json()
        assert body["status"] == "ok", body
        assert body["checks"] == {"kafka": "ok", "database": "ok", "consumers": "ok"}
        assert set(body["dead_letters"]) == {
            f"{stack.settings.topic_prefix}{group}"
            for group in (
                "decider.registration",
                "projector.website",
                "projector.reporting",
                "decider.lodging",
                "bridge.partner",
                "projector.lodging",
                "decider.accounts",
                "projector.accounts",
                "projector.orders",
            )
        }
        schema = await client.get("/schema/openapi.json")
        assert schema.status_code == 200
        operations = {
            op["operationId"]
            for path in schema.json()["paths"].values()
            for op in path.values()
            if isinstance(op, dict) and "operationId" in op
        }
        assert {
            "registerAttendee",
            "getRegistration",
            "cancelRegistration",
            "createConvention",
            "openConvention",
            "closeConvention",
            "listConventions",
            "getConvention",
            "adminListRegistrations",
            "health",
        } <= operations


def assert_key_reused(answer: httpx.Response) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["type"].endswith("idempotency-key-reused"), problem
    assert problem["reason"] == "idempotency_key_reused", problem


async def test_the_same_key_and_body_give_the_same_answer(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 2)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    body = {"email": "same@example.org", "name": "Same", "badge_type": "STD"}
    async with stack.client() as client:
        first = await client.post(url, json=body, headers={"Idempotency-Key": "same-1"})
        again = await client.post(url, json=body, headers={"Idempotency-Key": "same-1"})
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert first.json()["registration_id"] == again.json()["registration_id"]
    assert first.headers["location"] == again.headers["location"]
    assert again.json()["status"] == "confirmed"
    registrations = await all_registrations(stack, convention_id)
    assert [r["email"] for r in registrations] == ["same@example.org"]


async def test_a_reused_key_with_another_body_after_the_decision_is_422(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 2)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    body = {"email": "reuse@example.org", "name": "Reuse", "badge_type": "STD"}
    other = {**body, "email": "someone.else@example.org"}
    async with stack.client() as client:
        first = await client.post(url, json=body, headers={"Idempotency-Key": "reuse-1"})
        assert first.status_code == 201, first.text

        waiting = await client.post(url, json=other, headers={"Idempotency-Key": "reuse-1"})
        assert_key_reused(waiting)
        at_once = await client.post(
            url, json=other, headers={"Idempotency-Key": "reuse-1", "Prefer": "respond-async"}
        )
        assert_key_reused(at_once)

        shown = await client.get(first.headers["location"])
    assert shown.status_code == 200
    assert (shown.json()["email"], shown.json()["status"]) == ("reuse@example.org", "confirmed")
    assert [r["email"] for r in await all_registrations(stack, convention_id)] == [
        "reuse@example.org"
    ]


async def test_a_reused_key_after_a_rejection_is_still_422(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 1)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    async with stack.client() as client:
        taken = await client.post(
            url, json={"email": "seat@example.org", "name": "Seat", "badge_type": "STD"}
        )
        assert taken.status_code == 201, taken.text
        body = {"email": "late@example.org", "name": "Late", "badge_type": "STD"}
        rejected = await client.post(url, json=body, headers={"Idempotency-Key": "late-1"})
        assert rejected.status_code == 409, rejected.text
        assert rejected.json()["reason"] == "sold_out"
        same = await client.post(url, json=body, headers={"Idempotency-Key": "late-1"})
        assert same.status_code == 409
        assert same.json()["registration_id"] == rejected.json()["registration_id"]
        reused = await client.post(
            url, json={**body, "name": "Late again"}, headers={"Idempotency-Key": "late-1"}
        )
        assert_key_reused(reused)


async def test_a_reused_key_sent_before_the_first_is_decided_is_refused_later(
    stack: Stack,
) -> None:
    convention_id = await create_open_convention(stack, 2)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    body = {"email": "early@example.org", "name": "Early", "badge_type": "STD"}
    other = {**body, "email": "impostor@example.org", "name": "Impostor"}
    headers = {"Idempotency-Key": "race-1", "Prefer": "respond-async"}
    # The gateway refuses a reused key itself once the first request shows in the read
    # model: hold the website projector still so that both requests are published first.
    projector = stack.supervisor.pids["projector.website"]
    async with stack.client() as client:
        os.kill(projector, signal.SIGSTOP)
        try:
            first = await client.post(url, json=body, headers=headers)
            second = await client.post(url, json=other, headers=headers)
        finally:
            os.kill(projector, signal.SIGCONT)
        assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
        registration_id = first.json()["registration_id"]
        assert second.json()["registration_id"] == registration_id
        assert first.json()["command_id"] != second.json()["command_id"]
        assert f"command_id={second.json()['command_id']}" in second.headers["location"]

        refused = await eventually(
            lambda: client.get(second.headers["location"]),
            lambda answer: (
                answer.status_code == 422
                or (answer.status_code == 200 and answer.json()["status"] != "pending")
            ),
            what="the second request refused",
        )
        assert_key_reused(refused)

        shown = await eventually(
            lambda: client.get(f"/api/v1/registrations/{registration_id}"),
            lambda answer: answer.status_code == 200 and answer.json()["status"] != "pending",
            what="the registration decided",
        )
        assert (shown.json()["email"], shown.json()["name"], shown.json()["status"]) == (
            "early@example.org",
            "Early",
            "confirmed",
        )
        mine = await client.get(first.headers["location"])
        assert mine.status_code == 200
        assert (mine.json()["email"], mine.json()["status"]) == ("early@example.org", "confirmed")
        again = await client.post(url, json=other, headers={"Idempotency-Key": "race-1"})
        assert_key_reused(again)
    badge = (await stack_convention(stack, convention_id))["badge_types"][0]
    assert badge["sold"] == 1


async def stack_convention(stack: Stack, convention_id: str) -> dict[str, Any]:
    async with stack.client() as client:
        answer = await client.get(f"/api/v1/conventions/{convention_id}")
    assert answer.status_code == 200
    return dict(answer.json())
