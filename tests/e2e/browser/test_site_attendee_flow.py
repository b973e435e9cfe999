"""An attendee's whole way through the website, in a real browser on the running stack: sign
up, confirm the e-mail with the mailed code, log in, register with an option and a promo
code, pay at the payment provider's checkout, ask for a hotel room and see it booked, and
print the receipt; every page checked against WCAG A/AA, and the registration at a phone's
width."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import PHONE, check_accessible, shot
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import PASSWORD, VERIFY_SUBJECT, code_in, fresh_email, mail_to
from tests.support import eventually

STARTS, ENDS = "2027-06-01", "2027-06-03"
TSHIRT: dict[str, Any] = {
    "code": "TSHIRT",
    "name": "T-shirt",
    "price_cents": 2000,
    "quota": 20,
    "max_per_registration": 2,
    "variants": [{"code": "M", "name": "Medium"}, {"code": "L", "name": "Large"}],
}
SETTLED = ("Booked", "waiting list", "Not booked")


async def site_convention(
    stack: Stack,
    *,
    badge_types: list[dict[str, Any]],
    options: tuple[dict[str, Any], ...] = (),
    promo_codes: tuple[dict[str, Any], ...] = (),
    hotels: bool = False,
) -> tuple[str, str]:
    """An open convention of this test's own, set up through the admin API; its id and
    name. With `hotels`, its hotel blocks are synced from the lodging partner."""
    name = f"Site Con {uuid.uuid4().hex[:6]}"
    admin = stack.admin
    async with stack.client() as client:
        made = await client.post(
            "/api/v1/admin/conventions",
            headers=admin,
            json={"name": name, "starts_on": STARTS, "ends_on": ENDS, "badge_types": badge_types},
        )
        assert made.status_code == 201, made.text
        convention_id = str(made.json()["convention_id"])
        base = f"/api/v1/admin/conventions/{convention_id}"
        for option in options:
            added = await client.post(f"{base}/options", headers=admin, json=option)
            assert added.status_code == 201, added.text
        for promo in promo_codes:
            added = await client.post(f"{base}/promo-codes", headers=admin, json=promo)
            assert added.status_code == 201, added.text
        opened = await client.post(f"{base}/open", headers=admin)
        assert opened.status_code == 200, opened.text
        if hotels:
            synced = await client.post(f"{base}/hotels/sync", headers=admin)
            assert synced.status_code == 202, synced.text

            async def listed() -> list[Any]:
                answer = await client.get(f"/api/v1/conventions/{convention_id}/hotels")
                return list(answer.json()["hotels"]) if answer.status_code == 200 else []

            await eventually(listed, bool, timeout=60, interval=0.2, what="synced hotels")
    return convention_id, name


async def register_guest(stack: Stack, convention_id: str, badge_type: str) -> httpx.Response:
    async with stack.client() as client:
        return await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": fresh_email("other"), "name": "Someone Else", "badge_type": badge_type},
        )


async def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My registrations")


async def test_an_attendee_signs_up_registers_pays_books_a_room_and_prints_a_receipt(
    page: Page, phone: Page, stack: Stack
) -> None:
    convention_id, name = await site_convention(
        stack,
        badge_types=[{"code": "STD", "name": "Standard", "price_cents": 6000, "quota": 10}],
        options=(TSHIRT,),
        promo_codes=({"code": "HALF", "percent_off": 50},),
        hotels=True,
    )
    email = fresh_email("site")

    await page.goto("/signup")
    await check_accessible(page, "site-signup")
    await page.get_by_label("Your name").fill("Grace Hopper")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create the account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your e-mail address")
    await expect(page.get_by_role("status")).to_contain_text("We mailed you a code")
    await check_accessible(page, "site-verify")

    code = code_in(await mail_to(stack, email, VERIFY_SUBJECT))
    await page.get_by_label("Code from the mail").fill(code)
    await page.get_by_role("button", name="Confirm").click()
    await expect(page).to_have_url(re.compile(r"/login\?done=verified$"))
    await expect(page.get_by_role("status")).to_contain_text("e-mail address is confirmed")
    await check_accessible(page, "site-login-after-verify")

    await log_in(page, email)
    await check_accessible(page, "site-my-registrations-empty")

    await page.goto(f"/conventions/{convention_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    await expect(page.get_by_label("E-mail address")).to_have_value(email)
    await expect(page.get_by_label("Your name")).to_have_value("Grace Hopper")
    await check_accessible(page, "site-convention")
    await page.get_by_role("radio", name=re.compile(r"^Standard")).check()
    await page.get_by_role("checkbox", name=re.compile(r"^T-shirt")).check()
    await page.get_by_label("Which T-shirt").select_option("L")
    await page.get_by_label(re.compile(r"^How many T-shirt")).fill("2")
    await page.get_by_label("Promo code").fill("half")
    await page.get_by_role("button", name="Register").click()

    await expect(page).to_have_url(re.compile(r"/registrations/[0-9a-f-]{36}$"))
    registration_url = page.url
    status = page.locator("#registration-status")
    await expect(status).to_contain_text("Waiting for payment")
    order = page.get_by_role("table").first
    await expect(order).to_contain_text("T-shirt (Large)")
    await expect(order).to_contain_text("code HALF")
    await expect(order.get_by_role("row", name=re.compile(r"^Total"))).to_contain_text("50.00 EUR")
    await check_accessible(page, "site-registration-to-pay")

    await page.get_by_role("button", name="Pay 50.00 EUR").click()
    await expect(page).to_have_url(re.compile(f"^{re.escape(stack.payment_url)}/checkout/"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Pay 50.00 EUR")
    await shot(page, "site-checkout")
    await page.get_by_role("button", name="Pay", exact=True).click()
    await expect(page.get_by_text("nothing left to do")).to_be_visible()

    await page.goto(registration_url)
    await expect(status).to_contain_text("Confirmed", timeout=30_000)
    await expect(page.get_by_role("link", name="Receipt for this order")).to_be_visible()
    await check_accessible(page, "site-registration-confirmed")

    room = page.locator("#lodging-status")
    await expect(page.get_by_label("First choice")).to_be_visible()
    await expect(page.get_by_label("Check-in (your first night)")).to_have_value(STARTS)
    await page.get_by_label("Room type").select_option("KING")
    await page.get_by_role("button", name="Request a room").click()
    await expect(page.get_by_role("status").first).to_contain_text("room request is on its way")
    await expect(room).to_contain_text("Room request")
    await expect(room).to_contain_text(re.compile("|".join(SETTLED)), timeout=60_000)
    await expect(room).to_contain_text("Booked")
    await expect(room).to_contain_text(re.compile(r"Confirmation number\s*HB-"))
    await expect(page).to_have_url(re.compile(r"/registrations/[0-9a-f-]{36}\?done="))
    await check_accessible(page, "site-room-booked")

    await page.get_by_role("link", name="Receipt for this order").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Receipt")
    receipt = page.get_by_role("article")
    await expect(receipt).to_contain_text("Grace Hopper")
    await expect(receipt.get_by_role("row", name=re.compile(r"^Paid"))).to_contain_text("50.00 EUR")
    await check_accessible(page, "site-receipt")

    await phone.context.add_cookies(await page.context.cookies())  # type: ignore[arg-type]
    await phone.goto(registration_url)
    await expect(phone.locator("#registration-status")).to_contain_text("Confirmed")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the registration scrolls sideways on a phone: {width}px"
    await check_accessible(phone, "site-registration-phone")
