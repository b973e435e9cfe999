"""Admin search over a convention's registrations and its CSV export, end to end: HTTP
through the gateway, the decider and the projector, each running as its own process."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, sign_up
from tests.support import eventually

pytestmark = pytest.mark.e2e

FORMULAS = {
    '=HYPERLINK("x")': "formula@example.org",
    "+1 Caller": "plus@example.org",
    "-Minus": "minus@example.org",
    "@handle": "at@example.org",
}
QUOTED = 'Zoë "Zo" Ünal, Jr.'
SPECIAL = [
    ("Ada.Lovelace@Example.org", "Ada Lovelace", "STD"),
    ("byron@example.org", "Byron LOVELACE", "STD"),
    ("jürgen@example.org", "Jürgen Groß", "STD"),
    ("pct@example.org", "100% Fan", "STD"),
    ("snake@example.org", "snake_case", "STD"),
    *((email, name, "STD") for name, email in FORMULAS.items()),
]
VIPS = [
    ("junior@example.org", "lovelace junior", "VIP"),
    ("zoe@example.org", QUOTED, "VIP"),
    ("vip3@example.org", "Vip Three", "VIP"),
    ("vip4@example.org", "Vip Four", "VIP"),
    ("vip5@example.org", "Vip Five", "VIP"),
]
VIP_QUOTA = 3
TOTAL = 30
FILLERS = [
    (f"attendee{i:02d}@example.org", f"Attendee {i:02d}", "STD")
    for i in range(TOTAL - len(SPECIAL) - len(VIPS))
]


@dataclass
class Seeded:
    convention_id: str
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each registration as the gateway last answered it, by attendee name."""

    @property
    def listing(self) -> str:
        return f"/api/v1/admin/conventions/{self.convention_id}/registrations"

    @property
    def export(self) -> str:
        return f"{self.listing}.csv"

    def ids(self, *names: str) -> set[str]:
        return {str(self.by_name[n]["registration_id"]) for n in names}

    def ids_where(self, **wanted: str) -> set[str]:
        return {
            str(r["registration_id"])
            for r in self.by_name.values()
            if all(r[k] == v for k, v in wanted.items())
        }


async def register(
    client: httpx.AsyncClient, convention_id: str, email: str, name: str, badge: str
) -> dict[str, Any]:
    answer = await client.post(
        f"/api/v1/conventions/{convention_id}/registrations",
        json={"email": email, "name": name, "badge_type": badge},
    )
    assert answer.status_code in (201, 409), answer.text
    if answer.status_code == 409:
        assert answer.json()["reason"] == "sold_out", answer.text
        found = await client.get(f"/api/v1/registrations/{answer.json()['registration_id']}")
        assert found.status_code == 200, found.text
        return dict(found.json())
    return dict(answer.json())


