"""Lodging end to end: the gateway, the lodging decider with its process manager, the partner
bridge, the lodging projector and the partner simulator, each its own process, on the real
broker and MariaDB. The partner misbehaves on demand through its admin API; drift is
injected straight into its database, as a hotel changing things without telling anyone."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, update

from consumers.lodging.decider import draw_order
from infra.simulators.lodging import store as partner_store
from schemas.topics import Topics
from tests.e2e.conftest import Stack
from tests.support import engine_for, eventually

pytestmark = pytest.mark.e2e

STARTS, ENDS = "2027-06-01", "2027-06-03"
"""The convention's days: the partner blocks the nights of 31 May to 3 June."""
STAY = {"room_type": "KING", "check_in": "2027-06-01", "check_out": "2027-06-03"}
SETTLED = {"confirmed", "waitlisted", "failed", "cancelled"}


# --- helpers --------------------------------------------------------------------------------


async def lodging_convention(stack: Stack, quota: int = 200) -> tuple[str, list[dict[str, Any]]]:
    """An open convention whose hotels are synced from the partner."""
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=stack.admin,
            json={
                "name": "Lodging Con",
                "starts_on": STARTS,
                "ends_on": ENDS,
                "badge_types": [
                    {"code": "STD", "name": "Standard", "price_cents": 0, "quota": quota}
                ],
            },
        )
        assert created.status_code == 201, created.text
        convention_id = str(created.json()["convention_id"])
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
        )
        assert opened.status_code == 200, opened.text
        await eventually(
            lambda: partner_health(stack), lambda ok: ok, timeout=60, what="the partner simulator"
        )
        synced = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/hotels/sync", headers=stack.admin
        )
        assert synced.status_code == 202, synced.text
        assert synced.headers["location"].startswith("/api/v1/admin/lodging/syncs/")

        async def hotels() -> list[dict[str, Any]]:
            answer = await client.get(f"/api/v1/conventions/{convention_id}/hotels")
            assert answer.status_code == 200, answer.text
            return list(answer.json()["hotels"])

        found = await eventually(hotels, bool, timeout=60, interval=0.2, what="synced hotels")
    return convention_id, found


async def partner_health(stack: Stack) -> bool:
    try:
        async with httpx.AsyncClient(base_url=stack.partner_url, timeout=5) as client:
            return (await client.get("/partner/health")).status_code == 200
    except httpx.TransportError:
        return False


async def register(stack: Stack, convention_id: str, count: int) -> list[str]:
    async with stack.client() as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/api/v1/conventions/{convention_id}/registrations",
                    json={
                        "email": f"guest{n}-{uuid.uuid4().hex[:6]}@example.org",
                        "name": f"Guest {n}",
                        "badge_type": "STD",
                    },
                )
                for n in range(count)
            )
        )
    for answer in answers:
        assert answer.status_code == 201, answer.text
    return [str(answer.json()["registration_id"]) for answer in answers]


