"""Paying through the payment provider simulator, end to end: the gateway creates the payment,
the attendee pays (or the card is declined, or the money arrives twice, or too late), the
provider's signed notifications come back through the webhook, the decider decides them
once, the clock expires the unpaid hold and has the late money refunded, and the attendee is
mailed once per decision."""

from __future__ import annotations

import asyncio
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from projections.orders import tables as t
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import fresh_email
from tests.e2e.test_catalogue_http import new_convention
from tests.support import engine_for, eventually

pytestmark = pytest.mark.e2e


async def registered(client: httpx.AsyncClient, convention_id: str) -> dict[str, Any]:
    email = fresh_email("payer")
    answer = await client.post(
        f"/api/v1/conventions/{convention_id}/registrations",
        json={"email": email, "name": "Payer", "badge_type": "STD"},
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == "pending_payment"
    return body


async def checkout(
    stack: Stack, client: httpx.AsyncClient, placed: dict[str, Any], outcome: str, **more: Any
) -> str:
    """Start paying the registration's order at the gateway, then act as the attendee at the
    provider's checkout; the provider's payment id."""
    [order] = placed["orders"]
    started = await client.post(order["links"]["pay"], headers={"Idempotency-Key": outcome})
    assert started.status_code == 201, started.text
    payment = started.json()
    assert (payment["amount_cents"], payment["currency"]) == (order["total_cents"], "EUR")
    async with httpx.AsyncClient(base_url=stack.payment_url, timeout=30) as provider:
        paid = await provider.post(
            f"/v1/payments/{payment['payment_id']}/checkout", json={"outcome": outcome, **more}
        )
        assert paid.status_code in (200, 201), paid.text
    return str(payment["payment_id"])


async def shown(client: httpx.AsyncClient, placed: dict[str, Any]) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/registrations/{placed['registration_id']}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def mails(folder: Path, address: str, subject: str) -> list[str]:
    found = []
    for path in sorted(folder.glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if address in str(message["To"]) and str(message["Subject"]).startswith(subject):
            found.append(path.name)
    return found


@pytest.fixture(scope="module")
async def convention(stack: Stack) -> str:
    return await new_convention(stack)


async def test_money_that_arrives_twice_confirms_once_and_mails_once(
    stack: Stack, convention: str
) -> None:
    async with stack.client() as client:
        placed = await registered(client, convention)
        await checkout(stack, client, placed, "duplicate")
        confirmed = await eventually(
            lambda: shown(client, placed),
            lambda body: body["status"] == "confirmed",
            what="the registration confirmed by the payment",
        )
        [order] = confirmed["orders"]
        assert (order["status"], order["paid_cents"]) == ("paid", order["total_cents"])
        assert confirmed["amount_due_cents"] == 0
        folder = Path(stack.settings.mail_dir)
        await eventually(
            lambda: _value(mails(folder, placed["email"], "Payment received")),
            lambda found: len(found) >= 1,
            what="the payment mail",
        )
        await eventually(
            lambda: _value(mails(folder, placed["email"], "Complete your payment")),
            lambda found: len(found) >= 1,
            what="the mail asking for the payment",
        )
        again = await shown(client, placed)
    assert again["refunds"] == [], "the same payment notified twice is applied once"
    assert len(mails(folder, placed["email"], "Payment received")) == 1


async def test_a_declined_card_leaves_the_order_to_pay_again(stack: Stack, convention: str) -> None:
    async with stack.client() as client:
        placed = await registered(client, convention)
        declined = await checkout(stack, client, placed, "decline")
        await eventually(
            lambda: _payments(stack, placed["registration_id"]),
            lambda found: any(p["payment_id"] == declined for p in found),
            what="the declined payment recorded",
        )
        still = await shown(client, placed)
        assert still["status"] == "pending_payment"
        await checkout(stack, client, placed, "succeed")
        await eventually(
            lambda: shown(client, placed),
            lambda body: body["status"] == "confirmed",
            what="confirmed by the second payment",
        )


async def test_money_that_arrives_after_the_hold_is_refunded_and_the_seat_sold_again(
    stack: Stack,
) -> None:
    """A one-minute hold, paid 80 seconds after checkout: the clock expires the order first;
    the late money is refunded, never a second seat."""
    convention = await new_convention(stack, policy={"currency": "EUR", "hold_minutes": 1})
    async with stack.client() as client:
        placed = await registered(client, convention)
        await checkout(stack, client, placed, "late", delay_seconds=80)
        expired = await eventually(
            lambda: shown(client, placed),
            lambda body: body["status"] == "expired",
            timeout=120,
            what="the unpaid hold expired by the clock",
        )
        assert expired["orders"][0]["status"] == "expired"
        refunded = await eventually(
            lambda: shown(client, placed),
            lambda body: any(r["status"] == "completed" for r in body["refunds"]),
            timeout=120,
            what="the late payment refunded and paid back",
        )
    [refund] = refunded["refunds"]
    assert refund["reason"] == "late_payment"
    assert refund["amount_cents"] == placed["orders"][0]["total_cents"]
    assert refunded["status"] == "expired", "late money never confirms an expired registration"
    folder = Path(stack.settings.mail_dir)
    await eventually(
        lambda: _value(mails(folder, placed["email"], "Refund from")),
        lambda found: len(found) == 1,
        what="the refund mail",
    )
    assert len(mails(folder, placed["email"], "Your order for")) == 1, "one expiry mail"


async def _payments(stack: Stack, registration_id: str) -> list[dict[str, Any]]:
    """The payments the orders read model recorded for a registration."""
    async with engine_for(stack.settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            select(t.payments.c.payment_id, t.payments.c.status).where(
                t.payments.c.registration_id == registration_id
            )
        )
        return [dict(row._mapping) for row in rows]


async def _value(value: Any) -> Any:
    return value


async def test_a_rush_through_the_gateway_sells_exactly_the_option_and_the_code(
    stack: Stack,
) -> None:
    """Forty attendees at once, each asking for the last few banquet seats and a code that
    three orders may use: exactly the stock is sold, each refusal says why."""
    convention = await new_convention(stack)
    async with stack.client() as client:
        admin = f"/api/v1/admin/conventions/{convention}"
        made = await client.post(
            f"{admin}/options",
            headers=stack.admin,
            json={"code": "BANQUET", "name": "Banquet seat", "price_cents": 4000, "quota": 4},
        )
        assert made.status_code == 201, made.text
        made = await client.post(
            f"{admin}/promo-codes",
            headers=stack.admin,
            json={"code": "RUSH", "percent_off": 25, "max_uses": 3},
        )
        assert made.status_code == 201, made.text
        seats = await client.put(
            f"{admin}/badge-types/STD/quota", headers=stack.admin, json={"quota": 100}
        )
        assert seats.status_code == 200, seats.text

        async def rusher(n: int) -> httpx.Response:
            body: dict[str, Any] = {
                "email": fresh_email(f"rush{n}"),
                "name": f"Rusher {n}",
                "badge_type": "STD",
            }
            if n % 2:
                body["options"] = [{"code": "BANQUET"}]
            else:
                body["promo_code"] = "rush"
            return await client.post(f"/api/v1/conventions/{convention}/registrations", json=body)

        answers = await asyncio.gather(*(rusher(n) for n in range(40)))
        view = (await client.get(f"/api/v1/conventions/{convention}")).json()
    placed = [a.json() for a in answers if a.status_code == 201]
    refused = [a.json() for a in answers if a.status_code == 409]
    assert len(placed) + len(refused) == 40, [a.status_code for a in answers]
    banquets = sum(line["code"] == "BANQUET" for p in placed for line in p["orders"][0]["lines"])
    codes = sum(p["orders"][0]["promo_code"] == "RUSH" for p in placed)
    assert (banquets, codes) == (4, 3)
    assert sorted({(r["reason"], r.get("subject")) for r in refused}) == [
        ("code_used_up", "RUSH"),
        ("sold_out", "BANQUET"),
    ]
    [banquet] = view["options"]
    assert (banquet["sold"], banquet["remaining"]) == (4, 0)
