"""The administration app in a real browser: the first admin made with the admin token, a
convention created, stocked and opened through its forms, its registrations searched,
exported and traced back to their events; who is refused what; dead letters retried.

Accounts are made through the JSON API (signed up, verified by the mailed code, roles granted
with the admin token) and log in through the website's login form. Every test makes its own
accounts and conventions, so tests sharing the stack never see each other's.
"""

from __future__ import annotations

import asyncio
import csv
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Page, expect

from schemas.topics import Topics
from tests.conftest import TEST_TOKEN
from tests.e2e.browser.conftest import NewPage, check_accessible
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import PASSWORD, fresh_email, verified_account
from tests.support import eventually, produce

pytestmark = pytest.mark.e2e

CONVENTION_URL = re.compile(r"/admin/conventions/([0-9a-f-]{36})(\?.*)?$")


async def account(stack: Stack, tag: str, *roles: dict[str, str]) -> tuple[str, str]:
    """A verified account with these roles: its e-mail and id."""
    email = fresh_email(tag)
    account_id = await verified_account(stack, email)
    async with stack.client() as client:
        for role in roles:
            granted = await client.post(
                f"/api/v1/admin/accounts/{account_id}/roles", json=role, headers=stack.admin
            )
            assert granted.status_code == 200, granted.text
    return email, account_id


async def log_in(page: Page, email: str, next_path: str = "/admin") -> None:
    """Log in through the website's form, sent on to `next_path`."""
    if "/login" not in page.url:
        await page.goto(f"/login?next={quote(next_path)}")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(re.escape(next_path) + r"(\?.*)?$"))


async def new_convention(stack: Stack, name: str) -> str:
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=stack.admin,
            json={
                "name": name,
                "starts_on": "2027-09-01",
                "ends_on": "2027-09-02",
                "badge_types": [{"code": "STD", "name": "Standard", "price_cents": 0, "quota": 5}],
            },
        )
    assert created.status_code == 201, created.text
    return str(created.json()["convention_id"])


async def fill_row(page: Page, group: str, **fields: str) -> None:
    row = page.get_by_role("group", name=group, exact=True)
    for label, value in fields.items():
        await row.get_by_label(label.capitalize(), exact=True).fill(value)


def notice(page: Page) -> Any:
    return page.locator("p.notice")