async def request_room(
    client: httpx.AsyncClient,
    registration_id: str,
    hotels: list[str],
    *,
    key: str | None = None,
    **stay: str,
) -> str:
    body = {**STAY, **stay, "hotels": hotels, "guests": ["Guest"]}
    headers = {"Idempotency-Key": key} if key else {}
    answer = await client.post(
        f"/api/v1/registrations/{registration_id}/lodging", json=body, headers=headers
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"].startswith("/api/v1/lodging/")
    return str(answer.json()["request_id"])


async def lodging(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/lodging/{request_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def settled(
    stack: Stack, request_ids: Iterable[str], timeout: float = 90
) -> dict[str, dict[str, Any]]:
    """Every request's view once none is requested or held any more."""
    ids = list(request_ids)
    async with stack.client() as client:

        async def views() -> dict[str, dict[str, Any]]:
            found = await asyncio.gather(*(lodging(client, rid) for rid in ids))
            return dict(zip(ids, found, strict=True))

        return await eventually(
            views,
            lambda v: all(view["status"] in SETTLED for view in v.values()),
            timeout=timeout,
            interval=0.3,
            what="every room request settled",
        )


async def status_of(
    stack: Stack, request_id: str, wanted: str, timeout: float = 60
) -> dict[str, Any]:
    async with stack.client() as client:
        return await eventually(
            lambda: lodging(client, request_id),
            lambda view: view["status"] == wanted,
            timeout=timeout,
            interval=0.2,
            what=f"request {request_id} {wanted}",
        )


async def set_faults(stack: Stack, **faults: object) -> None:
    async with httpx.AsyncClient(base_url=stack.partner_url, timeout=10) as client:
        answer = await client.post("/partner/admin/faults", json=faults)
        assert answer.status_code == 200, answer.text


async def hotel_action(stack: Stack, **action: object) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.partner_url, timeout=10) as client:
        answer = await client.post("/partner/admin/hotel-actions", json=action)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def partner_url(stack: Stack) -> Any:
    return stack.settings.db.url_for(partner_store.database_name(stack.settings))


async def partner_reservations(stack: Stack, convention_id: str) -> list[Any]:
    async with engine_for(partner_url(stack)) as engine, engine.connect() as conn:
        r = partner_store.reservations.c
        return list(
            (
                await conn.execute(
                    select(partner_store.reservations).where(r.convention_id == convention_id)
                )
            ).all()
        )


async def assert_no_block_overbooked(stack: Stack, convention_id: str) -> None:
    """The partner's own counts: booked never above the block, and equal to the rooms its
    held and confirmed reservations take."""
    async with engine_for(partner_url(stack)) as engine, engine.connect() as conn:
        b = partner_store.blocks.c
        blocks = (
            await conn.execute(select(partner_store.blocks).where(b.convention_id == convention_id))
        ).all()
    taken: Counter[tuple[str, str, date]] = Counter()
    for row in await partner_reservations(stack, convention_id):
        if row.status in ("held", "confirmed"):
            for n in range(row.check_in.toordinal(), row.check_out.toordinal()):
                taken[(row.hotel, row.room_type, date.fromordinal(n))] += 1
    for block in blocks:
        assert 0 <= block.booked <= block.size, block
        assert block.booked == taken[(block.hotel, block.room_type, block.night)], block


async def pickup_booked(stack: Stack, convention_id: str) -> dict[tuple[str, str, str], int]:
    async with stack.client() as client:
        answer = await client.get(
            f"/api/v1/admin/conventions/{convention_id}/lodging/pickup", headers=stack.admin
        )
    assert answer.status_code == 200, answer.text
    booked: dict[tuple[str, str, str], int] = {}
    for hotel in answer.json()["hotels"]:
        for room_type in hotel["room_types"]:
            for night in room_type["nights"]:
                booked[(hotel["code"], room_type["code"], night["night"])] = night["booked"]
    return booked


def codes(hotels: list[dict[str, Any]]) -> list[str]:
    return [hotel["code"] for hotel in hotels]


# --- tests ----------------------------------------------------------------------------------


async def test_a_room_request_is_held_then_confirmed_and_counted_in_pickup(stack: Stack) -> None:
    convention_id, hotels = await lodging_convention(stack)
    first = hotels[0]
    king = next(rt for rt in first["room_types"] if rt["code"] == "KING")
    assert {n["night"] for n in king["nights"]} >= {"2027-06-01", "2027-06-02"}
    assert all(n["left"] == n["block"] for n in king["nights"])
    [registration_id] = await register(stack, convention_id, 1)

    async with stack.client() as client:
        request_id = await request_room(client, registration_id, codes(hotels), key="room-1")
        again = await request_room(client, registration_id, codes(hotels), key="room-1")
        assert again == request_id
    view = await status_of(stack, request_id, "confirmed")
    assert view["hotel"] == first["code"]
    assert view["ack"].startswith("HB-")
    assert view["nights"] == 2

    [reservation] = await partner_reservations(stack, convention_id)
    assert (reservation.ack, reservation.status) == (view["ack"], "confirmed")
    assert reservation.reference == request_id
    booked = await pickup_booked(stack, convention_id)
    assert booked[(first["code"], "KING", "2027-06-01")] == 1
    assert booked[(first["code"], "KING", "2027-06-03")] == 0


async def test_the_partner_frozen_mid_rush_books_every_request_once_it_is_back(
    stack: Stack,
) -> None:
    convention_id, hotels = await lodging_convention(stack)
    registrations = await register(stack, convention_id, 40)
    outage = 4
    await set_faults(stack, outage_seconds=outage)
    back = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=outage)
    try:
        async with stack.client() as client:
            request_ids = await asyncio.gather(
                *(
                    request_room(client, rid, codes(hotels), key=f"rush-{rid}")
                    for rid in registrations
                )
            )
        views = await settled(stack, request_ids, timeout=120)
    finally:
        await set_faults(stack, outage_seconds=0)

    statuses = Counter(view["status"] for view in views.values())
    assert statuses["failed"] == 0, views
    assert statuses["confirmed"] + statuses["waitlisted"] == len(request_ids)
    made = await partner_reservations(stack, convention_id)
    assert min(r.created_at for r in made) >= back - timedelta(seconds=1), "held off by the outage"
    live = [r for r in made if r.status != "cancelled"]
    per_request = Counter(r.reference for r in live)
    assert set(per_request) == set(request_ids), "every request has a reservation"
    assert max(per_request.values()) == 1, "nothing booked twice"
    by_ack = {r.ack: r for r in live}
    for request_id, view in views.items():
        assert by_ack[view["ack"]].reference == request_id
        assert by_ack[view["ack"]].status == view["status"]
    await assert_no_block_overbooked(stack, convention_id)


async def test_duplicated_and_reordered_partner_events_change_nothing_twice(stack: Stack) -> None:
    convention_id, hotels = await lodging_convention(stack)
    registrations = await register(stack, convention_id, 3)
    async with stack.client() as client:
        request_ids = [await request_room(client, rid, [codes(hotels)[1]]) for rid in registrations]
    views = await settled(stack, request_ids)
    assert {v["status"] for v in views.values()} == {"confirmed"}

    await set_faults(stack, duplicate_rate=1.0, reorder_rate=0.5, reorder_delay_seconds=1.0)
    try:
        shortened, cancelled, kept = (views[rid] for rid in request_ids)
        await hotel_action(stack, action="modify", ack=shortened["ack"], check_out="2027-06-02")
        await hotel_action(stack, action="modify", ack=cancelled["ack"], check_out="2027-06-02")
        await hotel_action(stack, action="cancel", ack=cancelled["ack"])
        await status_of(stack, cancelled["request_id"], "cancelled")
        async with stack.client() as client:
            await eventually(
                lambda: lodging(client, shortened["request_id"]),
                lambda view: view["check_out"] == "2027-06-02",
                what="the hotel's change reaching the request",
            )
        hotel = codes(hotels)[1]
        expected = {"2027-06-01": 2, "2027-06-02": 1}
        await eventually(
            lambda: pickup_booked(stack, convention_id),
            lambda booked: all(booked[(hotel, "KING", n)] == c for n, c in expected.items()),
            what="pickup counting each change once",
        )
    finally:
        await set_faults(stack, duplicate_rate=0.0, reorder_rate=0.0)
    assert (await status_of(stack, kept["request_id"], "confirmed"))["check_out"] == "2027-06-03"
    after = await status_of(stack, cancelled["request_id"], "cancelled")
    assert after["cancelled_by"] == "hotel"


async def test_a_hotel_cancelling_reaches_the_attendee(stack: Stack) -> None:
    convention_id, hotels = await lodging_convention(stack)
    [registration_id] = await register(stack, convention_id, 1)
    async with stack.client() as client:
        request_id = await request_room(client, registration_id, codes(hotels))
    view = await status_of(stack, request_id, "confirmed")
    await hotel_action(stack, action="cancel", ack=view["ack"])
    cancelled = await status_of(stack, request_id, "cancelled")
    assert cancelled["cancelled_by"] == "hotel"
    booked = await pickup_booked(stack, convention_id)
    assert booked[(view["hotel"], "KING", "2027-06-01")] == 0


async def test_cancelling_a_registration_cancels_its_room_at_the_partner(stack: Stack) -> None:
    convention_id, hotels = await lodging_convention(stack)
    [registration_id] = await register(stack, convention_id, 1)
    async with stack.client() as client:
        request_id = await request_room(client, registration_id, codes(hotels))
        await status_of(stack, request_id, "confirmed")
        cancelled = await client.delete(f"/api/v1/registrations/{registration_id}")
        assert cancelled.status_code in (200, 202), cancelled.text
    view = await status_of(stack, request_id, "cancelled")
    assert view["cancelled_by"] == "registration"

    async def partner_status() -> str:
        [reservation] = await partner_reservations(stack, convention_id)
        return str(reservation.status)

    await eventually(partner_status, lambda s: s == "cancelled", what="the partner releasing it")


async def test_reconciliation_finds_and_repairs_injected_drift(stack: Stack) -> None:
    convention_id, hotels = await lodging_convention(stack)
    registrations = await register(stack, convention_id, 3)
    async with stack.client() as client:
        request_ids = [await request_room(client, rid, codes(hotels)) for rid in registrations]
    views = await settled(stack, request_ids)
    silently_cancelled, silently_changed, untouched = (views[rid] for rid in request_ids)

    async with engine_for(partner_url(stack)) as engine, engine.begin() as conn:
        r = partner_store.reservations.c
        await conn.execute(
            update(partner_store.reservations)
            .where(r.ack == silently_cancelled["ack"])
            .values(status="cancelled")
        )
        await conn.execute(
            update(partner_store.reservations)
            .where(r.ack == silently_changed["ack"])
            .values(check_out=date(2027, 6, 2))
        )
    async with httpx.AsyncClient(base_url=stack.partner_url, timeout=10) as partner:
        orphan = await partner.post(
            "/partner/v1/reservations",
            headers={"Idempotency-Key": f"orphan-{uuid.uuid4()}"},
            json={
                "convention_id": convention_id,
                "hotel": codes(hotels)[2],
                **STAY,
                "guests": ["Nobody"],
                "reference": str(uuid.uuid4()),
            },
        )
        assert orphan.status_code == 201, orphan.text
        orphan_ack = orphan.json()["ack"]

    async with stack.client() as client:
        started = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/lodging/reconcile", headers=stack.admin
        )
        assert started.status_code == 202, started.text
        location = started.headers["location"]

        async def report() -> dict[str, Any]:
            answer = await client.get(location, headers=stack.admin)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        done = await eventually(
            report, lambda r: r["status"] != "requested", timeout=60, what="the reconciliation"
        )
    assert done["status"] == "done", done
    kinds = Counter(drift["kind"] for drift in done["drifts"])
    assert kinds == {"cancelled_at_partner": 1, "stay_differs": 1, "orphan_at_partner": 1}, done

    assert (await status_of(stack, silently_cancelled["request_id"], "cancelled"))[
        "cancelled_by"
    ] == "reconciliation"
    async with stack.client() as client:
        await eventually(
            lambda: lodging(client, silently_changed["request_id"]),
            lambda view: view["check_out"] == "2027-06-02",
            what="the partner's stay taken in",
        )
    assert (await lodging_status(stack, untouched["request_id"]))["status"] == "confirmed"
    reservations = {r.ack: r for r in await partner_reservations(stack, convention_id)}
    assert reservations[orphan_ack].status == "cancelled"

    command = [sys.executable, "-m", "infra.cli", "lodging", "reconcile", convention_id]
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.settings.kafka_bootstrap_servers,
        "DATABASE_URL": stack.settings.database_url,
        "BUTTERFLY_TOPIC_PREFIX": stack.settings.topic_prefix,
        "BUTTERFLY_DB_PREFIX": stack.settings.db_prefix,
        "BUTTERFLY_PARTNER_URL": stack.partner_url,
        "BUTTERFLY_ENV_FILE": "",
    }
    cli = await asyncio.create_subprocess_exec(
        *command, env=environment, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0
    assert f"convention {convention_id}: 0 drift(s)" in out.decode(), out.decode()


async def lodging_status(stack: Stack, request_id: str) -> dict[str, Any]:
    async with stack.client() as client:
        return await lodging(client, request_id)


async def test_the_lottery_is_reproducible_from_its_seed_and_gives_nobody_two_rooms(
    stack: Stack,
) -> None:
    convention_id, hotels = await lodging_convention(stack)
    small, other = codes(hotels)[0], codes(hotels)[1]
    for hotel in (small, other):
        for night in ("2027-06-01", "2027-06-02"):
            await hotel_action(
                stack,
                action="change_block",
                convention_id=convention_id,
                hotel=hotel,
                room_type="KING",
                night=night,
                size=2,
            )
    async with stack.client() as client:
        await eventually(
            lambda: client.get(f"/api/v1/conventions/{convention_id}/hotels"),
            lambda answer: all(
                n["block"] == 2
                for h in answer.json()["hotels"]
                if h["code"] in (small, other)
                for rt in h["room_types"]
                if rt["code"] == "KING"
                for n in rt["nights"]
                if n["night"] in ("2027-06-01", "2027-06-02")
            ),
            what="the partner's block changes reaching the hotels view",
        )
        registrations = await register(stack, convention_id, 7)
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/lodging/lottery/open", headers=stack.admin
        )
        assert opened.status_code == 202, opened.text
        for registration_id in registrations:
            entry = {"registration_id": registration_id, "hotels": [small, other], **STAY}
            entered = await eventually(
                lambda entry=entry: client.post(  # type: ignore[misc]
                    f"/api/v1/conventions/{convention_id}/lodging/lottery/entries",
                    json={**entry, "guests": ["Guest"]},
                ),
                lambda answer: answer.status_code != 409,
                what="the lottery open for entries",
            )
            assert entered.status_code == 202, entered.text
        ran = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/lodging/lottery/run",
            headers=stack.admin,
            json={"seed": 2027},
        )
        assert ran.status_code == 202, ran.text

        async def lottery() -> dict[str, Any]:
            answer = await client.get(ran.headers["location"], headers=stack.admin)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        drawn = await eventually(
            lottery, lambda body: body["status"] == "drawn", timeout=60, what="the draw"
        )
    awards, waitlist = drawn["awards"], drawn["waitlist"]
    assert len(awards) == 4
    assert len(waitlist) == 3
    winners = [a["registration_id"] for a in awards]
    assert len(set(winners)) == len(winners)
    assert set(winners).isdisjoint(w["registration_id"] for w in waitlist)
    in_draw_order = [
        entry["registration_id"]
        for entry in sorted(awards + waitlist, key=lambda entry: entry["draw"])
    ]
    assert in_draw_order == [
        str(rid) for rid in draw_order(2027, [uuid.UUID(r) for r in registrations])
    ], "the draw is the seed's order: anyone can recompute it"
    assert [w["position"] for w in sorted(waitlist, key=lambda w: w["draw"])] == [1, 2, 3]

    views = await settled(stack, [a["request_id"] for a in awards])
    assert {v["status"] for v in views.values()} == {"confirmed"}
    live = [r for r in await partner_reservations(stack, convention_id) if r.status != "cancelled"]
    assert len(live) == 4
    assert len({r.reference for r in live}) == 4
    await assert_no_block_overbooked(stack, convention_id)


