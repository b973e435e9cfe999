"""The lodging API's answers to what it can check itself: problem details for unknown
resources, bad bodies, unconfirmed registrations, reused keys and missing admin tokens, and
the 202s of writes, shown at once by the lodging projector. What the lodging decider and the
partner then make of them is tested with them; these tests hold whatever they decide."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, verified_account
from tests.e2e.test_registration_http import create_open_convention
from tests.support import eventually

pytestmark = pytest.mark.e2e

STAY = {"room_type": "KING", "check_in": "2027-06-01", "check_out": "2027-06-03"}
BODY = {"hotels": ["HQ", "ANNEX"], **STAY, "guests": ["Ada Lovelace"]}


@pytest.fixture(scope="module")
async def convention(stack: Stack) -> str:
    return await create_open_convention(stack, quota=1, code="STD")


@pytest.fixture(scope="module")
async def registrations(stack: Stack, convention: str) -> dict[str, str]:
    """One confirmed registration and one rejected (the quota is 1)."""
    found: dict[str, str] = {}
    async with stack.client() as client:
        for i in range(2):
            answer = await client.post(
                f"/api/v1/conventions/{convention}/registrations",
                json={"email": f"lodger{i}@example.org", "name": "Lodger", "badge_type": "STD"},
            )
            assert answer.status_code in (201, 409), answer.text
            found[answer.json()["status"] if answer.status_code == 201 else "rejected"] = (
                answer.json()["registration_id"]
            )
    assert set(found) == {"confirmed", "rejected"}
    return found


def assert_problem(answer: httpx.Response, status: int, reason: str | None = None) -> Any:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == status
    if reason is not None:
        assert problem["reason"] == reason, problem
    return problem


async def test_hotels_of_an_unknown_convention_are_not_found(stack: Stack) -> None:
    async with stack.client() as client:
        answer = await client.get(f"/api/v1/conventions/{uuid.uuid4()}/hotels")
    assert_problem(answer, 404)


async def test_hotels_before_a_sync_are_an_empty_list(stack: Stack, convention: str) -> None:
    async with stack.client() as client:
        answer = await client.get(f"/api/v1/conventions/{convention}/hotels")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "convention_id": convention,
        "synced_at": None,
        "hotels": [],
        "lottery": "closed",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/admin/conventions/{cid}/hotels/sync"),
        ("GET", "/api/v1/admin/lodging/syncs/{any}"),
        ("GET", "/api/v1/admin/conventions/{cid}/lodging/pickup"),
        ("GET", "/api/v1/admin/conventions/{cid}/lodging/requests"),
        ("POST", "/api/v1/admin/lodging/{any}/retry"),
        ("POST", "/api/v1/admin/conventions/{cid}/lodging/lottery/open"),
        ("POST", "/api/v1/admin/conventions/{cid}/lodging/lottery/run"),
        ("GET", "/api/v1/admin/conventions/{cid}/lodging/lottery"),
        ("POST", "/api/v1/admin/conventions/{cid}/lodging/reconcile"),
        ("GET", "/api/v1/admin/lodging/reconciliations/{any}"),
    ],
)
async def test_admin_routes_refuse_a_missing_or_wrong_token(
    stack: Stack, convention: str, method: str, path: str
) -> None:
    url = path.format(cid=convention, any=uuid.uuid4())
    async with stack.client() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = await client.request(method, url, headers=headers, json={"seed": 1})
            assert_problem(answer, 401)


async def test_a_room_for_an_unknown_registration_is_not_found(stack: Stack) -> None:
    async with stack.client() as client:
        answer = await client.post(f"/api/v1/registrations/{uuid.uuid4()}/lodging", json=BODY)
    assert_problem(answer, 404)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"check_out": "2027-06-01"}, None),
        ({"check_out": "2027-06-30"}, None),
        ({"hotels": []}, "hotels"),
        ({"hotels": ["hq"]}, "hotels"),
        ({"hotels": ["HQ", "HQ"]}, None),
        ({"guests": []}, "guests"),
        ({"guests": ["A", "B", "C", "D", "E"]}, "guests"),
        ({"room_type": "KING SIZE"}, "room_type"),
        ({"check_in": "tomorrow"}, "check_in"),
        ({"extra": 1}, None),
    ],
)
async def test_a_bad_room_request_is_422_with_field_errors(
    stack: Stack, registrations: dict[str, str], change: dict[str, Any], field: str | None
) -> None:
    url = f"/api/v1/registrations/{registrations['confirmed']}/lodging"
    async with stack.client() as client:
        answer = await client.post(url, json=BODY | change)
    problem = assert_problem(answer, 422)
    assert problem["errors"], problem
    if field is not None:
        assert any(field in error["field"] for error in problem["errors"]), problem


async def test_a_body_that_is_not_json_is_400(stack: Stack, registrations: dict[str, str]) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/registrations/{registrations['confirmed']}/lodging",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert_problem(answer, 400)


async def test_a_room_for_an_unconfirmed_registration_is_409(
    stack: Stack, registrations: dict[str, str]
) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/registrations/{registrations['rejected']}/lodging", json=BODY
        )
    assert_problem(answer, 409, "registration_not_confirmed")


async def test_a_room_request_is_accepted_shown_retried_and_cancelled(
    stack: Stack, registrations: dict[str, str]
) -> None:
    url = f"/api/v1/registrations/{registrations['confirmed']}/lodging"
    key = {"Idempotency-Key": f"room-{uuid.uuid4()}"}
    async with stack.client() as client:
        first = await client.post(url, json=BODY, headers=key)
        assert first.status_code == 202, first.text
        location = first.headers["location"]
        request_id = first.json()["request_id"]
        assert location == f"/api/v1/lodging/{request_id}"
        assert first.json()["status"] == "requested"

        shown = await eventually(
            lambda: client.get(location), lambda a: a.status_code == 200, what="request shown"
        )
        view = shown.json()
        assert (view["hotels"], view["nights"]) == (["HQ", "ANNEX"], 2)
        assert view["registration_id"] == registrations["confirmed"]
        assert view["parked"] is None

        again = await client.post(url, json=BODY, headers=key)
        assert again.status_code == 202, again.text
        assert again.headers["location"] == location

        reused = await client.post(url, json=BODY | {"guests": ["Someone Else"]}, headers=key)
        assert_problem(reused, 422, "idempotency_key_reused")

        not_parked = await client.post(
            f"/api/v1/admin/lodging/{request_id}/retry", headers=stack.admin
        )
        assert_problem(not_parked, 409, "not_parked")

        listed = await client.get(
            f"/api/v1/admin/conventions/{view['convention_id']}/lodging/requests",
            headers=stack.admin,
            params={"limit": "1"},
        )
        assert listed.status_code == 200, listed.text
        assert [item["request_id"] for item in listed.json()["items"]] == [request_id]
        parked = await client.get(
            f"/api/v1/admin/conventions/{view['convention_id']}/lodging/requests",
            headers=stack.admin,
            params={"parked": "true"},
        )
        assert parked.json()["items"] == []

        cancelled = await client.delete(location)
        after = (await client.get(location)).json()["status"]
    if cancelled.status_code == 409:
        # The decider may fail the request first (these hotels were never synced).
        assert_problem(cancelled, 409, "not_cancellable")
        assert after in ("failed", "cancelled")
    else:
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.headers["location"] == location


async def test_a_registration_lists_its_room_requests_to_whoever_may_see_it(
    stack: Stack,
) -> None:
    convention = await create_open_convention(stack, quota=2)
    owner_email, other_email = fresh_email("lodger"), fresh_email("stranger")
    await asyncio.gather(verified_account(stack, owner_email), verified_account(stack, other_email))
    owner, other = await asyncio.gather(
        session_token(stack, owner_email), session_token(stack, other_email)
    )
    async with stack.client() as client:
        made = await client.post(
            f"/api/v1/conventions/{convention}/registrations",
            headers=bearer(owner),
            json={"email": owner_email, "name": "Ada Lovelace", "badge_type": "STD"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["status"] == "confirmed", made.text
        url = f"/api/v1/registrations/{made.json()['registration_id']}/lodging"
        empty = await client.get(url, headers=bearer(owner))
        assert empty.status_code == 200, empty.text
        assert empty.json() == {"items": []}

        async def ask_then_cancel() -> str:
            """A room request made through the API, ended before the next can be made."""
            asked = await client.post(url, headers=bearer(owner), json=BODY)
            assert asked.status_code == 202, asked.text
            location = asked.headers["location"]
            await client.delete(location, headers=bearer(owner))
            await eventually(
                lambda: client.get(location, headers=bearer(owner)),
                lambda a: a.json()["status"] in ("failed", "cancelled"),
                what="the room request ended",
            )
            return str(asked.json()["request_id"])

        made_ids = [await ask_then_cancel(), await ask_then_cancel()]

        listed = await client.get(url, headers=bearer(owner))
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [item["request_id"] for item in items] == made_ids, "oldest first"
        one = await client.get(f"/api/v1/lodging/{made_ids[0]}", headers=bearer(owner))
        assert items[0] == one.json()

        admin = await client.get(url, headers=stack.admin)
        assert [item["request_id"] for item in admin.json()["items"]] == made_ids
        assert_problem(await client.get(url, headers=bearer(other)), 404)
        assert_problem(await client.get(url), 404)
        assert_problem(await client.get(f"/api/v1/registrations/{uuid.uuid4()}/lodging"), 404)


async def test_unknown_room_requests_are_not_found(stack: Stack) -> None:
    unknown = f"/api/v1/lodging/{uuid.uuid4()}"
    async with stack.client() as client:
        assert_problem(await client.get(unknown), 404)
        assert_problem(await client.delete(unknown), 404)
        retry = await client.post(
            f"/api/v1/admin/lodging/{uuid.uuid4()}/retry", headers=stack.admin
        )
        assert_problem(retry, 404)
        assert_problem(await client.get("/api/v1/lodging/not-a-uuid"), 404)


async def test_a_sync_is_accepted_and_shown_requested(stack: Stack, convention: str) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/admin/conventions/{convention}/hotels/sync", headers=stack.admin
        )
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        assert location == f"/api/v1/admin/lodging/syncs/{answer.json()['sync_id']}"
        shown = await eventually(
            lambda: client.get(location, headers=stack.admin),
            lambda a: a.status_code == 200,
            what="sync shown",
        )
    assert shown.json()["status"] in ("requested", "done", "failed")


async def test_a_reconciliation_is_accepted_and_shown_requested(
    stack: Stack, convention: str
) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/admin/conventions/{convention}/lodging/reconcile", headers=stack.admin
        )
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        shown = await eventually(
            lambda: client.get(location, headers=stack.admin),
            lambda a: a.status_code == 200,
            what="reconciliation shown",
        )
        assert shown.json()["status"] in ("requested", "done", "failed")
        missing = await client.get(
            f"/api/v1/admin/lodging/reconciliations/{uuid.uuid4()}", headers=stack.admin
        )
    assert_problem(missing, 404)


async def test_the_lottery_refuses_entries_and_draws_until_open(
    stack: Stack, convention: str, registrations: dict[str, str]
) -> None:
    entry = BODY | {"registration_id": registrations["confirmed"]}
    async with stack.client() as client:
        entered = await client.post(
            f"/api/v1/conventions/{convention}/lodging/lottery/entries", json=entry
        )
        assert_problem(entered, 409, "lottery_not_open")
        run = await client.post(
            f"/api/v1/admin/conventions/{convention}/lodging/lottery/run",
            headers=stack.admin,
            json={"seed": 7},
        )
        assert_problem(run, 409, "lottery_not_open")
        bad_seed = await client.post(
            f"/api/v1/admin/conventions/{convention}/lodging/lottery/run",
            headers=stack.admin,
            json={"seed": -1},
        )
        assert_problem(bad_seed, 422)
        lottery = await client.get(
            f"/api/v1/admin/conventions/{convention}/lodging/lottery", headers=stack.admin
        )
        assert lottery.status_code == 200, lottery.text
        assert lottery.json() | {"convention_id": None} == {
            "convention_id": None,
            "status": "closed",
            "seed": None,
            "entries": 0,
            "awards": [],
            "waitlist": [],
        }
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention}/lodging/lottery/open", headers=stack.admin
        )
    assert opened.status_code == 202, opened.text
    assert opened.headers["location"] == f"/api/v1/admin/conventions/{convention}/lodging/lottery"
    async with stack.client() as client:
        hotels = await eventually(
            lambda: client.get(f"/api/v1/conventions/{convention}/hotels"),
            lambda a: a.json()["lottery"] == "open",
            what="the lottery shown open to the public",
        )
    assert hotels.status_code == 200, hotels.text


async def test_pickup_and_listing_answer_for_known_conventions_only(
    stack: Stack, convention: str
) -> None:
    async with stack.client() as client:
        pickup = await client.get(
            f"/api/v1/admin/conventions/{convention}/lodging/pickup", headers=stack.admin
        )
        assert pickup.status_code == 200, pickup.text
        totals = pickup.json()
        assert totals["booked"] == sum(hotel["booked"] for hotel in totals["hotels"])
        assert totals["block"] == sum(hotel["block"] for hotel in totals["hotels"])
        for path in ("lodging/pickup", "lodging/requests", "lodging/lottery", "hotels/sync"):
            method = "POST" if path == "hotels/sync" else "GET"
            answer = await client.request(
                method, f"/api/v1/admin/conventions/{uuid.uuid4()}/{path}", headers=stack.admin
            )
            assert_problem(answer, 404)
        bad_status = await client.get(
            f"/api/v1/admin/conventions/{convention}/lodging/requests",
            headers=stack.admin,
            params={"status": "sleeping"},
        )
        assert_problem(bad_status, 400)
        bad_cursor = await client.get(
            f"/api/v1/admin/conventions/{convention}/lodging/requests",
            headers=stack.admin,
            params={"cursor": "nonsense"},
        )
        assert_problem(bad_cursor, 400)
