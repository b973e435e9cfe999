"""What the website refuses, and how it says so: a sold-out badge type next to its choice with
its waitlist offered, a promo code that does not exist next to its field, a wrong password,
another attendee's registration (not found), and a form whose CSRF token is not the
session's; and the register form used with the keyboard alone."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import check_accessible
from tests.e2e.browser.test_site_attendee_flow import log_in, register_guest, site_convention
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, sign_up

BADGES = [
    {"code": "ONE", "name": "Last seat", "price_cents": 1000, "quota": 1},
    {"code": "STD", "name": "Standard", "price_cents": 1000, "quota": 10},
]


async def fill_guest(page: Page, name: str, email: str) -> None:
    await page.get_by_role("textbox", name="Your name", exact=True).fill(name)
    await page.get_by_role("textbox", name="E-mail address", exact=True).fill(email)


async def test_a_sold_out_badge_type_is_refused_next_to_it_with_its_waitlist_offered(
    page: Page, stack: Stack
) -> None:
    convention_id, _ = await site_convention(stack, badge_types=BADGES)
    await page.goto(f"/conventions/{convention_id}")
    await fill_guest(page, "Late Comer", fresh_email("late"))
    await page.get_by_role("radio", name=re.compile(r"^Last seat")).check()

    taken = await register_guest(stack, convention_id, "ONE")
    assert taken.status_code == 201, taken.text
    numbers = page.locator("#convention-numbers")
    await expect(numbers.get_by_role("row", name=re.compile(r"^Last seat"))).to_contain_text(
        "Sold out", timeout=15_000
    )

    async with page.expect_response(lambda r: r.url.endswith("/register")) as sent:
        await page.get_by_role("button", name="Register").click()
    assert (await sent.value).status == 409
    badge_error = page.locator("#f-badge_type-error")
    await expect(badge_error).to_contain_text("Last seat is sold out")
    await expect(page.get_by_role("alert")).to_contain_text("Last seat is sold out")
    await expect(page.get_by_role("textbox", name="Your name", exact=True)).to_have_value(
        "Late Comer"
    )
    await check_accessible(page, "site-sold-out")

    await expect(page.get_by_label("Your name (for the waitlist)")).to_have_value("Late Comer")
    await (
        page.locator("fieldset.badges")
        .get_by_role("button", name="Join the waitlist for Last seat")
        .click()
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your place on the waitlist")
    await expect(page.get_by_role("article")).to_contain_text("place in line: 1")
    await check_accessible(page, "site-waitlist-entry")


async def test_a_promo_code_that_does_not_exist_is_refused_next_to_its_field(
    page: Page, stack: Stack
) -> None:
    convention_id, _ = await site_convention(
        stack, badge_types=BADGES, promo_codes=({"code": "REAL", "percent_off": 10},)
    )
    await page.goto(f"/conventions/{convention_id}")
    await fill_guest(page, "Bargain Hunter", fresh_email("bargain"))
    await page.get_by_role("radio", name=re.compile(r"^Standard")).check()
    await page.get_by_label("Promo code").fill("FAKE10")
    async with page.expect_response(lambda r: r.url.endswith("/register")) as sent:
        await page.get_by_role("button", name="Register").click()
    assert (await sent.value).status == 409
    await expect(page.locator("#f-promo_code-error")).to_have_text("There is no such promo code.")
    await expect(page.get_by_label("Promo code")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Promo code")).to_have_value("FAKE10")
    await expect(page.get_by_role("radio", name=re.compile(r"^Standard"))).to_be_checked()
    await check_accessible(page, "site-bad-promo-code")


async def test_wrong_passwords_other_attendees_registrations_and_forged_forms_are_refused(
    page: Page, stack: Stack
) -> None:
    convention_id, _ = await site_convention(stack, badge_types=BADGES)
    owner, visitor = fresh_email("owner"), fresh_email("visitor")
    for email in (owner, visitor):
        made = await sign_up(stack, email)
        assert made.status_code == 201, made.text
    async with stack.client(headers=bearer(await session_token(stack, owner))) as client:
        theirs = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": owner, "name": "Owner", "badge_type": "STD"},
        )
    assert theirs.status_code == 201, theirs.text

    await page.goto("/login")
    await page.get_by_label("E-mail address").fill(visitor)
    await page.get_by_label("Password").fill("not the password at all")
    async with page.expect_response(lambda r: r.url.endswith("/login")) as sent:
        await page.get_by_role("button", name="Log in").click()
    assert (await sent.value).status == 401
    await expect(page.get_by_role("alert")).to_contain_text("Wrong e-mail or password")

    await log_in(page, visitor)
    answer = await page.goto(f"/registrations/{theirs.json()['registration_id']}")
    assert answer is not None
    assert answer.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    await check_accessible(page, "site-not-found")

    await page.goto(f"/conventions/{convention_id}")
    await page.get_by_role("radio", name=re.compile(r"^Standard")).check()
    await page.locator("form.register input[name=csrf_token]").evaluate(
        "input => { input.value = 'forged' }"
    )
    async with page.expect_response(lambda r: r.url.endswith("/register")) as sent:
        await page.get_by_role("button", name="Register").click()
    assert (await sent.value).status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    await page.goto("/me/registrations")
    await expect(page.get_by_text("You have no registration yet")).to_be_visible()


async def test_the_register_form_works_with_the_keyboard_alone(page: Page, stack: Stack) -> None:
    convention_id, _ = await site_convention(
        stack,
        badge_types=[{"code": "FREE", "name": "Volunteer", "price_cents": 0, "quota": 5}],
        options=({"code": "STICKER", "name": "Sticker", "price_cents": 0},),
    )
    await page.goto(f"/conventions/{convention_id}")
    for _ in range(40):
        if await page.evaluate("document.activeElement.name") == "name":
            break
        await page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the name field")
    await page.keyboard.type("Key Board")
    await page.keyboard.press("Tab")
    await page.keyboard.type(fresh_email("keys"))
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("radio", name=re.compile(r"^Volunteer"))).to_be_focused()
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    sticker = page.get_by_role("checkbox", name=re.compile(r"^Sticker"))
    await expect(sticker).to_be_focused()
    await page.keyboard.press("Space")
    await expect(sticker).to_be_checked()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Promo code")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Register")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/registrations/[0-9a-f-]{36}$"))
    await expect(page.locator("#registration-status")).to_contain_text("Confirmed")
    await expect(page.get_by_role("table").first).to_contain_text("Sticker")
