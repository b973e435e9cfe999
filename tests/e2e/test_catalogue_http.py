"""The admin catalogue over HTTP (price tiers, quotas, options, promo codes, the order
policy), the convention as the public sees it (the price in force, options and what is left),
and the answers to requests the gateway refuses by itself: problem details, never a 5xx."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_bad_input import assert_problem

pytestmark = pytest.mark.e2e

PAST = "2020-01-01T00:00:00Z"
FUTURE = "2099-01-01T00:00:00Z"
POLICY = {"currency": "USD", "hold_minutes": 20, "offer_minutes": 30, "refund_percent": 50}
SIZES: list[dict[str, Any]] = [
    {"code": "M", "name": "Medium", "quota": 4},
    {"code": "L", "name": "Large"},
]
TSHIRT: dict[str, Any] = {
    "code": "TSHIRT",
    "name": "T-shirt",
    "price_cents": 2500,
    "quota": 10,
    "max_per_registration": 2,
    "variants": SIZES,
    "badge_types": ["STD"],
}


async def new_convention(
    stack: Stack, *, policy: dict[str, Any] | None = None, open_it: bool = True
) -> str:
    body: dict[str, Any] = {
        "name": "Catalogue Con",
        "starts_on": "2027-09-01",
        "ends_on": "2027-09-03",
        "badge_types": [
            {"code": "STD", "name": "Standard", "price_cents": 6000, "quota": 10},
            {"code": "FREE", "name": "Volunteer", "price_cents": 0, "quota": 3},
        ],
    }
    if policy is not None:
        body["policy"] = policy
    async with stack.client() as client:
        created = await client.post("/api/v1/admin/conventions", headers=stack.admin, json=body)
        assert created.status_code == 201, created.text
        convention_id = str(created.json()["convention_id"])
        if open_it:
            opened = await client.post(
                f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
            )
            assert opened.status_code == 200, opened.text
    return convention_id


@pytest.fixture(scope="module")
async def convention(stack: Stack) -> str:
    return await new_convention(stack, policy=POLICY)


@pytest.fixture
async def client(stack: Stack) -> Any:
    async with stack.client() as shared:
        yield shared


def admin_url(convention_id: str, rest: str) -> str:
    return f"/api/v1/admin/conventions/{convention_id}/{rest}"


def badge(view: dict[str, Any], code: str) -> dict[str, Any]:
    return next(b for b in view["badge_types"] if b["code"] == code)


async def public(client: httpx.AsyncClient, convention_id: str) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/conventions/{convention_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


# --- the public view and the order policy -----------------------------------------------------


async def test_a_new_convention_sells_at_its_own_prices_in_its_currency(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    view = await public(client, convention)
    assert view["currency"] == "USD"
    assert view["options"] == []
    standard = badge(view, "STD")
    assert (standard["price_cents"], standard["quota"], standard["sold"]) == (6000, 10, 0)
    assert (standard["remaining"], standard["tier"], standard["remaining_at_price"]) == (
        10,
        None,
        None,
    )
    assert standard["tiers"] == []
    policy = await client.get(admin_url(convention, "order-policy"), headers=stack.admin)
    assert policy.status_code == 200, policy.text
    assert {k: policy.json()[k] for k in POLICY} == POLICY


async def test_a_convention_created_without_a_policy_has_the_default_one(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    convention_id = await new_convention(stack, open_it=False)
    policy = await client.get(admin_url(convention_id, "order-policy"), headers=stack.admin)
    assert policy.status_code == 200, policy.text
    assert policy.json()["currency"] == "EUR"
    assert policy.json()["hold_minutes"] == 15


async def test_the_order_policy_is_replaced_and_a_retry_answers_the_same(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    convention_id = await new_convention(stack, open_it=False)
    url = admin_url(convention_id, "order-policy")
    body = {**POLICY, "currency": "EUR", "hold_minutes": 45}
    key = {"Idempotency-Key": f"policy-{uuid.uuid4()}"}
    answer = await client.put(url, headers={**stack.admin, **key}, json=body)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in body} == body
    again = await client.put(url, headers={**stack.admin, **key}, json=body)
    assert again.status_code == 200, again.text
    assert again.json() == answer.json()
    other = await client.put(url, headers={**stack.admin, **key}, json={**body, "hold_minutes": 5})
    assert_problem(other, 422)
    assert other.json()["reason"] == "idempotency_key_reused"


# --- price tiers and quotas -----------------------------------------------------------------


async def test_price_tiers_set_the_price_in_force(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    tiers = [
        {"name": "Early bird", "price_cents": 3000, "until": PAST},
        {"name": "First fifty", "price_cents": 4000, "size": 50},
        {"name": "Regular", "price_cents": 5000, "until": FUTURE},
    ]
    answer = await client.put(
        admin_url(convention, "badge-types/STD/tiers"), headers=stack.admin, json={"tiers": tiers}
    )
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert (shown["code"], shown["price_cents"], shown["tier"]) == ("STD", 4000, "First fifty")
    assert shown["remaining_at_price"] == 50
    assert [(t["name"], t["price_cents"], t["size"], t["sold"]) for t in shown["tiers"]] == [
        ("Early bird", 3000, None, 0),
        ("First fifty", 4000, 50, 0),
        ("Regular", 5000, None, 0),
    ]
    assert shown["tiers"][0]["until"].startswith("2020-01-01T00:00:00")
    assert badge(await public(client, convention), "STD") == shown

    cleared = await client.put(
        admin_url(convention, "badge-types/std/tiers"), headers=stack.admin, json={"tiers": []}
    )
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["price_cents"], cleared.json()["tier"]) == (6000, None)


async def test_a_quota_rises_and_never_falls_below_the_seats_taken(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    convention_id = await new_convention(stack)
    url = admin_url(convention_id, "badge-types/FREE/quota")
    raised = await client.put(url, headers=stack.admin, json={"quota": 5})
    assert raised.status_code == 200, raised.text
    assert (raised.json()["quota"], raised.json()["remaining"]) == (5, 5)
    registered = await client.post(
        f"/api/v1/conventions/{convention_id}/registrations",
        json={"email": "quota.holder@example.org", "name": "Holder", "badge_type": "FREE"},
    )
    assert registered.status_code == 201, registered.text
    lowered = await client.put(url, headers=stack.admin, json={"quota": 0})
    problem = assert_problem(lowered, 409)
    assert problem["reason"] == "quota_below_taken"
    assert badge(await public(client, convention_id), "FREE")["quota"] == 5


async def test_tiers_and_quotas_of_an_unknown_badge_type_are_not_found(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    for rest, body in (
        ("badge-types/NOPE/tiers", {"tiers": []}),
        ("badge-types/NOPE/quota", {"quota": 1}),
    ):
        answer = await client.put(admin_url(convention, rest), headers=stack.admin, json=body)
        assert assert_problem(answer, 404)["reason"] == "unknown_badge_type"
    unknown = await client.put(
        admin_url(str(uuid.uuid4()), "badge-types/STD/quota"),
        headers=stack.admin,
        json={"quota": 1},
    )
    assert_problem(unknown, 404)


# --- options ----------------------------------------------------------------------------------


async def test_an_option_is_added_shown_and_changed(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    convention_id = await new_convention(stack)
    added = await client.post(admin_url(convention_id, "options"), headers=stack.admin, json=TSHIRT)
    assert added.status_code == 201, added.text
    option = added.json()
    assert (option["code"], option["price_cents"], option["quota"]) == ("TSHIRT", 2500, 10)
    assert (option["sold"], option["remaining"], option["max_per_registration"]) == (0, 10, 2)
    assert option["badge_types"] == ["STD"]
    assert [(v["code"], v["quota"], v["taken"], v["remaining"]) for v in option["variants"]] == [
        ("M", 4, 0, 4),
        ("L", None, 0, 10),
    ]
    assert (await public(client, convention_id))["options"] == [option]

    again = await client.post(admin_url(convention_id, "options"), headers=stack.admin, json=TSHIRT)
    assert assert_problem(again, 409)["reason"] == "code_exists"

    change = {k: v for k, v in TSHIRT.items() if k != "code"}
    change |= {"price_cents": 2000, "variants": [*SIZES, {"code": "XL", "name": "XL"}]}
    changed = await client.put(
        admin_url(convention_id, "options/TSHIRT"), headers=stack.admin, json=change
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["price_cents"] == 2000
    assert [v["code"] for v in changed.json()["variants"]] == ["M", "L", "XL"]

    missing = await client.put(
        admin_url(convention_id, "options/NOPE"), headers=stack.admin, json=change
    )
    assert assert_problem(missing, 404)["reason"] == "unknown_option"


async def test_an_option_for_a_badge_type_the_convention_lacks_is_refused(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    body = {**TSHIRT, "code": "MUG", "badge_types": ["STD", "GOLD"]}
    answer = await client.post(admin_url(convention, "options"), headers=stack.admin, json=body)
    assert assert_problem(answer, 422)["reason"] == "unknown_badge_type"


# --- promo codes ------------------------------------------------------------------------------


async def test_promo_codes_are_created_listed_and_unique(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    url = admin_url(convention, "promo-codes")
    body = {
        "code": "EARLY10",
        "percent_off": 10,
        "max_uses": 100,
        "valid_from": PAST,
        "valid_until": FUTURE,
        "badge_types": ["STD"],
    }
    created = await client.post(url, headers=stack.admin, json=body)
    assert created.status_code == 201, created.text
    promo = created.json()
    assert (promo["code"], promo["percent_off"], promo["amount_off_cents"]) == ("EARLY10", 10, None)
    assert (promo["uses"], promo["remaining_uses"], promo["badge_types"]) == (0, 100, ["STD"])

    flat = await client.post(
        url, headers=stack.admin, json={"code": "FLAT5", "amount_off_cents": 500}
    )
    assert flat.status_code == 201, flat.text

    listed = await client.get(url, headers=stack.admin)
    assert listed.status_code == 200, listed.text
    assert [p["code"] for p in listed.json()["items"]] == ["EARLY10", "FLAT5"]

    twice = await client.post(url, headers=stack.admin, json={**body, "percent_off": 20})
    assert assert_problem(twice, 409)["reason"] == "code_exists"


# --- admin listings ----------------------------------------------------------------------------


async def test_a_new_convention_has_no_orders_and_no_waitlists(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    orders = await client.get(admin_url(convention, "orders"), headers=stack.admin)
    assert orders.status_code == 200, orders.text
    assert orders.json() == {"items": [], "next": None}
    lines = await client.get(admin_url(convention, "waitlists"), headers=stack.admin)
    assert lines.status_code == 200, lines.text
    assert lines.json() == {"convention_id": convention, "stocks": []}


# --- what the gateway refuses by itself ---------------------------------------------------------

BAD_ADMIN_BODIES = [
    pytest.param("badge-types/STD/tiers", {"tiers": [{"name": "x", "price_cents": -1}]}, id="neg"),
    pytest.param(
        "badge-types/STD/tiers",
        {"tiers": [{"name": "x", "price_cents": 1, "until": "2027-01-01T00:00:00"}]},
        id="naive-until",
    ),
    pytest.param("badge-types/STD/tiers", {"tiers": "cheap"}, id="tiers-not-a-list"),
    pytest.param(
        "badge-types/STD/tiers",
        {"tiers": [{"name": "x", "price_cents": 1}] * 21},
        id="too-many-tiers",
    ),
    pytest.param("badge-types/STD/tiers", {"tiers": [{"name": "a\u202eb", "price_cents": 1}]}),
    pytest.param("badge-types/STD/quota", {"quota": -5}, id="negative-quota"),
    pytest.param("badge-types/STD/quota", {"quota": "many"}, id="quota-not-a-number"),
    pytest.param("badge-types/STD/quota", {}, id="no-quota"),
    pytest.param("order-policy", {**POLICY, "currency": "usd"}, id="lowercase-currency"),
    pytest.param("order-policy", {**POLICY, "refund_percent": 101}, id="refund-over-100"),
    pytest.param("order-policy", {"currency": "EUR"}, id="policy-incomplete"),
]


@pytest.mark.parametrize(("rest", "body"), BAD_ADMIN_BODIES)
async def test_a_bad_catalogue_body_is_a_422_naming_the_field(
    stack: Stack, client: httpx.AsyncClient, convention: str, rest: str, body: dict[str, Any]
) -> None:
    answer = await client.put(admin_url(convention, rest), headers=stack.admin, json=body)
    problem = assert_problem(answer, 422)
    assert problem["errors"], problem


BAD_CREATIONS = [
    pytest.param("options", {**TSHIRT, "code": "bad code"}, id="option-code-with-a-blank"),
    pytest.param(
        "options",
        {**TSHIRT, "variants": [{"code": "m", "name": "M"}, {"code": "M", "name": "M"}]},
        id="variant-codes-twice",
    ),
    pytest.param("options", {**TSHIRT, "max_per_registration": 0}, id="max-zero"),
    pytest.param("options", {**TSHIRT, "price_cents": 10**12}, id="price-too-high"),
    pytest.param("options", {**TSHIRT, "surprise": True}, id="option-unknown-field"),
    pytest.param("promo-codes", {"code": "BOTH", "percent_off": 5, "amount_off_cents": 5}),
    pytest.param("promo-codes", {"code": "NEITHER"}, id="promo-without-discount"),
    pytest.param("promo-codes", {"code": "BIG", "percent_off": 101}, id="percent-over-100"),
    pytest.param(
        "promo-codes",
        {"code": "BACKWARDS", "percent_off": 5, "valid_from": FUTURE, "valid_until": PAST},
        id="promo-window-backwards",
    ),
    pytest.param("promo-codes", {"code": "x" * 41, "percent_off": 5}, id="promo-code-too-long"),
]


@pytest.mark.parametrize(("rest", "body"), BAD_CREATIONS)
async def test_a_bad_option_or_promo_code_is_a_422(
    stack: Stack, client: httpx.AsyncClient, convention: str, rest: str, body: dict[str, Any]
) -> None:
    answer = await client.post(admin_url(convention, rest), headers=stack.admin, json=body)
    assert_problem(answer, 422)


async def test_bodies_that_are_not_json_and_bad_paths_are_4xx(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    not_json = await client.put(
        admin_url(convention, "badge-types/STD/quota"),
        headers={**stack.admin, "Content-Type": "application/json"},
        content=b"{quota",
    )
    assert_problem(not_json, 400)
    bad_code = await client.put(
        admin_url(convention, "badge-types/a%20b/quota"), headers=stack.admin, json={"quota": 1}
    )
    assert_problem(bad_code, (400, 404))
    long_code = await client.put(
        admin_url(convention, f"options/{'X' * 41}"), headers=stack.admin, json=TSHIRT
    )
    assert_problem(long_code, (400, 404))
    bad_status = await client.get(
        admin_url(convention, "orders"), headers=stack.admin, params={"status": "lost"}
    )
    assert_problem(bad_status, 400)
    bad_cursor = await client.get(
        admin_url(convention, "orders"), headers=stack.admin, params={"cursor": "!!"}
    )
    assert_problem(bad_cursor, 400)


BAD_ATTENDEE_BODIES = [
    pytest.param(
        "registrations",
        {"options": [{"code": "TSHIRT", "quantity": 0}]},
        id="registration-option-quantity-zero",
    ),
    pytest.param(
        "registrations", {"options": [{"code": "T SHIRT"}]}, id="registration-option-bad-code"
    ),
    pytest.param("registrations", {"options": "TSHIRT"}, id="registration-options-not-a-list"),
    pytest.param(
        "registrations", {"options": [{"code": "T"}] * 51}, id="registration-too-many-options"
    ),
    pytest.param("registrations", {"promo_code": "10% off"}, id="registration-bad-promo-code"),
    pytest.param("waitlist", {"kind": "room", "code": "STD"}, id="waitlist-unknown-kind"),
    pytest.param("waitlist", {"kind": "option", "code": "TSHIRT"}, id="option-wait-without-reg"),
    pytest.param(
        "waitlist",
        {"kind": "badge", "code": "STD", "registration_id": str(uuid.uuid4())},
        id="badge-wait-with-a-registration",
    ),
    pytest.param(
        "waitlist",
        {"kind": "badge", "code": "STD", "email": "not-an-email", "name": "x"},
        id="waitlist-bad-email",
    ),
    pytest.param(
        "waitlist",
        {"kind": "badge", "code": "STD", "quantity": 1000, "email": "a@example.org", "name": "x"},
        id="waitlist-quantity-too-high",
    ),
]
REGISTRANT = {"email": "bad.body@example.org", "name": "Bad Body", "badge_type": "STD"}


@pytest.mark.parametrize(("rest", "body"), BAD_ATTENDEE_BODIES)
async def test_a_bad_attendee_body_is_a_422(
    client: httpx.AsyncClient, convention: str, rest: str, body: dict[str, Any]
) -> None:
    if rest == "registrations":
        body = REGISTRANT | body
    answer = await client.post(f"/api/v1/conventions/{convention}/{rest}", json=body)
    assert_problem(answer, 422)


async def test_a_guest_waiting_must_say_who_they_are(
    client: httpx.AsyncClient, convention: str
) -> None:
    answer = await client.post(
        f"/api/v1/conventions/{convention}/waitlist", json={"kind": "badge", "code": "STD"}
    )
    problem = assert_problem(answer, 422)
    assert {e["field"] for e in problem["errors"]} == {"email", "name"}


async def test_unknown_orders_entries_and_registrations_are_not_found(
    client: httpx.AsyncClient,
) -> None:
    registration, order = uuid.uuid4(), uuid.uuid4()
    for method, url, body in (
        ("GET", f"/api/v1/registrations/{registration}/orders/{order}", None),
        ("POST", f"/api/v1/registrations/{registration}/orders", {"options": [{"code": "T"}]}),
        ("DELETE", f"/api/v1/registrations/{registration}/options/TSHIRT", None),
        (
            "POST",
            f"/api/v1/registrations/{registration}/orders/{order}/promo-code",
            {"promo_code": "X"},
        ),
        ("GET", f"/api/v1/waitlist/{uuid.uuid4()}", None),
        ("DELETE", f"/api/v1/waitlist/{uuid.uuid4()}", None),
        ("POST", f"/api/v1/waitlist/{uuid.uuid4()}/accept", {}),
        (
            "POST",
            f"/api/v1/conventions/{uuid.uuid4()}/waitlist",
            {"kind": "badge", "code": "STD", "email": "a@example.org", "name": "A"},
        ),
    ):
        answer = await client.request(method, url, json=body)
        assert_problem(answer, 404)


async def test_my_waitlist_wants_a_login(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/me/waitlist")
    assert_problem(answer, 401)
