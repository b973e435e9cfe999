"""The pages every visitor meets, in a real browser: the layout, logging in refused, a page
that does not exist, a form from another site."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import check_accessible
from tests.e2e.conftest import Stack


async def test_wrong_password_is_told_next_to_the_form(page: Page, stack: Stack) -> None:
    await page.goto("/login")
    await check_accessible(page, "login")
    await page.get_by_label("E-mail address").fill("nobody@example.org")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Wrong e-mail or password")
    await expect(page.get_by_label("E-mail address")).to_have_value("nobody@example.org")
    await check_accessible(page, "login-refused")


async def test_an_unknown_page_is_a_page_not_a_stack_trace(page: Page, stack: Stack) -> None:
    response = await page.goto("/conventions/not-a-convention/anything")
    assert response is not None
    assert response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")


async def test_the_layout_fits_a_phone(phone: Page, stack: Stack) -> None:
    await phone.goto("/login")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone: {width}px wide"
    await check_accessible(phone, "login-phone")
