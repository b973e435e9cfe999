"""A convention's dashboard in a real browser: an admin watches a rush of registrations
arrive without reloading the page (htmx refreshes each region), revenue by badge type, and
who may see the page at all."""

from __future__ import annotations

import asyncio
import re
import uuid
from urllib.parse import quote

import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import NewPage, check_accessible
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import PASSWORD, fresh_email, verified_account
from tests.e2e.test_registration_http import create_open_convention

pytestmark = pytest.mark.e2e

RUSH = 30
LIVE = 30_000
"""Milliseconds a live region may take to show what the reporting projector has folded in
(it refreshes every 5 s; the projector trails by a second or two)."""


async def account_with_role(
    stack: Stack, role: str | None, convention_id: str | None = None
) -> str:
    """A verified account's e-mail, granted `role` (of `convention_id` for staff) with the
    admin token."""
    email = fresh_email(role or "plain")
    account_id = await verified_account(stack, email)
    if role is not None:
        body = {"role": role, **({"convention_id": convention_id} if convention_id else {})}
        async with stack.client() as client:
            granted = await client.post(
                f"/api/v1/admin/accounts/{account_id}/roles", headers=stack.admin, json=body
            )
        assert granted.status_code == 200, granted.text
    return email


async def log_in_at(page: Page, path: str, email: str) -> None:
    """Open `path` logged out, be sent to the login form, log in and land back on `path`."""
    await page.goto(path)
    await expect(page).to_have_url(re.compile(re.escape(f"/login?next={quote(path)}") + "$"))
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(re.escape(path) + "$"))


async def rush(stack: Stack, convention_id: str, count: int) -> None:
    async with stack.client() as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/api/v1/conventions/{convention_id}/registrations",
                    json={
                        "email": f"rush{n}-{uuid.uuid4().hex[:8]}@example.org",
                        "name": f"Rusher {n}",
                        "badge_type": "STD",
                    },
                )
                for n in range(count)
            )
        )
    assert [a.status_code for a in answers] == [201] * count, [a.text for a in answers]


async def test_the_dashboard_follows_a_rush_without_a_reload(page: Page, stack: Stack) -> None:
    convention_id, admin = await asyncio.gather(
        create_open_convention(stack, quota=100), account_with_role(stack, "admin")
    )
    path = f"/admin/conventions/{convention_id}/dashboard"
    await log_in_at(page, path, admin)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard: Rush Con")
    await expect(page.locator("#total-registrations")).to_have_text("0")
    await expect(page.locator("#dash-registrations")).to_have_attribute(
        "hx-trigger", re.compile(r"^every 5s")
    )
    await page.evaluate("window.stillTheSamePage = true")

    await rush(stack, convention_id, RUSH)

    await expect(page.locator("#total-registrations")).to_have_text(str(RUSH), timeout=LIVE)
    await expect(page.locator("#total-confirmed")).to_have_text(str(RUSH), timeout=LIVE)
    await expect(page.locator("#note-registrations")).to_contain_text(
        f"{RUSH} registrations in all", timeout=LIVE
    )
    assert await page.evaluate("window.stillTheSamePage === true"), "the page was reloaded"
    heights = await page.locator("#chart-registrations rect.bar").evaluate_all(
        "bars => bars.map(bar => Number(bar.getAttribute('height')))"
    )
    assert sum(1 for h in heights if h > 0) >= 1, heights

    revenue = page.locator("#chart-revenue")
    await expect(revenue.locator("figcaption")).to_have_text(
        "Revenue by badge type (paid less refunded)"
    )
    await expect(revenue.locator("svg")).to_contain_text("Standard (STD)")
    await expect(revenue.locator("svg")).to_have_attribute("role", "img")
    await revenue.get_by_text("The figures of").click()
    await expect(revenue.get_by_role("table")).to_contain_text("0.00 EUR")
    await expect(page.locator("#chart-pickup")).to_contain_text("No hotel blocks yet")
    await check_accessible(page, "admin-dashboard-after-rush")


async def test_the_dashboard_is_for_admins_analysts_and_staff(
    page: Page, stack: Stack, new_page: NewPage
) -> None:
    convention_id, plain, analyst = await asyncio.gather(
        create_open_convention(stack, quota=5),
        account_with_role(stack, None),
        account_with_role(stack, "analyst"),
    )
    path = f"/admin/conventions/{convention_id}/dashboard"

    await log_in_at(page, path, plain)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    response = await page.goto(path)
    assert response is not None
    assert response.status == 403

    other = await new_page()
    await log_in_at(other, path, analyst)
    await expect(other.locator("#total-registrations")).to_have_text("0")
    await expect(other.locator("main").get_by_role("button")).to_have_count(0)
    fragment = await other.request.get(f"{path}/totals", headers={"HX-Request": "true"})
    assert fragment.status == 200
    assert 'id="dash-totals"' in await fragment.text()
    assert "<html" not in await fragment.text()
