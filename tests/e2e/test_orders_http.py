"""Orders and waitlists end to end: registrations that hold their seat until paid, options
bought and given back, promo codes, and a waitlist whose offer becomes a registration, through
the gateway, the registration decider and the website and orders projectors."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, verified_account
from tests.e2e.test_bad_input import assert_problem
from tests.e2e.test_catalogue_http import FUTURE, PAST, TSHIRT, admin_url, new_convention
from tests.support import eventually

pytestmark = pytest.mark.e2e

STICKER = {"code": "STICKER", "name": "Sticker", "price_cents": 0, "max_per_registration": 3}
BANQUET = {"code": "BANQUET", "name": "Banquet seat", "price_cents": 4000, "quota": 50}


@pytest.fixture(scope="module")
async def convention(stack: Stack) -> str:
    """STD at 60.00 (T-shirts with it only), FREE at nothing; a sticker for free, a banquet
    seat at 40.00; TEN: 10% off STD badges; FLAT: 5.00 off anything."""
    convention_id = await new_convention(stack)
    async with stack.client() as client:
        seats = await client.put(
            admin_url(convention_id, "badge-types/FREE/quota"),
            headers=stack.admin,
            json={"quota": 100},
        )
        assert seats.status_code == 200, seats.text
        for option in (TSHIRT, STICKER, BANQUET):
            made = await client.post(
                admin_url(convention_id, "options"), headers=stack.admin, json=option
            )
            assert made.status_code == 201, made.text
        for promo in (
            {"code": "TEN", "percent_off": 10, "badge_types": ["STD"], "valid_until": FUTURE},
            {"code": "FLAT", "amount_off_cents": 500},
            {"code": "LATER", "percent_off": 5, "valid_from": FUTURE},
            {"code": "GONE", "percent_off": 5, "valid_until": PAST},
        ):
            made = await client.post(
                admin_url(convention_id, "promo-codes"), headers=stack.admin, json=promo
            )
            assert made.status_code == 201, made.text
    return convention_id


@pytest.fixture
async def client(stack: Stack) -> Any:
    async with stack.client() as shared:
        yield shared


async def register(
    client: httpx.AsyncClient, convention_id: str, badge_type: str = "STD", **more: Any
) -> httpx.Response:
    body = {"email": fresh_email("buyer"), "name": "Buyer", "badge_type": badge_type, **more}
    return await client.post(f"/api/v1/conventions/{convention_id}/registrations", json=body)


async def test_a_registration_with_something_to_pay_holds_its_seat_until_paid(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    answer = await register(
        client,
        convention,
        options=[{"code": "TSHIRT", "variant": "M"}],
        promo_code="TEN",
    )
    assert answer.status_code == 201, answer.text
    placed = answer.json()
    assert placed["status"] == "pending_payment"
    [order] = placed["orders"]
    assert order["status"] == "pending_payment"
    assert [(line["kind"], line["code"], line["variant"]) for line in order["lines"]] == [
        ("badge", "STD", None),
        ("option", "TSHIRT", "M"),
    ]
    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == (
        8500,
        600,
        7900,
    )
    assert (order["currency"], order["promo_code"], order["paid_cents"]) == ("EUR", "TEN", 0)
    assert order["hold_until"] is not None
    registration_id = placed["registration_id"]
    assert order["links"]["pay"] == (
        f"/api/v1/registrations/{registration_id}/orders/{order['order_id']}/payments"
    )
    assert placed["amount_due_cents"] == 7900

    shown = await client.get(f"/api/v1/registrations/{registration_id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["orders"] == placed["orders"]
    one = await client.get(order["links"]["self"])
    assert one.status_code == 200, one.text
    assert one.json() == order

    tshirt = next(
        o
        for o in (await client.get(f"/api/v1/conventions/{convention}")).json()["options"]
        if o["code"] == "TSHIRT"
    )
    assert tshirt["sold"] >= 1
    assert next(v for v in tshirt["variants"] if v["code"] == "M")["taken"] >= 1
    listed = await client.get(
        admin_url(convention, "orders"), headers=stack.admin, params={"status": "pending_payment"}
    )
    assert listed.status_code == 200, listed.text
    assert order["order_id"] in {o["order_id"] for o in listed.json()["items"]}
    promos = await client.get(admin_url(convention, "promo-codes"), headers=stack.admin)
    assert next(p for p in promos.json()["items"] if p["code"] == "TEN")["uses"] >= 1


async def test_an_unpaid_registration_can_be_cancelled_freeing_its_options(
    client: httpx.AsyncClient, convention: str
) -> None:
    async def large_taken() -> int:
        view = (await client.get(f"/api/v1/conventions/{convention}")).json()
        tshirt = next(o for o in view["options"] if o["code"] == "TSHIRT")
        return int(next(v for v in tshirt["variants"] if v["code"] == "L")["taken"])

    before = await large_taken()
    placed = await register(client, convention, options=[{"code": "TSHIRT", "variant": "L"}])
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "pending_payment"
    await eventually(large_taken, lambda taken: taken == before + 1, what="the T-shirt held")
    cancelled = await client.delete(f"/api/v1/registrations/{placed.json()['registration_id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    await eventually(large_taken, lambda taken: taken == before, what="the T-shirt back")


@pytest.mark.parametrize(
    ("more", "reason"),
    [
        ({"options": [{"code": "NOPE"}]}, "unknown_option"),
        ({"options": [{"code": "TSHIRT", "variant": "XXS"}]}, "unknown_variant"),
        ({"options": [{"code": "TSHIRT", "variant": "L", "quantity": 3}]}, "limit_reached"),
        ({"badge_type": "FREE", "options": [{"code": "TSHIRT", "variant": "L"}]}, None),
        ({"promo_code": "NOSUCH"}, "unknown_code"),
        ({"promo_code": "LATER"}, "code_not_yet_valid"),
        ({"promo_code": "GONE"}, "code_expired"),
    ],
)
async def test_a_registration_the_catalogue_cannot_fill_is_refused_with_its_reason(
    client: httpx.AsyncClient, convention: str, more: dict[str, Any], reason: str | None
) -> None:
    answer = await register(client, convention, **more)
    problem = assert_problem(answer, 409)
    assert problem["reason"] == (reason or "option_not_for_badge"), problem
    assert problem["detail"]


async def test_options_are_bought_after_registering_and_given_back(
    client: httpx.AsyncClient, convention: str
) -> None:
    made = await register(client, convention, "FREE")
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "confirmed"
    registration_id = made.json()["registration_id"]
    url = f"/api/v1/registrations/{registration_id}/orders"
    key = {"Idempotency-Key": f"stickers-{uuid.uuid4()}"}
    body = {"options": [{"code": "STICKER", "quantity": 2}]}

    bought = await client.post(url, json=body, headers=key)
    assert bought.status_code == 201, bought.text
    order = bought.json()
    assert (order["status"], order["total_cents"], order["first"]) == ("paid", 0, False)
    again = await client.post(url, json=body, headers=key)
    assert again.status_code == 201, again.text
    assert again.json()["order_id"] == order["order_id"]
    other = await client.post(url, json={"options": [{"code": "STICKER"}]}, headers=key)
    assert assert_problem(other, 422)["reason"] == "idempotency_key_reused"

    too_many = await client.post(url, json={"options": [{"code": "STICKER", "quantity": 2}]})
    assert assert_problem(too_many, 409)["reason"] == "limit_reached"

    given = await client.delete(
        f"/api/v1/registrations/{registration_id}/options/STICKER", params={"quantity": 1}
    )
    assert given.status_code == 200, given.text
    [line] = next(o for o in given.json()["orders"] if o["order_id"] == order["order_id"])["lines"]
    assert (line["quantity"], line["removed"]) == (2, 1)


async def test_a_promo_code_reprices_an_unpaid_order(
    client: httpx.AsyncClient, convention: str
) -> None:
    made = await register(client, convention, "FREE")
    assert made.status_code == 201, made.text
    registration_id = made.json()["registration_id"]
    bought = await client.post(
        f"/api/v1/registrations/{registration_id}/orders",
        json={"options": [{"code": "BANQUET"}]},
    )
    assert bought.status_code == 201, bought.text
    order = bought.json()
    assert (order["status"], order["total_cents"]) == ("pending_payment", 4000)
    url = f"{order['links']['self']}/promo-code"

    applied = await client.post(url, json={"promo_code": "FLAT"})
    assert applied.status_code == 200, applied.text
    assert (applied.json()["promo_code"], applied.json()["total_cents"]) == ("FLAT", 3500)
    twice = await client.post(url, json={"promo_code": "TEN"})
    assert assert_problem(twice, 409)["reason"] == "code_already_applied"
    shown = await client.get(f"/api/v1/registrations/{registration_id}")
    assert shown.json()["amount_due_cents"] == 3500


async def test_orders_of_an_account_are_its_own(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    owner_email, stranger_email = fresh_email("owner"), fresh_email("stranger")
    for email in (owner_email, stranger_email):
        await verified_account(stack, email)
    owner = bearer(await session_token(stack, owner_email))
    stranger = bearer(await session_token(stack, stranger_email))
    made = await client.post(
        f"/api/v1/conventions/{convention}/registrations",
        headers=owner,
        json={"email": owner_email, "name": "Owner", "badge_type": "FREE"},
    )
    assert made.status_code == 201, made.text
    registration_id = made.json()["registration_id"]
    bought = await client.post(
        f"/api/v1/registrations/{registration_id}/orders",
        headers=owner,
        json={"options": [{"code": "STICKER"}]},
    )
    assert bought.status_code == 201, bought.text
    order_url = bought.json()["links"]["self"]
    for method, url, body in (
        ("GET", f"/api/v1/registrations/{registration_id}", None),
        ("GET", order_url, None),
        ("POST", f"/api/v1/registrations/{registration_id}/orders", {"options": [{"code": "X"}]}),
        ("DELETE", f"/api/v1/registrations/{registration_id}/options/STICKER", None),
        ("POST", f"{order_url}/promo-code", {"promo_code": "FLAT"}),
    ):
        for headers in (stranger, {}):
            answer = await client.request(method, url, headers=headers, json=body)
            assert_problem(answer, 404)
    assert (await client.get(order_url, headers=owner)).status_code == 200


async def test_a_waitlist_offers_a_freed_seat_to_the_first_in_line(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    convention_id = await new_convention(stack)
    quota = await client.put(
        admin_url(convention_id, "badge-types/FREE/quota"), headers=stack.admin, json={"quota": 1}
    )
    assert quota.status_code == 200, quota.text
    waiter_email = fresh_email("waiter")
    await verified_account(stack, waiter_email)
    waiter = bearer(await session_token(stack, waiter_email))
    join_url = f"/api/v1/conventions/{convention_id}/waitlist"
    wait_for_free = {"kind": "badge", "code": "FREE"}

    early = await client.post(join_url, headers=waiter, json=wait_for_free)
    assert assert_problem(early, 409)["reason"] == "not_sold_out"

    holder = await register(client, convention_id, "FREE")
    assert holder.status_code == 201, holder.text
    first = await client.post(join_url, headers=waiter, json=wait_for_free)
    assert first.status_code == 201, first.text
    entry = first.json()
    assert (entry["status"], entry["position"], entry["email"]) == ("waiting", 1, waiter_email)
    guest = await client.post(
        join_url, json={**wait_for_free, "email": fresh_email("guest"), "name": "Guest"}
    )
    assert guest.status_code == 201, guest.text
    assert guest.json()["position"] == 2

    mine = await client.get("/api/v1/me/waitlist", headers=waiter)
    assert mine.status_code == 200, mine.text
    assert [e["entry_id"] for e in mine.json()["items"]] == [entry["entry_id"]]
    assert_problem(await client.get(entry["links"]["self"]), 404)

    cancelled = await client.delete(f"/api/v1/registrations/{holder.json()['registration_id']}")
    assert cancelled.status_code == 200, cancelled.text

    async def waiter_entry() -> dict[str, Any]:
        answer = await client.get(entry["links"]["self"], headers=waiter)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    offered = await eventually(waiter_entry, lambda e: e["status"] == "offered", what="an offer")
    assert offered["offer_expires_at"] is not None
    not_offered = await client.post(f"{guest.json()['links']['self']}/accept", json={})
    assert assert_problem(not_offered, 409)["reason"] == "no_offer"

    accepted = await client.post(f"{entry['links']['self']}/accept", headers=waiter, json={})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["status"] == "confirmed"
    assert accepted.json()["email"] == waiter_email
    assert (await waiter_entry())["status"] == "accepted"

    left = await client.delete(guest.json()["links"]["self"])
    assert left.status_code == 200, left.text
    assert (left.json()["status"], left.json()["position"]) == ("left", None)

    lines = await client.get(admin_url(convention_id, "waitlists"), headers=stack.admin)
    assert lines.status_code == 200, lines.text
    [line] = lines.json()["stocks"]
    assert line["stock"] == "badge:FREE"
    assert [e["status"] for e in line["entries"]] == ["accepted", "left"]


async def test_the_admin_pages_through_every_order(
    stack: Stack, client: httpx.AsyncClient, convention: str
) -> None:
    for _ in range(3):
        made = await register(client, convention, "FREE", options=[{"code": "STICKER"}])
        assert made.status_code == 201, made.text

        async def orders_of(registration_id: str = made.json()["registration_id"]) -> Any:
            return (await client.get(f"/api/v1/registrations/{registration_id}")).json()["orders"]

        await eventually(orders_of, bool, what="the free order shown by the orders projector")
    url = admin_url(convention, "orders")
    whole = await client.get(url, headers=stack.admin, params={"limit": "500"})
    assert whole.status_code == 200, whole.text
    assert whole.json()["next"] is None
    paged: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await client.get(url, headers=stack.admin, params=params)
        assert page.status_code == 200, page.text
        paged.extend(o["order_id"] for o in page.json()["items"])
        cursor = page.json()["next"]
        if cursor is None:
            break
    assert paged == [o["order_id"] for o in whole.json()["items"]]
    assert len(paged) >= 3
    paid = await client.get(url, headers=stack.admin, params={"status": "paid", "limit": "500"})
    assert {o["status"] for o in paid.json()["items"]} == {"paid"}
