"""A convention's lodging desk in a real browser, on the partner simulator the stack runs:
an admin syncs the hotel blocks from the page, sees the pickup of a booked room, and
reconciles with the partner to read the report; an analyst sees the blocks and no button."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import NewPage, check_accessible
from tests.e2e.browser.test_admin_dashboard import account_with_role, log_in_at
from tests.e2e.conftest import Stack
from tests.e2e.test_lodging_flow import partner_health, register, request_room, status_of
from tests.e2e.test_registration_http import create_open_convention
from tests.support import eventually

pytestmark = pytest.mark.e2e

SETTLE = 30_000
"""Milliseconds for the partner and the lodging pipeline to answer what a button asked."""


async def test_an_admin_syncs_sees_pickup_and_reconciles(
    page: Page, new_page: NewPage, stack: Stack
) -> None:
    convention_id, admin, analyst, _ = await asyncio.gather(
        create_open_convention(stack, quota=10),
        account_with_role(stack, "admin"),
        account_with_role(stack, "analyst"),
        eventually(lambda: partner_health(stack), bool, timeout=60, what="the partner simulator"),
    )
    path = f"/admin/conventions/{convention_id}/lodging"

    await log_in_at(page, path, admin)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lodging: Rush Con")
    await expect(page.locator("#hotels")).to_contain_text("Last synced from the partner: never")
    await page.get_by_role("button", name="Sync blocks from the partner").click()
    await expect(page).to_have_url(re.compile(r"/lodging\?sync=[0-9a-f-]{36}#hotels$"))
    pickup = page.locator("#pickup-table")
    await expect(pickup).to_be_visible(timeout=SETTLE)
    await expect(page.locator("#sync-status")).to_contain_text("done")
    await expect(page.locator("#hotels-table tbody tr")).to_have_count(6)
    await expect(pickup.locator("tr.subtotal")).to_have_count(3)
    await expect(page.locator("#pickup-total")).to_contain_text("0 of ")

    hotels = await page.locator("#hotels-table tbody th").all_inner_texts()
    first_hotel = re.search(r"\(([A-Z0-9]+)\)$", hotels[0])
    assert first_hotel is not None, hotels
    (registration,) = await register(stack, convention_id, 1)
    async with stack.client() as client:
        request_id = await request_room(client, registration, [first_hotel.group(1)])
    await status_of(stack, request_id, "confirmed")
    await page.goto(path)
    await expect(page.locator("#pickup-total")).to_contain_text("2 of ")
    await expect(page.locator("#requests-table")).to_contain_text(request_id[:8])
    await expect(page.locator("#requests-table")).to_contain_text("confirmed")
    await check_accessible(page, "admin-lodging")

    await page.get_by_role("button", name="Reconcile with the partner").click()
    await expect(page).to_have_url(re.compile(r"/lodging/reconciliations/[0-9a-f-]{36}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Reconciliation with the partner"
    )
    await expect(page.locator("#reconciliation-status")).to_have_text("done", timeout=SETTLE)
    await expect(page.locator("#no-drift")).to_be_visible()
    await check_accessible(page, "admin-lodging-reconciliation")

    reader = await new_page()
    await log_in_at(reader, path, analyst)
    await expect(reader.locator("#pickup-total")).to_contain_text("2 of ")
    await expect(reader.locator("#pickup-table")).to_be_visible()
    await expect(reader.locator("main").get_by_role("button")).to_have_count(0)
    await expect(reader.locator("#requests")).to_have_count(0)
    await check_accessible(reader, "admin-lodging-analyst")
