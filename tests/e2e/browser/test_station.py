"""The check-in station in a real browser (`docs/CHECKIN.md`): staff scan tickets by typing
them and Enter (what a USB scanner does); each scan is verified in the browser, a forged one
refused at once; offline, scans are checked against the downloaded list and queued (the page
reloads from the service worker), then synced when the network is back. Two tickets scanned
at two stations end as conflicts at the station whose scans came later: one refused as
already checked in, one superseded by the other station's earlier offline scan. The
dashboard counts the door. Without JavaScript the station is a plain form; an attendee may
not open it.

The convention, its registrations and their tickets are made through the API; the staff
account signs up, verifies its address by mail and gets its role with the admin token."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser.conftest import NewPage, check_accessible
from tests.e2e.browser.test_admin_dashboard import account_with_role, log_in_at
from tests.e2e.browser.test_site_attendee_flow import site_convention
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import fresh_email
from tests.support import eventually

pytestmark = pytest.mark.e2e

FREE = [{"code": "FREE", "name": "Volunteer", "price_cents": 0, "quota": 20}]


@dataclass(frozen=True)
class Attendee:
    registration_id: str
    name: str
    token: str


async def ticket_when_confirmed(
    client: httpx.AsyncClient, stack: Stack, registration_id: str
) -> str:
    async def ask() -> httpx.Response:
        return await client.get(
            f"/api/v1/registrations/{registration_id}/ticket", headers=stack.admin
        )

    answer = await eventually(
        ask, lambda r: r.status_code == 200, timeout=30, interval=0.2, what="a ticket"
    )
    return str(answer.json()["token"])


async def door(stack: Stack, count: int) -> tuple[str, list[Attendee]]:
    """An open convention with `count` confirmed (free) registrations and their tickets."""
    convention_id, _ = await site_convention(stack, badge_types=FREE)
    tag = uuid.uuid4().hex[:4]
    names = [f"Guest {chr(65 + i)} {tag}" for i in range(count)]
    async with stack.client() as client:
        made = await asyncio.gather(
            *(
                client.post(
                    f"/api/v1/conventions/{convention_id}/registrations",
                    json={"email": fresh_email("door"), "name": name, "badge_type": "FREE"},
                )
                for name in names
            )
        )
        for answer in made:
            assert answer.status_code == 201, answer.text
        ids = [str(answer.json()["registration_id"]) for answer in made]
        tokens = await asyncio.gather(*(ticket_when_confirmed(client, stack, rid) for rid in ids))
    return convention_id, [
        Attendee(rid, name, token) for rid, name, token in zip(ids, names, tokens, strict=True)
    ]


def forged(token: str) -> str:
    """The token with one character in the middle of its signature changed."""
    head, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


async def open_station(page: Page, path: str, email: str, station: str, tickets: int) -> None:
    await log_in_at(page, path, email)
    await expect(page.locator("#station-list")).to_contain_text(f"{tickets} tickets")
    await expect(page.locator("#station-verify")).to_contain_text("signatures are checked")
    await page.get_by_label("Station name").fill(station)


async def scan(page: Page, token: str) -> None:
    field = page.get_by_role("textbox", name="Ticket", exact=True)
    await field.fill(token)
    await field.press("Enter")


async def scans_of(stack: Stack, convention_id: str) -> list[dict[str, Any]]:
    async with stack.client() as client:
        answer = await client.get(
            f"/api/v1/staff/conventions/{convention_id}/check-ins",
            headers=stack.admin,
            params={"limit": "500"},
        )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def test_a_station_scans_online_and_offline_and_shows_its_conflicts(
    page: Page, new_page: NewPage, stack: Stack
) -> None:
    convention_id, people = await door(stack, 5)
    first, second, third, shared, late = people
    email = await account_with_role(stack, "staff", convention_id)
    path = f"/staff/conventions/{convention_id}/station"

    # Station B, offline from the start, is the first to scan two tickets.
    other = await new_page()
    await open_station(other, path, email, "gate-b", len(people))
    await other.context.set_offline(True)
    for attendee in (shared, late):
        await scan(other, attendee.token)
        await expect(other.locator("#scan-result")).to_contain_text(attendee.name)
    await expect(other.locator("#queue-count")).to_have_text("2 scans waiting to be sent.")

    result = page.locator("#scan-result")
    waiting = page.locator("#queue-count")
    done = page.locator("#checked-in")
    await open_station(page, path, email, "gate-a", len(people))
    for attendee in (first, late):
        await scan(page, attendee.token)
        await expect(result).to_contain_text("Checked in")
        await expect(result).to_contain_text(attendee.name)
        await expect(result).to_contain_text("Volunteer (FREE)")
        await expect(result).to_have_class(re.compile(r"\bok\b"))
    await expect(waiting).to_have_text("Every scan is sent.")

    await scan(page, forged(second.token))
    await expect(result).to_contain_text("Refused")
    await expect(result).to_contain_text("forged or altered")
    await expect(result).to_have_class(re.compile(r"\bbad\b"))
    await scan(page, first.token)
    await expect(result).to_contain_text("Already checked in here")
    await check_accessible(page, "station-scanning")

    await page.context.set_offline(True)
    await expect(page.locator("#station-network")).to_contain_text("Offline")
    for attendee in (second, third, shared):
        await scan(page, attendee.token)
        await expect(result).to_contain_text(attendee.name)
    await expect(waiting).to_have_text("3 scans waiting to be sent.")
    await expect(done.get_by_role("listitem")).to_have_count(5)
    await expect(done).to_contain_text("waiting to be sent")
    reloaded = await page.reload()
    assert reloaded is not None
    assert reloaded.from_service_worker
    await expect(waiting).to_have_text("3 scans waiting to be sent.")

    await other.context.set_offline(False)
    await expect(other.locator("#queue-count")).to_have_text("Every scan is sent.")
    await page.context.set_offline(False)
    await expect(page.locator("#station-network")).to_contain_text("Online")
    await expect(waiting).to_have_text("Every scan is sent.")
    conflicts = page.get_by_role("region", name="Conflicts")
    await expect(conflicts.get_by_role("listitem")).to_have_count(2)
    await expect(conflicts.get_by_role("listitem").filter(has_text=shared.name)).to_contain_text(
        "Already checked in elsewhere: at gate-b"
    )
    await expect(conflicts.get_by_role("listitem").filter(has_text=late.name)).to_contain_text(
        "Superseded: an earlier scan at gate-b"
    )
    await expect(done.get_by_role("listitem")).to_have_count(3)
    await check_accessible(page, "station-conflicts")

    decided = await scans_of(stack, convention_id)
    outcomes = {(s["registration_id"], s["station"]): s["outcome"] for s in decided}
    assert outcomes == {
        (first.registration_id, "gate-a"): "checked_in",
        (second.registration_id, "gate-a"): "checked_in",
        (third.registration_id, "gate-a"): "checked_in",
        (shared.registration_id, "gate-b"): "checked_in",
        (shared.registration_id, "gate-a"): "already_checked_in",
        (late.registration_id, "gate-b"): "checked_in",
        (late.registration_id, "gate-a"): "superseded",
    }

    badge = done.get_by_role("link", name=re.compile(f"Print badge for {second.name}"))
    printed = await page.request.get(str(await badge.get_attribute("href")))
    assert printed.status == 200
    assert (await printed.body()).startswith(b"%PDF")

    await page.goto(f"/admin/conventions/{convention_id}/dashboard")
    await expect(page.locator("#total-checked-in")).to_have_text("5 of 5 (100.0%)")
    replaced = page.get_by_role("table", name=re.compile("^Conflicts"))
    await expect(replaced.get_by_role("row")).to_have_count(2)
    await expect(replaced).to_contain_text("gate-a")
    await check_accessible(page, "admin-dashboard-check-in")


NO_ED25519 = """
const importKey = crypto.subtle.importKey.bind(crypto.subtle);
crypto.subtle.importKey = (format, key, algorithm, ...rest) =>
  algorithm === "Ed25519" || (algorithm && algorithm.name === "Ed25519")
    ? Promise.reject(new DOMException("Ed25519 is not supported", "NotSupportedError"))
    : importKey(format, key, algorithm, ...rest);