async def test_an_admin_sets_up_a_convention_and_follows_its_registrations(
    page: Page, stack: Stack
) -> None:
    email, _ = await account(stack, "boss")
    await page.goto("/admin/bootstrap")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await log_in(page, email, "/admin/bootstrap")
    await check_accessible(page, "admin-bootstrap")
    await page.get_by_label("Admin token").fill(TEST_TOKEN)
    await page.get_by_role("button", name="Make me an admin").click()
    await expect(notice(page)).to_have_text("You are an admin now.")
    await check_accessible(page, "admin-home")

    name = f"Admin Con {uuid.uuid4().hex[:8]}"
    await page.get_by_role("link", name="New convention").click()
    await page.locator("#f-name").fill(name)
    await page.get_by_label("Starts on").fill("2027-05-01")
    await page.get_by_label("Ends on").fill("2027-05-03")
    await fill_row(page, "Badge type 1", code="STD", name="Standard", price="0", quota="10")
    await fill_row(page, "Badge type 2", code="VIP", name="Patron", price="45.00", quota="5")
    await check_accessible(page, "admin-convention-new")
    await page.get_by_role("button", name="Create the convention").click()
    await expect(notice(page)).to_have_text("The convention was created as a draft.")
    found = CONVENTION_URL.search(page.url)
    assert found is not None, page.url
    convention_id = found.group(1)
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    await check_accessible(page, "admin-convention")

    await (
        page.get_by_role("navigation", name="Convention")
        .get_by_role("link", name="Catalogue")
        .click()
    )
    await page.get_by_role("link", name="New option").click()
    await page.locator("#f-code").fill("TSHIRT")
    await page.locator("#f-name").fill("T-shirt")
    await page.locator("#f-price_cents").fill("12.50")
    await page.locator("#f-quota").fill("20")
    await fill_row(page, "Variant 1", code="M", name="Medium")
    await fill_row(page, "Variant 2", code="L", name="Large", quota="3")
    await check_accessible(page, "admin-option-new")
    await page.get_by_role("button", name="Add the option").click()
    await expect(notice(page)).to_have_text("The option was added.")
    options = page.get_by_role("table", name="Options sold with a registration")
    await expect(options.get_by_role("row", name=re.compile("TSHIRT"))).to_contain_text("12.50")
    await options.get_by_role("link", name="Edit TSHIRT").click()
    await expect(page.locator("#f-price_cents")).to_have_value("12.50")
    await page.locator("#f-price_cents").fill("15.00")
    await fill_row(page, "Variant 3", code="XL", name="Extra large")
    await page.get_by_role("button", name="Save the option").click()
    await expect(notice(page)).to_have_text("The option was changed.")
    await expect(options.get_by_role("row", name=re.compile("TSHIRT"))).to_contain_text(
        "Extra large (XL)"
    )

    await page.get_by_role("link", name="New promo code").click()
    await page.locator("#f-code").fill("EARLY")
    await page.get_by_label("Percent off").fill("10")
    await page.get_by_label("Patron (VIP)").check()
    await check_accessible(page, "admin-promo-code-new")
    await page.get_by_role("button", name="Create the promo code").click()
    await expect(notice(page)).to_have_text("The promo code was created.")
    promos = page.get_by_role("table", name="Promo codes and their uses")
    await expect(promos.get_by_role("row", name=re.compile("EARLY"))).to_contain_text("10% off")
    await check_accessible(page, "admin-catalogue")

    badge_types = page.get_by_role("table", name="Badge types, their prices and quotas")
    await page.get_by_role("link", name="Quota and tiers of VIP").click()
    await page.locator("#f-quota").fill("6")
    await page.get_by_role("button", name="Change the quota").click()
    await expect(notice(page)).to_have_text("The quota was changed.")
    await expect(badge_types.get_by_role("row", name=re.compile("VIP"))).to_contain_text("6")
    await page.get_by_role("link", name="Quota and tiers of VIP").click()
    await fill_row(page, "Tier 1", name="Early", price="30.00", seats="1")
    await check_accessible(page, "admin-badge-type")
    await page.get_by_role("button", name="Save the price tiers").click()
    await expect(notice(page)).to_have_text("The price tiers were saved.")
    await expect(badge_types.get_by_role("row", name=re.compile("VIP"))).to_contain_text(
        "Early: 30.00 EUR"
    )
    await page.get_by_label("Hold minutes").fill("20")
    await page.get_by_role("button", name="Save the order policy").click()
    await expect(notice(page)).to_have_text("The order policy was saved.")
    await expect(page.get_by_label("Hold minutes")).to_have_value("20")

    await page.get_by_role("link", name="Overview").click()
    await page.get_by_role("link", name="Open registration…").click()
    await check_accessible(page, "admin-convention-open")
    await page.get_by_role("button", name="Yes, open registration").click()
    await expect(notice(page)).to_have_text("Registration is open.")
    await expect(page.locator("dl.facts .status")).to_have_text("open")

    tag = uuid.uuid4().hex[:8]
    people = [
        (f"ada.{tag}@example.org", "Ada Lovelace", "STD"),
        (f"grace.{tag}@example.org", "Grace Hopper", "VIP"),
        (f"alan.{tag}@example.org", "Alan Turing", "VIP"),
    ]
    async with stack.client() as client:
        for address, person, badge in people:
            made = await client.post(
                f"/api/v1/conventions/{convention_id}/registrations",
                json={"email": address, "name": person, "badge_type": badge},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert made.status_code == 201, made.text

    await page.get_by_role("link", name="Registrations").click()
    await page.get_by_label("Badge type").select_option("VIP")
    await page.get_by_role("button", name="Search").click()
    listing = page.get_by_role("table", name=re.compile("Registrations"))
    await expect(listing.locator("tbody tr")).to_have_count(2)
    await expect(listing).to_contain_text("Grace Hopper")
    await expect(listing).not_to_contain_text("Ada Lovelace")
    await check_accessible(page, "admin-registrations")

    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await download_info.value
    exported = Path(await download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(exported.splitlines()))
    assert sorted(row["email"] for row in rows) == sorted(
        address for address, _, badge in people if badge == "VIP"
    )
    assert {row["badge_type"] for row in rows} == {"VIP"}

    await page.get_by_label("Badge type").select_option("")
    await page.get_by_label("E-mail").fill("not an address")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#f-email-error")).to_contain_text("not a valid e-mail address")
    await page.get_by_label("E-mail").fill(people[0][0].upper())
    await page.get_by_role("button", name="Search").click()
    await expect(listing.locator("tbody tr")).to_have_count(1)
    link = listing.get_by_role("link", name="Ada Lovelace")
    registration_id = str(await link.get_attribute("href")).rsplit("/", 1)[-1]

    async def history() -> list[str]:
        async with stack.client() as client:
            answer = await client.get(
                f"/api/v1/admin/registrations/{registration_id}/history", headers=stack.admin
            )
        return [event["type"] for event in answer.json().get("events", [])]

    await eventually(history, lambda types: "AttendeeRegistered" in types, what="the history")
    await link.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    event = page.locator("ol.history details").filter(has_text="AttendeeRegistered")
    await event.locator("summary").click()
    await expect(event.locator("pre.payload")).to_contain_text(people[0][0])
    await check_accessible(page, "admin-registration")


async def test_who_may_not_enter_is_refused(page: Page, new_page: NewPage, stack: Stack) -> None:
    mine, theirs, (admin_email, _), (staff_email, _), (attendee_email, _) = await asyncio.gather(
        new_convention(stack, f"Staff Con {uuid.uuid4().hex[:8]}"),
        new_convention(stack, f"Other Con {uuid.uuid4().hex[:8]}"),
        account(stack, "chief", {"role": "admin"}),
        account(stack, "helper"),
        account(stack, "visitor"),
    )

    attendee = await new_page()
    await log_in(attendee, attendee_email, "/conventions")
    refused = await attendee.goto("/admin")
    assert refused is not None
    assert refused.status == 403
    await expect(attendee.get_by_role("heading", level=1)).to_have_text("Not allowed")
    await attendee.goto("/admin/bootstrap")
    await attendee.get_by_label("Admin token").fill("not-the-admin-token")
    async with attendee.expect_response(
        lambda r: r.url.endswith("/admin/bootstrap") and r.request.method == "POST"
    ) as answered:
        await attendee.get_by_role("button", name="Make me an admin").click()
    assert (await answered.value).status == 422
    await expect(attendee.locator("#f-token-error")).to_have_text("This is not the admin token.")
    await expect(attendee.get_by_label("Admin token")).to_have_value("")
    await check_accessible(attendee, "admin-bootstrap-refused")

    await log_in(page, admin_email, "/admin/accounts")
    await check_accessible(page, "admin-accounts")
    await page.get_by_label("E-mail address").fill(staff_email.upper())
    await page.get_by_role("button", name="Find the account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    await page.get_by_label("Role").select_option("staff")
    await page.get_by_label("Convention").select_option(mine)
    await page.get_by_role("button", name="Grant the role").click()
    await expect(notice(page)).to_have_text("The role was granted.")
    history = page.get_by_role("table", name="Who granted or revoked what, and when")
    await expect(history).to_contain_text("granted")
    await expect(history).to_contain_text("Staff Con")
    await check_accessible(page, "admin-account")

    staff = await new_page()
    await log_in(staff, staff_email)
    conventions = staff.get_by_role("table", name="The conventions you may manage")
    await expect(conventions.locator("tbody tr")).to_have_count(1)
    await expect(conventions).to_contain_text("Staff Con")
    allowed = await staff.goto(f"/admin/conventions/{mine}/catalogue")
    assert allowed is not None
    assert allowed.status == 200
    for path in (
        f"/admin/conventions/{theirs}",
        f"/admin/conventions/{theirs}/registrations",
        "/admin/accounts",
        "/admin/dead-letters",
    ):
        answer = await staff.goto(path)
        assert answer is not None
        assert answer.status == 403, path

    await page.goto(f"/admin/accounts?email={quote(staff_email)}")
    await page.get_by_role("button", name=re.compile("Revoke staff")).click()
    await expect(notice(page)).to_have_text("The role was revoked.")
    await expect(history.locator("tbody tr")).to_have_count(2)
    await expect(page.get_by_text("An attendee: no role beyond that.")).to_be_visible()

    await page.goto("/admin/conventions/new")
    await page.locator("#f-name").fill("Broken Con")
    await page.get_by_role("button", name="More badge type rows").click()
    await expect(page.get_by_role("group", name="Badge type 8", exact=True)).to_be_visible()
    await expect(page.locator("#f-name")).to_have_value("Broken Con")
    await page.get_by_label("Starts on").fill("2027-05-01")
    await page.get_by_label("Ends on").fill("2027-05-03")
    await fill_row(page, "Badge type 2", code="STD", name="Standard", price="0", quota="-5")
    async with page.expect_response(
        lambda r: r.url.endswith("/admin/conventions") and r.request.method == "POST"
    ) as answered:
        await page.get_by_role("button", name="Create the convention").click()
    assert (await answered.value).status == 422
    await expect(page.locator("#f-badge_types_quota_1-error")).to_contain_text(
        "greater than or equal to 0"
    )
    await expect(page.locator("#f-badge_types_quota_1")).to_have_value("-5")
    await check_accessible(page, "admin-convention-refused")
    await page.locator("#f-badge_types_quota_1").fill("5")
    await page.get_by_label("Ends on").fill("2027-04-30")
    await page.get_by_role("button", name="Create the convention").click()
    await expect(page.locator("#f-ends_on-error")).to_contain_text("before")
    await expect(page.locator("#f-badge_types_quota_1-error")).to_have_count(0)


async def test_a_dead_letter_is_shown_and_retried(page: Page, stack: Stack) -> None:
    email, _ = await account(stack, "operator", {"role": "admin"})
    topics = Topics(stack.settings.topic_prefix)
    key = str(uuid.uuid4())
    await produce(
        stack.settings,
        topics.registration_commands,
        [(key, f"not an envelope {key}".encode(), [("probe", b"admin-app")])],
    )

    async def keys() -> list[str | None]:
        async with stack.client() as client:
            answer = await client.get(
                "/api/v1/admin/dead-letters", headers=stack.admin, params={"limit": 500}
            )
        return [item["key"] for item in answer.json()["items"]]

    await eventually(keys, lambda found: key in found, what="the poison record set aside")
    await log_in(page, email, "/admin/dead-letters")
    letter = page.locator("article.dead-letter").filter(has_text=key).first
    await expect(letter).to_contain_text(topics.registration_commands)
    await letter.locator("summary").click()
    await expect(letter.locator("pre.payload")).to_have_text(f"not an envelope {key}")
    await check_accessible(page, "admin-dead-letters")
    await letter.get_by_role("button", name=re.compile("Retry")).click()
    await expect(notice(page)).to_have_text("The dead letter was sent back to its topic.")
