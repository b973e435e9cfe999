"""Hostile and broken requests get 4xx problem details: never a 5xx, never a stack trace."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_registration_http import create_open_convention

pytestmark = pytest.mark.e2e

CONVENTION = {
    "name": "Bad Input Con",
    "starts_on": "2027-08-01",
    "ends_on": "2027-08-02",
    "badge_types": [{"code": "STD", "name": "Standard", "price_cents": 0, "quota": 10}],
}


def assert_problem(answer: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    expected = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in expected, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    body = answer.json()
    assert {"type", "title", "status"} <= set(body)
    assert body["status"] == answer.status_code
    assert "Traceback" not in answer.text
    return dict(body)


@pytest.fixture(scope="module")
async def convention_id(stack: Stack) -> str:
    return await create_open_convention(stack, 10)


@pytest.mark.parametrize(
    ("content", "status", "why"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"", 400, "empty body"),
        (b"[]", 422, "not an object"),
        (b'{"email": 5, "name": "x", "badge_type": "STD"}', 422, "wrong type"),
        (b'{"email": "a@example.org", "badge_type": "STD"}', 422, "missing name"),
        (b'{"email": "not-an-email", "name": "x", "badge_type": "STD"}', 422, "bad e-mail"),
        (b'{"email": "a@example.org", "name": "   ", "badge_type": "STD"}', 422, "blank name"),
        (
            b'{"email": "a@example.org", "name": "x", "badge_type": "STD", "admin": true}',
            422,
            "unknown field",
        ),
        (
            b'{"email": "a@example.org", "name": "' + b"x" * 5000 + b'", "badge_type": "STD"}',
            422,
            "overlong name",
        ),
        (
            '{"email": "a@example.org", "name": "\u0000\ud83e", "badge_type": "STD"}'.encode(
                "utf-8", "surrogatepass"
            ),
            400,
            "invalid unicode",
        ),
        (
            rb'{"email": "a@example.org", "name": "x\ud800", "badge_type": "STD"}',
            400,
            "lone surrogate",
        ),
        (rb'{"email": "a@example.org", "name": "evil\u202egnp", "badge_type": "STD"}', 422, "bidi"),
        (rb'{"email": "a@example.org", "name": "a\u0007b", "badge_type": "STD"}', 422, "control"),
        (rb'{"email": "a@example.org", "name": "a\u2028b", "badge_type": "STD"}', 422, "line sep"),
        (
            '{"email": "a\uff20b@x.example", "name": "x", "badge_type": "STD"}'.encode(),
            422,
            "full-width at sign",
        ),
        (
            (
                '{"email": "' + "\ufdfa" * 30 + '@x.example", "name": "x", "badge_type": "STD"}'
            ).encode(),
            422,
            "grows past the limit when normalised",
        ),
    ],
)
async def test_bad_registration_bodies(
    stack: Stack, convention_id: str, content: bytes, status: int, why: str
) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            content=content,
            headers={"content-type": "application/json"},
        )
    assert_problem(answer, status)


async def test_field_errors_name_the_field(stack: Stack, convention_id: str) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": "a@example.org", "badge_type": "STD"},
        )
    body = assert_problem(answer, 422)
    assert any(error["field"] == "name" for error in body["errors"]), body


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            {"badge_types": [{"code": "STD", "name": "S", "price_cents": 1, "quota": -1}]},
            "negative quota",
        ),
        (
            {"badge_types": [{"code": "STD", "name": "S", "price_cents": -5, "quota": 1}]},
            "negative price",
        ),
        ({"badge_types": []}, "no badge types"),
        (
            {
                "badge_types": [
                    {"code": "A", "name": "S", "price_cents": 1, "quota": 1},
                    {"code": "A", "name": "T", "price_cents": 1, "quota": 1},
                ]
            },
            "duplicate codes",
        ),
        ({"ends_on": "2027-07-01"}, "ends before it starts"),
        ({"starts_on": "tomorrow"}, "not a date"),
        ({"name": None}, "null name"),
        (
            {"badge_types": [{"code": "has space", "name": "S", "price_cents": 1, "quota": 1}]},
            "bad code",
        ),
        (
            {"badge_types": [{"code": "STD", "name": "S", "price_cents": 1, "quota": 10**12}]},
            "absurd quota",
        ),
        ({"name": "Con\u202eevil"}, "bidirectional override in the name"),
        (
            {
                "badge_types": [
                    {"code": "STD", "name": "S", "price_cents": 1, "quota": 1},
                    {"code": "std", "name": "T", "price_cents": 1, "quota": 1},
                ]
            },
            "codes that differ only by case",
        ),
        (
            {"badge_types": [{"code": "STD", "name": "S\u0000", "price_cents": 1, "quota": 1}]},
            "control character in a badge name",
        ),
    ],
)
async def test_bad_conventions(stack: Stack, change: dict[str, Any], why: str) -> None:
    async with stack.client() as client:
        answer = await client.post(
            "/api/v1/admin/conventions", headers=stack.admin, json={**CONVENTION, **change}
        )
    assert_problem(answer, 422)


async def test_a_one_megabyte_body_is_refused(stack: Stack, convention_id: str) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            content=b'{"email": "' + b"a" * (1024 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )
    assert_problem(answer, 413)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/conventions/5f0c6a1e-4a51-4d1f-9a55-0d6b1f2e9c01"),
        ("GET", "/api/v1/registrations/5f0c6a1e-4a51-4d1f-9a55-0d6b1f2e9c02"),
        ("DELETE", "/api/v1/registrations/5f0c6a1e-4a51-4d1f-9a55-0d6b1f2e9c03"),
        ("GET", "/api/v1/registrations/not-a-uuid"),
        ("GET", "/api/v1/nothing-here"),
    ],
)
async def test_unknown_ids_are_404(stack: Stack, method: str, path: str) -> None:
    async with stack.client() as client:
        answer = await client.request(method, path)
    assert_problem(answer, 404)


async def test_registering_for_an_unknown_convention_is_404(stack: Stack) -> None:
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/conventions/{uuid.uuid4()}/registrations",
            json={"email": "a@example.org", "name": "A", "badge_type": "STD"},
        )
    assert_problem(answer, 404)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer"},
    ],
)
async def test_admin_calls_need_the_token(stack: Stack, headers: dict[str, str]) -> None:
    async with stack.client() as client:
        create = await client.post("/api/v1/admin/conventions", headers=headers, json=CONVENTION)
        listing = await client.get("/api/v1/admin/conventions", headers=headers)
        opening = await client.post(
            f"/api/v1/admin/conventions/{uuid.uuid4()}/open", headers=headers
        )
    for answer in (create, listing, opening):
        assert_problem(answer, 401)


async def test_bad_query_parameters(stack: Stack, convention_id: str) -> None:
    base = f"/api/v1/admin/conventions/{convention_id}/registrations"
    async with stack.client() as client:
        for params in (
            {"status": "bogus"},
            {"limit": "0"},
            {"limit": "many"},
            {"cursor": "!!!"},
            {"cursor": "eyJub3QiOiAiYSBjdXJzb3IifQ"},
        ):
            assert_problem(await client.get(base, headers=stack.admin, params=params), 400)
        assert_problem(await client.get("/api/v1/conventions", params={"limit": "1000"}), 400)


async def test_wrong_methods_and_idempotency_keys(stack: Stack, convention_id: str) -> None:
    async with stack.client() as client:
        assert_problem(await client.put(f"/api/v1/conventions/{convention_id}"), 405)
        answer = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers={"Idempotency-Key": "k" * 500},
            json={"email": "a@example.org", "name": "A", "badge_type": "STD"},
        )
        assert_problem(answer, 400)