"""
"""A browser whose WebCrypto has no Ed25519."""


async def test_without_ed25519_the_station_trusts_the_list_and_the_server_checks(
    new_page: NewPage, stack: Stack
) -> None:
    convention_id, people = await door(stack, 1)
    email = await account_with_role(stack, "staff", convention_id)
    page = await new_page()
    await page.context.add_init_script(NO_ED25519)
    await log_in_at(page, f"/staff/conventions/{convention_id}/station", email)
    await expect(page.locator("#station-verify")).to_contain_text("cannot check ticket signatures")
    await page.get_by_label("Station name").fill("old-tablet")
    await scan(page, forged(people[0].token))
    await expect(page.locator("#scan-result")).to_contain_text(people[0].name)
    conflicts = page.get_by_role("region", name="Conflicts")
    await expect(conflicts).to_contain_text("forged or altered")
    await scan(page, people[0].token)
    await expect(page.locator("#scan-result")).to_contain_text("Checked in")
    await expect(page.locator("#queue-count")).to_have_text("Every scan is sent.")


async def test_without_javascript_the_station_is_a_form(browser: Browser, stack: Stack) -> None:
    convention_id, people = await door(stack, 1)
    email = await account_with_role(stack, "staff", convention_id)
    path = f"/staff/conventions/{convention_id}/station"
    context = await browser.new_context(base_url=stack.base_url, java_script_enabled=False)
    try:
        page = await context.new_page()
        await log_in_at(page, path, email)
        await page.get_by_label("Station name").fill("desk-1")
        await scan(page, people[0].token)
        result = page.locator("#scan-result")
        await expect(result).to_contain_text("Checked in")
        await expect(result).to_contain_text(people[0].name)
        await expect(page.get_by_label("Station name")).to_have_value("desk-1")
        await scan(page, people[0].token)
        await expect(result).to_contain_text("Already checked in")
        await expect(result).to_contain_text("desk-1")
    finally:
        await context.close()


async def test_an_attendee_may_not_open_the_station(page: Page, stack: Stack) -> None:
    convention_id, _ = await site_convention(stack, badge_types=FREE)
    path = f"/staff/conventions/{convention_id}/station"
    email = await account_with_role(stack, None)
    await log_in_at(page, path, email)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    answer = await page.goto(path)
    assert answer is not None
    assert answer.status == 403
