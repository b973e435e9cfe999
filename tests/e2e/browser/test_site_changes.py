"""What an attendee changes after registering, in a real browser: a forgotten password
reset with the mailed code, an option given back, an option bought and paid for, a sold-out
option waited for, the hotel lottery offered only once it is open, a registration cancelled
after its confirmation page, a waitlist offer taken (a promo code refused, then one applied
to the order it makes), and logging out."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import check_accessible
from tests.e2e.browser.test_site_attendee_flow import log_in, register_guest, site_convention
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import RESET_SUBJECT, code_in, fresh_email, mail_to, sign_up
from tests.support import eventually

NEW = "a brand new password"


async def test_an_attendee_resets_a_password_gives_back_cancels_and_takes_an_offer(
    page: Page, stack: Stack
) -> None:
    email = fresh_email("changer")
    assert (await sign_up(stack, email)).status_code == 201
    await page.goto("/password-reset")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_role("button", name="Send me a code").click()
    await expect(page.get_by_role("status")).to_contain_text("code to reset")
    await check_accessible(page, "site-reset-confirm")
    await page.get_by_label("Code from the mail").fill("x" * 30)
    await page.get_by_label("New password").fill(NEW)
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.locator("#f-token-error")).to_be_visible()
    code = code_in(await mail_to(stack, email, RESET_SUBJECT))
    await page.get_by_label("Code from the mail").fill(code)
    await page.get_by_label("New password").fill(NEW)
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.get_by_role("status")).to_contain_text("password is changed")
    await log_in(page, email, NEW)

    conv, _ = await site_convention(
        stack,
        badge_types=[
            {"code": "FREE", "name": "Volunteer", "price_cents": 0, "quota": 5},
            {"code": "ONE", "name": "Last seat", "price_cents": 1000, "quota": 1},
        ],
        options=(
            {"code": "STICKER", "name": "Sticker", "price_cents": 0, "max_per_registration": 3},
            {"code": "DINNER", "name": "Dinner", "price_cents": 1500, "quota": 5},
            {"code": "PIN", "name": "Pin", "price_cents": 200, "quota": 0},
        ),
        promo_codes=({"code": "TENOFF", "amount_off_cents": 100},),
        hotels=True,
    )
    await page.goto("/conventions")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Conventions")
    await page.goto(f"/conventions/{conv}")
    await page.get_by_role("radio", name=re.compile("^Volunteer")).check()
    await page.get_by_role("checkbox", name=re.compile("^Sticker")).check()
    await page.get_by_label(re.compile("^How many Sticker")).fill("2")
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#registration-status")).to_contain_text("Confirmed")
    registration_url = page.url
    await page.get_by_label("How many Sticker to give back").select_option("1")
    await page.get_by_role("button", name="Give back Sticker").click()
    await expect(page.get_by_role("status").first).to_contain_text("given back")
    await expect(page.get_by_role("table").first).to_contain_text("1 given back")

    await page.get_by_role("button", name="Add the options").click()
    await expect(page.locator("#f-options-error")).to_contain_text("Choose the options to add")
    await check_accessible(page, "site-add-options-refused")
    await page.get_by_role("checkbox", name=re.compile("^Dinner")).check()
    await page.get_by_role("button", name="Add the options").click()
    await expect(page.get_by_role("status").first).to_contain_text("options are ordered")
    later = page.get_by_role("heading", name=re.compile("^Options bought later"))
    await expect(later).to_contain_text("Waiting for payment")
    await check_accessible(page, "site-options-added")
    await page.get_by_role("button", name="Pay 15.00 EUR").click()
    await expect(page).to_have_url(re.compile(f"^{re.escape(stack.payment_url)}/checkout/"))
    await page.get_by_role("button", name="Pay", exact=True).click()
    await expect(page.get_by_text("nothing left to do")).to_be_visible()

    async def options_paid() -> str:
        await page.goto(registration_url)
        return await later.inner_text()

    await eventually(options_paid, lambda t: "Paid" in t, timeout=30, what="the options paid")
    await expect(page.get_by_role("link", name="Receipt for this order")).to_be_visible()

    await page.get_by_role("button", name="Join the waitlist for Pin").click()
    await expect(page).to_have_url(re.compile("/me/waitlist"))
    await expect(page.get_by_role("article")).to_contain_text("place in line: 1")
    await check_accessible(page, "site-option-waitlist")
    await page.goto(registration_url)

    lottery = page.get_by_role("button", name="Enter the hotel lottery")
    await expect(lottery).to_have_count(0)
    async with stack.client() as client:
        opened = await client.post(
            f"/api/v1/admin/conventions/{conv}/lodging/lottery/open", headers=stack.admin
        )
        assert opened.status_code == 202, opened.text

    async def lottery_offered() -> int:
        await page.reload()
        return await lottery.count()

    await eventually(lottery_offered, bool, timeout=30, interval=0.2, what="the lottery open")
    await lottery.click()
    await expect(page.get_by_role("status").first).to_contain_text("You are in the hotel lottery")
    await page.get_by_role("link", name="Cancel this registration").click()
    await check_accessible(page, "site-cancel")
    await page.get_by_role("button", name="Yes, cancel my registration").click()
    await expect(page.locator("#registration-status")).to_contain_text("Cancelled")
    await page.goto("/me/registrations")
    await expect(page.get_by_role("table")).to_contain_text("Cancelled")

    taken = await register_guest(stack, conv, "ONE")
    assert taken.status_code == 201, taken.text
    await page.goto(f"/conventions/{conv}")
    await page.get_by_role("button", name="Join the waitlist for Last seat").click()
    await expect(page).to_have_url(re.compile("/me/waitlist"))
    last_seat = page.get_by_role("article").filter(has_text="Last seat")
    await expect(last_seat).to_contain_text("place in line: 1")
    await check_accessible(page, "site-my-waitlist")
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        gone = await client.delete(f"/api/v1/registrations/{taken.json()['registration_id']}")
        assert gone.status_code == 200, gone.text

    async def offered() -> int:
        await page.reload()
        return await page.get_by_text("Offered to you").count()

    await eventually(offered, bool, timeout=30, interval=0.2, what="the waitlist offer shown")
    await check_accessible(page, "site-offered")
    await page.get_by_label("Promo code (if you have one)").fill("NOPE")
    await page.get_by_role("button", name="Take the offer").click()
    await expect(page.locator(".error")).to_contain_text("no such promo code")
    await page.get_by_role("button", name="Take the offer").click()
    await expect(page.locator("#registration-status")).to_contain_text("Waiting for payment")
    await page.get_by_label("Promo code for this order").fill("NOPE")
    await page.get_by_role("button", name="Apply the code").click()
    await expect(page.locator(".error")).to_contain_text("no such promo code")
    await page.get_by_label("Promo code for this order").fill("TENOFF")
    await page.get_by_role("button", name="Apply the code").click()
    await expect(page.get_by_role("button", name="Pay 9.00 EUR")).to_be_visible()
    await check_accessible(page, "site-promo-on-order")
    answer = await page.goto(page.url.split("?")[0] + "/receipt")
    assert answer is not None
    assert answer.status == 404, "a registration with nothing paid has no receipt"
    await page.goto("/verify?token=abc")
    await expect(page.get_by_label("Code from the mail")).to_have_value("abc")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("link", name="Log in")).to_be_visible()
    await page.goto("/me/registrations")
    await expect(page).to_have_url(re.compile(r"/login\?next=/me/registrations$"))