@pytest.fixture(scope="module")
async def seeded(stack: Stack) -> Seeded:
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=stack.admin,
            json={
                "name": "Search Con",
                "starts_on": "2027-09-01",
                "ends_on": "2027-09-03",
                "badge_types": [
                    {"code": "STD", "name": "Standard", "price_cents": 0, "quota": 100},
                    {"code": "VIP", "name": "Patron", "price_cents": 0, "quota": VIP_QUOTA},
                ],
            },
        )
        assert created.status_code == 201, created.text
        convention_id = str(created.json()["convention_id"])
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
        )
        assert opened.status_code == 200, opened.text
        seeded = Seeded(convention_id)
        for email, name, badge in [*SPECIAL, *VIPS, *FILLERS]:
            seeded.by_name[name] = await register(client, convention_id, email, name, badge)
        byron = seeded.by_name["Byron LOVELACE"]
        cancelled = await client.delete(
            f"/api/v1/registrations/{byron['registration_id']}", headers=stack.admin
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        seeded.by_name["Byron LOVELACE"] = dict(cancelled.json())

    async def listed() -> list[dict[str, Any]]:
        return await all_pages(stack, seeded, {})

    await eventually(
        listed,
        lambda items: (
            len(items) == TOTAL
            and sorted(r["status"] for r in items)
            == sorted(r["status"] for r in seeded.by_name.values())
        ),
        timeout=30,
        interval=0.1,
        what="every registration listed as decided",
    )
    return seeded


async def all_pages(
    stack: Stack, seeded: Seeded, params: dict[str, str], limit: int = 500
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    async with stack.client() as client:
        while True:
            query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            page = await client.get(seeded.listing, headers=stack.admin, params=query)
            assert page.status_code == 200, page.text
            body = page.json()
            assert set(body) == {"items", "next"}
            assert len(body["items"]) <= limit
            items.extend(body["items"])
            cursor = body["next"]
            if cursor is None:
                return items


async def found_ids(stack: Stack, seeded: Seeded, **params: str) -> list[str]:
    return [str(r["registration_id"]) for r in await all_pages(stack, seeded, params)]


def assert_problem(answer: httpx.Response, *statuses: int) -> None:
    assert answer.status_code in statuses, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    body = answer.json()
    assert body["status"] == answer.status_code
    assert "Traceback" not in answer.text


async def test_the_seeded_statuses(seeded: Seeded) -> None:
    statuses = [r["status"] for r in seeded.by_name.values()]
    assert statuses.count("rejected") == len(VIPS) - VIP_QUOTA
    assert statuses.count("cancelled") == 1
    assert statuses.count("confirmed") == TOTAL - (len(VIPS) - VIP_QUOTA) - 1


async def test_an_email_finds_its_identity_whatever_its_case(stack: Stack, seeded: Seeded) -> None:
    ada = seeded.by_name["Ada Lovelace"]
    for form in (
        "ada.lovelace@EXAMPLE.ORG",
        "ADA.LOVELACE@example.org",
        " Ada.Lovelace@Example.org",
    ):
        items = await all_pages(stack, seeded, {"email": form})
        assert [r["registration_id"] for r in items] == [ada["registration_id"]], form
        assert items[0]["email"] == ada["email"]
    assert await found_ids(stack, seeded, email="JÜRGEN@example.org") == list(
        seeded.ids("Jürgen Groß")
    )
    assert await found_ids(stack, seeded, email="nobody@example.org") == []


async def test_a_name_substring_ignores_case_and_escapes_wildcards(
    stack: Stack, seeded: Seeded
) -> None:
    lovelaces = seeded.ids("Ada Lovelace", "Byron LOVELACE", "lovelace junior")
    assert sorted(await found_ids(stack, seeded, name="loveLACE")) == sorted(lovelaces)
    assert await found_ids(stack, seeded, name="%") == list(seeded.ids("100% Fan"))
    assert await found_ids(stack, seeded, name="_") == list(seeded.ids("snake_case"))
    assert await found_ids(stack, seeded, name="ünal, jr") == list(seeded.ids(QUOTED))
    assert await found_ids(stack, seeded, name='"Zo"') == list(seeded.ids(QUOTED))
    assert await found_ids(stack, seeded, name="no such name") == []


async def test_status_and_badge_type(stack: Stack, seeded: Seeded) -> None:
    for status in ("confirmed", "rejected", "cancelled", "pending"):
        found = await found_ids(stack, seeded, status=status)
        assert sorted(found) == sorted(seeded.ids_where(status=status)), status
    rejected = await all_pages(stack, seeded, {"status": "rejected"})
    assert {r["reason"] for r in rejected} == {"sold_out"}
    assert {r["badge_type"] for r in rejected} == {"VIP"}
    vips = seeded.ids_where(badge_type="VIP")
    assert len(vips) == len(VIPS)
    assert sorted(await found_ids(stack, seeded, badge_type="VIP")) == sorted(vips)
    assert sorted(await found_ids(stack, seeded, badge_type="vip")) == sorted(vips)
    assert await found_ids(stack, seeded, badge_type="NONE") == []


async def test_filters_combine_with_paging(stack: Stack, seeded: Seeded) -> None:
    everything = [str(r["registration_id"]) for r in await all_pages(stack, seeded, {}, 5)]
    assert len(everything) == len(set(everything)) == TOTAL
    assert set(everything) == seeded.ids_where()

    for params, expected in (
        (
            {"status": "confirmed", "badge_type": "STD"},
            seeded.ids_where(status="confirmed", badge_type="STD"),
        ),
        ({"name": "attendee", "status": "confirmed"}, seeded.ids(*(n for _, n, _ in FILLERS))),
        ({"name": "lovelace", "badge_type": "STD"}, seeded.ids("Ada Lovelace", "Byron LOVELACE")),
        (
            {"name": "lovelace", "status": "confirmed", "badge_type": "STD"},
            seeded.ids("Ada Lovelace"),
        ),
        (
            {"email": "VIP5@example.org", "status": "rejected"},
            seeded.ids_where(status="rejected") & seeded.ids("Vip Five"),
        ),
    ):
        paged = [str(r["registration_id"]) for r in await all_pages(stack, seeded, params, 5)]
        assert len(paged) == len(set(paged)), params
        assert set(paged) == expected, params
        assert paged == [i for i in everything if i in expected], "oldest first, as unfiltered"


def parse_csv(answer: httpx.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    text = answer.content.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == [
        "registration_id",
        "email",
        "name",
        "badge_type",
        "status",
        "reason",
        "account_id",
        "created_at",
    ]
    assert all(len(row) == len(rows[0]) for row in rows)
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


async def test_the_csv_export(stack: Stack, seeded: Seeded) -> None:
    async with stack.client() as client:
        answer = await client.get(seeded.export, headers=stack.admin)
        rejected = await client.get(
            seeded.export, headers=stack.admin, params={"status": "rejected"}
        )
        lovelaces = await client.get(
            seeded.export, headers=stack.admin, params={"name": "LOVELACE", "badge_type": "STD"}
        )
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="registrations-{seeded.convention_id}.csv"'
    )
    rows = parse_csv(answer)
    listed = await all_pages(stack, seeded, {})
    assert [r["registration_id"] for r in rows] == [str(r["registration_id"]) for r in listed]
    by_id = {r["registration_id"]: r for r in rows}
    for item in listed:
        row = by_id[str(item["registration_id"])]
        assert row["status"] == item["status"]
        assert row["reason"] == (item["reason"] or "")
        assert row["badge_type"] == item["badge_type"]
        assert row["account_id"] == ""
        created = datetime.fromisoformat(row["created_at"])
        assert created.utcoffset() is not None
        assert created == datetime.fromisoformat(item["created_at"]).astimezone(UTC)

    by_name = {r["name"]: r for r in rows}
    for name in FORMULAS:
        assert f"'{name}" in by_name, name
        assert name not in by_name
    assert by_name[QUOTED]["email"] == seeded.by_name[QUOTED]["email"]
    assert by_name["Jürgen Groß"]["email"] == seeded.by_name["Jürgen Groß"]["email"]
    assert "jürgen@example.org" in answer.content.decode("utf-8")
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())

    assert {r["registration_id"] for r in parse_csv(rejected)} == seeded.ids_where(
        status="rejected"
    )
    assert {r["registration_id"] for r in parse_csv(lovelaces)} == seeded.ids(
        "Ada Lovelace", "Byron LOVELACE"
    )


async def test_only_admins_and_staff_search(stack: Stack, seeded: Seeded) -> None:
    email = fresh_email("nobody")
    made = await sign_up(stack, email)
    assert made.status_code == 201, made.text
    token = await session_token(stack, email)
    async with stack.client() as client:
        for path in (seeded.listing, seeded.export):
            assert_problem(await client.get(path, params={"name": "a"}), 401)
            assert_problem(await client.get(path, headers=bearer(token), params={"name": "a"}), 403)
            assert_problem(await client.get(path, headers={"Authorization": "Bearer no"}), 401)


async def test_bad_filters_are_problems_never_5xx(stack: Stack, seeded: Seeded) -> None:
    long_email = "a" * 288 + "@example.org"
    assert len(long_email) == 300
    async with stack.client() as client:
        for path in (seeded.listing, seeded.export):
            for params in (
                {"status": "nope"},
                {"status": ""},
                {"email": long_email},
                {"email": "x" * 400},
                {"email": "not-an-address"},
                {"email": "a@b"},
                {"email": "a\x00b@example.org"},
                {"name": ""},
                {"name": "n" * 201},
                {"name": "bad\x01name"},
                {"name": "   "},
                {"badge_type": "has space"},
                {"badge_type": "B" * 41},
                {"badge_type": "'; DROP TABLE registrations; --"},
                {"cursor": "!!!"},
            ):
                if path == seeded.export and "cursor" in params:
                    continue
                answer = await client.get(path, headers=stack.admin, params=params)
                assert_problem(answer, 400, 422)
            assert_problem(
                await client.get(
                    path.replace(seeded.convention_id, str(uuid.uuid4())), headers=stack.admin
                ),
                404,
            )


async def test_the_filters_are_documented(stack: Stack) -> None:
    async with stack.client() as client:
        schema = (await client.get("/schema/openapi.json")).json()
    base = "/api/v1/admin/conventions/{convention_id}/registrations"
    for path in (base, f"{base}.csv"):
        parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
        for name in ("email", "name", "status", "badge_type"):
            assert parameters[name]["in"] == "query"
            assert parameters[name]["description"], (path, name)
            assert parameters[name]["examples"], (path, name)
    assert "text/csv" in str(schema["paths"][f"{base}.csv"]["get"]["responses"])
