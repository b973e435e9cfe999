"""A convention may take registrations from accounts only; staff still register people at
the door, and a registration for someone else's e-mail is a guest registration of it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, verified_account

pytestmark = pytest.mark.e2e


async def test_accounts_only_conventions_refuse_guests_but_not_staff_at_the_door(
    stack: Stack,
) -> None:
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=stack.admin,
            json={
                "name": "Members Con",
                "starts_on": "2027-06-01",
                "ends_on": "2027-06-03",
                "allow_guests": False,
                "badge_types": [{"code": "STD", "name": "Std", "price_cents": 0, "quota": 10}],
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["allow_guests"] is False
        convention_id = created.json()["convention_id"]
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
        )
        assert opened.status_code == 200, opened.text
        url = f"/api/v1/conventions/{convention_id}/registrations"

        guest = await client.post(
            url, json={"email": fresh_email("guest"), "name": "Guest", "badge_type": "STD"}
        )
        assert guest.status_code == 401, guest.text
        assert guest.json()["type"].endswith("login-required")

        member = fresh_email("member")
        await verified_account(stack, member)
        token = await session_token(stack, member)
        mine = await client.post(
            url,
            headers=bearer(token),
            json={"email": member, "name": "Member", "badge_type": "STD"},
        )
        assert mine.status_code == 201, mine.text
        assert mine.json()["account_id"] is not None

        staff = fresh_email("staff")
        staff_id = await verified_account(stack, staff)
        granted = await client.post(
            f"/api/v1/admin/accounts/{staff_id}/roles",
            headers=stack.admin,
            json={"role": "staff", "convention_id": convention_id},
        )
        assert granted.status_code == 200, granted.text
        staff_token = await session_token(stack, staff)
        walk_in = fresh_email("walkin")
        door = await client.post(
            url,
            headers=bearer(staff_token),
            json={"email": walk_in, "name": "Walk In", "badge_type": "STD"},
        )
        assert door.status_code == 201, door.text
        assert door.json()["account_id"] is None, "a guest registration of the walk-in's e-mail"
