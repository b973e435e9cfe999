"""The registration page turns from "being confirmed" to the decision by itself: the
registration decider is stopped while the attendee registers, so the form's short wait runs
out and the page shows the registration pending; once the decider runs again, htmx swaps the
decision in, without a reload and without leaving the address."""

from __future__ import annotations

import os
import re
import signal

from playwright.async_api import Frame, Page, expect

from tests.e2e.browser.conftest import check_accessible
from tests.e2e.browser.test_site_attendee_flow import site_convention
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import fresh_email


async def test_a_pending_registration_turns_into_its_decision_without_a_reload(
    page: Page, stack: Stack
) -> None:
    convention_id, _ = await site_convention(
        stack, badge_types=[{"code": "FREE", "name": "Volunteer", "price_cents": 0, "quota": 5}]
    )
    await page.goto(f"/conventions/{convention_id}")
    await page.get_by_role("textbox", name="Your name", exact=True).fill("Live Wire")
    await page.get_by_role("textbox", name="E-mail address", exact=True).fill(fresh_email("live"))
    await expect(page.get_by_role("radio", name=re.compile(r"^Volunteer"))).to_be_checked()

    decider = stack.supervisor.pids["decider.registration"]
    os.kill(decider, signal.SIGSTOP)
    try:
        await page.get_by_role("button", name="Register").click()
        await expect(page).to_have_url(re.compile(r"/registrations/[0-9a-f-]{36}"))
        status = page.locator("#registration-status")
        await expect(status).to_contain_text("Your place is being confirmed")
        await expect(status).to_have_attribute("hx-trigger", "every 1s")
        pending_url = page.url
        navigations: list[str] = []

        def navigated(frame: Frame) -> None:
            if frame == page.main_frame:
                navigations.append(frame.url)

        page.on("framenavigated", navigated)
    finally:
        os.kill(decider, signal.SIGCONT)

    await expect(status).to_contain_text("Confirmed", timeout=30_000)
    assert page.url == pending_url
    assert navigations == [], f"the page navigated: {navigations}"
    await expect(status).not_to_have_attribute("hx-trigger", re.compile(".*"))
    await expect(page.get_by_role("table").first).to_contain_text("Volunteer")
    await check_accessible(page, "site-registration-decided-live")