async def test_a_poison_partner_event_is_dead_lettered_and_the_bridge_moves_on(
    stack: Stack,
) -> None:
    convention_id, hotels = await lodging_convention(stack)
    [registration_id] = await register(stack, convention_id, 1)
    async with stack.client() as client:
        request_id = await request_room(client, registration_id, codes(hotels))
    view = await status_of(stack, request_id, "confirmed")

    topics = Topics(stack.settings.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for poison in (
            b"\xff not json",
            json.dumps({"event_id": "x", "type": "reservation.cancelled"}).encode(),
            json.dumps(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": "reservation.cancelled",
                    "convention_id": convention_id,
                    "sequence": 10**6,
                    "occurred_at": "2027-01-01T00:00:00Z",
                    "ack": view["ack"],
                    "data": {"ack": view["ack"], "guests": ["\u0000" * 5000]},
                }
            ).encode(),
        ):
            await producer.send_and_wait(
                topics.partner_lodging_events,
                value=poison,
                key=convention_id.encode(),
                headers=[("type", b"reservation.cancelled")],
            )
    finally:
        await producer.stop()

    await hotel_action(stack, action="cancel", ack=view["ack"])
    assert (await status_of(stack, request_id, "cancelled"))["cancelled_by"] == "hotel"
    async with stack.client() as client:
        health = await client.get("/health")
    assert health.status_code == 200, health.text
