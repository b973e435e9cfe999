"""Transfers end to end: the seat moves to another account, the quota does not change, and
both holders see it; one e-mail still holds one seat per convention."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import bearer, fresh_email, session_token, verified_account
from tests.e2e.test_registration_http import create_open_convention

pytestmark = pytest.mark.e2e


async def test_an_owner_transfers_a_registration_and_both_see_it(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 10)
    giver, taker = fresh_email("giver"), fresh_email("taker")
    giver_id = await verified_account(stack, giver)
    taker_id = await verified_account(stack, taker)
    giver_token, taker_token = await session_token(stack, giver), await session_token(stack, taker)

    async with stack.client() as client:
        made = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers=bearer(giver_token),
            json={"email": giver, "name": "Giver", "badge_type": "STD"},
        )
        assert made.status_code == 201, made.text
        registration_id = made.json()["registration_id"]
        sold_before = (await client.get(f"/api/v1/conventions/{convention_id}")).json()

        stranger = await client.post(
            f"/api/v1/registrations/{registration_id}/transfer",
            headers=bearer(taker_token),
            json={"to_email": taker},
        )
        assert stranger.status_code == 404, "only its owner, staff or an admin moves it"

        moved = await client.post(
            f"/api/v1/registrations/{registration_id}/transfer",
            headers=bearer(giver_token),
            json={"to_email": taker.upper()},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["account_id"] == taker_id
        assert moved.json()["email"] == taker
        assert moved.json()["status"] == "confirmed"

        sold_after = (await client.get(f"/api/v1/conventions/{convention_id}")).json()
        assert sold_after["badge_types"] == sold_before["badge_types"], "the quota is unchanged"

        taker_view = await client.get("/api/v1/me/registrations", headers=bearer(taker_token))
        assert [r["registration_id"] for r in taker_view.json()["items"]] == [registration_id]
        giver_view = (
            await client.get("/api/v1/me/registrations", headers=bearer(giver_token))
        ).json()
        assert giver_view["items"] == []
        assert [t["registration_id"] for t in giver_view["transferred_away"]] == [registration_id]
        assert giver_view["transferred_away"][0]["to_account_id"] == taker_id
        gone = await client.get(
            f"/api/v1/registrations/{registration_id}", headers=bearer(giver_token)
        )
        assert gone.status_code == 404, "it is the new holder's now"

        again = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": taker, "name": "Twice", "badge_type": "STD"},
        )
        assert again.status_code == 409, "the taker's e-mail holds the moved seat"
        fresh = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": giver, "name": "Giver again", "badge_type": "STD"},
        )
        assert fresh.status_code == 201, "the giver's e-mail is free again"
    assert giver_id != taker_id


async def test_a_transfer_to_someone_holding_a_seat_or_no_account_is_refused(
    stack: Stack,
) -> None:
    convention_id = await create_open_convention(stack, 10)
    owner, holder = fresh_email("owner"), fresh_email("holder")
    await verified_account(stack, owner)
    await verified_account(stack, holder)
    token = await session_token(stack, owner)
    async with stack.client() as client:
        mine = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers=bearer(token),
            json={"email": owner, "name": "Owner", "badge_type": "STD"},
        )
        registration_id = mine.json()["registration_id"]
        held = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": holder, "name": "Holder", "badge_type": "STD"},
        )
        assert held.status_code == 201, held.text
        url = f"/api/v1/registrations/{registration_id}/transfer"

        refused = await client.post(url, headers=bearer(token), json={"to_email": holder})
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "already_registered"
        nobody = await client.post(
            url, headers=bearer(token), json={"to_email": fresh_email("nobody")}
        )
        assert nobody.status_code == 422, nobody.text
        anonymous = await client.post(url, json={"to_email": holder})
        assert anonymous.status_code == 401
        by_admin = await client.post(url, headers=stack.admin, json={"to_email": holder})
        assert by_admin.status_code == 409, "an admin may move it, within the same rule"
        still = await client.get(f"/api/v1/registrations/{registration_id}", headers=bearer(token))
        assert still.json()["email"] == owner
