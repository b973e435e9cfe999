"""The attendee's ticket on the registration page: its QR code (the image loads through the
site, with the visitor's cookies), the token to copy, the PDF to download; a cancelled
registration shows none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import check_accessible
from tests.e2e.browser.test_admin_app import log_in
from tests.e2e.browser.test_site_attendee_flow import site_convention
from tests.e2e.browser.test_station import FREE, ticket_when_confirmed
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, verified_account

pytestmark = pytest.mark.e2e


async def test_the_owner_sees_the_ticket_and_downloads_it(page: Page, stack: Stack) -> None:
    convention_id, convention_name = await site_convention(stack, badge_types=FREE)
    email = fresh_email("ticket")
    await verified_account(stack, email)
    owner = bearer(await session_token(stack, email))
    async with stack.client() as client:
        made = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers=owner,
            json={"email": email, "name": "Tick Holder", "badge_type": "FREE"},
        )
        assert made.status_code == 201, made.text
        registration_id = str(made.json()["registration_id"])
        token = await ticket_when_confirmed(client, stack, registration_id)

    path = f"/registrations/{registration_id}"
    await log_in(page, email, path)
    ticket = page.get_by_role("region", name="Your ticket")
    qr = ticket.get_by_role("img", name=re.compile("QR code of your ticket"))
    await expect(qr).to_be_visible()
    await expect(qr).to_have_js_property("complete", True)
    assert await qr.evaluate("image => image.naturalWidth") > 0
    await ticket.get_by_text("The ticket as text, to copy").click()
    await expect(page.locator("#ticket-token")).to_have_text(token)
    await expect(ticket).to_contain_text(convention_name)
    await check_accessible(page, "site-ticket")

    async with page.expect_download() as started:
        await ticket.get_by_role("link", name="Download ticket (PDF)").click()
    download = await started.value
    assert download.suggested_filename == f"ticket-{registration_id}.pdf"
    saved = await download.path()
    assert Path(saved).read_bytes().startswith(b"%PDF")

    async with stack.client() as client:
        cancelled = await client.delete(f"/api/v1/registrations/{registration_id}", headers=owner)
        assert cancelled.status_code == 200, cancelled.text
    await page.reload()
    await expect(page.locator("#registration-status")).to_contain_text("Cancelled")
    await expect(page.get_by_role("region", name="Your ticket")).to_have_count(0)
    missing = await page.request.get(f"{path}/ticket.svg")
    assert missing.status == 409
