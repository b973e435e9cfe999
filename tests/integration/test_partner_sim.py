"""The lodging partner simulator as its own process (`python -m infra.cli partner-sim`), on
this run's broker and MariaDB: seeded blocks, the reservation lifecycle and its events,
idempotency, no over-booking under concurrent holds, restarts, and misbehaviour on demand."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from infra.services import free_port
from infra.settings import Settings
from infra.simulators.lodging import store
from infra.simulators.lodging.events import topic_name
from infra.simulators.lodging.seed import hotels_for
from infra.supervisor import die_with_parent
from tests.conftest import StackFactory
from tests.integration.test_processes import PROJECT, RoleProcess, role_env
from tests.support import engine_for, eventually, read_topic

pytestmark = pytest.mark.integration

FROM, TO = date(2027, 5, 1), date(2027, 5, 3)
NO_FAULTS = {
    "latency_ms": 0,
    "error_rate": 0,
    "timeout_rate": 0,
    "duplicate_rate": 0,
    "reorder_rate": 0,
    "outage_seconds": 0,
}


@dataclass
class Sim:
    """The simulator process of this module, restartable on the same port and database."""

    settings: Settings
    port: int
    log_dir: Path
    process: RoleProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)

    async def start(self) -> None:
        log_path = self.log_dir / f"partner-sim-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "infra.cli",
                "partner-sim",
                "--port",
                str(self.port),
                cwd=PROJECT,
                env={**os.environ, **role_env(self.settings)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.process = RoleProcess(process, log_path)

        async def health() -> int:
            assert self.process is not None
            if self.process.process.returncode is not None:
                raise AssertionError(f"the simulator exited:\n{self.process.tail()}")
            try:
                async with self.client() as client:
                    return (await client.get("/partner/health")).status_code
            except httpx.TransportError:
                return 0

        await eventually(health, lambda status: status == 200, timeout=30, what="the sim up")

    async def stop(self) -> None:
        if self.process is not None:
            assert await self.process.terminate() == 0, self.process.tail()
            self.process = None


@pytest.fixture(scope="module")
async def sim(
    make_settings: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Sim]:
    settings = await make_settings(partitions=3)
    running = Sim(settings, free_port(), tmp_path_factory.mktemp("partner"))
    try:
        await running.start()
        yield running
    finally:
        try:
            await running.stop()
        finally:
            await store.drop_store(settings)


@pytest.fixture
async def faults(sim: Sim) -> AsyncIterator[httpx.AsyncClient]:
    """A client for tests that set faults; every fault is off again afterwards."""
    async with sim.client() as client:
        try:
            yield client
        finally:
            answer = await client.post("/partner/admin/faults", json=NO_FAULTS)
            assert answer.status_code == 200, answer.text


async def hotels(client: httpx.AsyncClient, convention_id: str) -> dict[str, Any]:
    answer = await client.get(
        f"/partner/v1/conventions/{convention_id}/hotels",
        params={"from": FROM.isoformat(), "to": TO.isoformat()},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def hold_body(convention_id: str, hotel: str, **overrides: Any) -> dict[str, Any]:
    return {
        "convention_id": convention_id,
        "hotel": hotel,
        "room_type": "KING",
        "check_in": FROM.isoformat(),
        "check_out": TO.isoformat(),
        "guests": ["Ada Lovelace"],
        "reference": str(uuid.uuid4()),
        **overrides,
    }


async def new_convention(client: httpx.AsyncClient) -> tuple[str, str]:
    """A fresh convention id, seeded, and the code of its first hotel."""
    convention_id = str(uuid.uuid4())
    return convention_id, (await hotels(client, convention_id))["hotels"][0]["code"]


async def hold(client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None) -> Any:
    return await client.post(
        "/partner/v1/reservations", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())}
    )


async def events_of(sim: Sim, convention_id: str) -> list[dict[str, Any]]:
    """The convention's records on the partner topic, in topic order (one partition)."""
    records = await read_topic(sim.settings, topic_name(sim.settings.topic_prefix))
    mine = [r for r in records if r.key == convention_id.encode()]
    assert len({r.partition for r in mine}) <= 1
    return [json.loads(r.value) for r in sorted(mine, key=lambda r: r.offset)]


async def test_hotels_are_seeded_the_same_for_the_same_convention(sim: Sim) -> None:
    convention_id = str(uuid.uuid4())
    async with sim.client() as client:
        first = await hotels(client, convention_id)
        again = await hotels(client, convention_id)
        other = await hotels(client, str(uuid.uuid4()))

    assert first == again
    assert first["hotels"] != other["hotels"]
    expected = {
        (h.code, b.room_type, b.size, b.rate_cents)
        for h in hotels_for(convention_id)
        for b in h.blocks
    }
    nights = [(FROM - timedelta(days=1) + timedelta(days=n)).isoformat() for n in range(4)]
    found = set()
    for hotel in first["hotels"]:
        assert [rt["code"] for rt in hotel["room_types"]] == ["DQ", "KING"]
        for room_type in hotel["room_types"]:
            assert [n["night"] for n in room_type["nights"]] == nights
            for night in room_type["nights"]:
                assert night["booked"] == 0
                assert night["left"] == night["block"]
                assert date.fromisoformat(night["release_date"]) < FROM
                found.add((hotel["code"], room_type["code"], night["block"], night["rate_cents"]))
    assert found == expected
    assert len(first["hotels"]) == 3


async def test_hold_confirm_modify_cancel_publishes_events_in_order(sim: Sim) -> None:
    async with sim.client() as client:
        convention_id, hotel = await new_convention(client)
        held = await hold(client, hold_body(convention_id, hotel))
        assert held.status_code == 201, held.text
        ack = held.json()["ack"]
        assert held.json()["status"] == "held"
        assert ack.startswith("HB-")
        assert len(ack) == 11

        confirmed = await client.post(f"/partner/v1/reservations/{ack}/confirm")
        assert confirmed.json()["status"] == "confirmed", confirmed.text
        new_out = (TO + timedelta(days=1)).isoformat()
        modified = await client.post(
            f"/partner/v1/reservations/{ack}/modify",
            json={"check_out": new_out, "guests": ["Ada Lovelace", "Charles Babbage"]},
        )
        assert modified.status_code == 200, modified.text
        assert modified.json()["check_out"] == new_out
        assert modified.json()["status"] == "confirmed"
        room = next(
            rt
            for h in (await hotels(client, convention_id))["hotels"]
            if h["code"] == hotel
            for rt in h["room_types"]
            if rt["code"] == "KING"
        )
        assert [n["booked"] for n in room["nights"]] == [0, 1, 1, 1]

        for _ in range(2):
            cancelled = await client.post(f"/partner/v1/reservations/{ack}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
        assert (await client.get(f"/partner/v1/reservations/{ack}")).json()["status"] == "cancelled"
        listed = await client.get(
            "/partner/v1/reservations", params={"convention_id": convention_id}
        )
        assert [r["ack"] for r in listed.json()["reservations"]] == [ack]
        refused = await client.post(f"/partner/v1/reservations/{ack}/confirm")
        assert refused.status_code == 409, refused.text

    published = await eventually(
        lambda: events_of(sim, convention_id),
        lambda found: len(found) >= 4,
        what="four events on the partner topic",
    )
    assert [e["type"] for e in published] == [
        "reservation.held",
        "reservation.confirmed",
        "reservation.modified",
        "reservation.cancelled",
    ]
    assert [e["sequence"] for e in published] == [1, 2, 3, 4]
    assert {e["ack"] for e in published} == {ack}
    assert len({e["event_id"] for e in published}) == 4
    assert all(e["convention_id"] == convention_id and e["occurred_at"] for e in published)
    assert published[2]["data"]["previous"]["check_out"] == TO.isoformat()
    assert published[3]["data"]["by"] == "guest"


async def test_the_same_key_and_body_make_one_reservation_and_another_body_is_refused(
    sim: Sim,
) -> None:
    async with sim.client() as client:
        convention_id, hotel = await new_convention(client)
        body = hold_body(convention_id, hotel)
        first = await hold(client, body, key="retry-me")
        second = await hold(client, body, key="retry-me")
        assert first.status_code == second.status_code == 201, second.text
        assert first.json()["ack"] == second.json()["ack"]

        other = await hold(client, {**body, "room_type": "DQ"}, key="retry-me")
        assert other.status_code == 422, other.text
        assert other.json()["code"] == "idempotency_key_reused"
        keyless = await client.post("/partner/v1/reservations", json=body)
        assert keyless.status_code == 400, keyless.text
        bad = await hold(client, {**body, "check_out": "never", "guests": []})
        assert bad.status_code == 422
        assert {f["field"] for f in bad.json()["fields"]} == {"check_out", "guests"}

        listed = await client.get(
            "/partner/v1/reservations", params={"convention_id": convention_id}
        )
        assert len(listed.json()["reservations"]) == 1


async def test_concurrent_holds_never_over_book_a_block_and_the_hotel_acts(sim: Sim) -> None:
    night = FROM.isoformat()
    async with sim.client() as client:
        convention_id, hotel = await new_convention(client)

        async def hotel_acts(**action: Any) -> dict[str, Any]:
            answer = await client.post("/partner/admin/hotel-actions", json=action)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        block = {
            "convention_id": convention_id,
            "hotel": hotel,
            "room_type": "KING",
            "night": night,
        }
        assert (await hotel_acts(action="change_block", size=5, **block))["left"] == 5
        one_night = {"check_in": night, "check_out": (FROM + timedelta(days=1)).isoformat()}
        answers = await asyncio.gather(
            *(hold(client, hold_body(convention_id, hotel, **one_night)) for _ in range(30))
        )
        assert {a.status_code for a in answers} == {201}
        by_status = Counter(a.json()["status"] for a in answers)
        assert by_status == {"held": 5, "waitlisted": 25}

        after = await hotel_acts(action="change_block", size=6, rate_cents=9900, **block)
        assert (after["booked"], after["left"]) == (5, 1)
        waiting = next(a.json()["ack"] for a in answers if a.json()["status"] == "waitlisted")
        promoted = await hotel_acts(action="confirm_waitlisted", ack=waiting)
        assert promoted["status"] == "confirmed"
        still_waiting = [a.json()["ack"] for a in answers if a.json()["status"] == "waitlisted"]
        full = await client.post(
            "/partner/admin/hotel-actions",
            json={"action": "confirm_waitlisted", "ack": still_waiting[1]},
        )
        assert full.status_code == 409, full.text
        holder = next(a.json()["ack"] for a in answers if a.json()["status"] == "held")
        assert (await hotel_acts(action="cancel", ack=holder))["status"] == "cancelled"

    published = await eventually(
        lambda: events_of(sim, convention_id),
        lambda found: len(found) >= 35,
        what="every event of the rush and the hotel's actions",
    )
    types = Counter(e["type"] for e in published)
    assert types == {
        "block.changed": 2,
        "rate.changed": 1,
        "reservation.held": 5,
        "reservation.waitlisted": 25,
        "reservation.confirmed": 1,
        "reservation.cancelled": 1,
    }
    assert [e["sequence"] for e in published] == list(range(1, 36))
    assert published[-1]["data"]["by"] == "hotel"


@pytest.mark.usefixtures("faults")
async def test_bookings_survive_a_restart_and_held_back_events_are_published_after_it(
    sim: Sim,
) -> None:
    async with sim.client() as client:
        convention_id, hotel = await new_convention(client)
        before = await hotels(client, convention_id)
        set_faults = await client.post(
            "/partner/admin/faults", json={"reorder_rate": 1, "reorder_delay_seconds": 3600}
        )
        assert set_faults.status_code == 200, set_faults.text
        held = await hold(client, hold_body(convention_id, hotel))
        assert held.status_code == 201, held.text
        ack = held.json()["ack"]

    o = store.outbox.c
    partner_url = sim.settings.db.url_for(store.database_name(sim.settings))
    async with engine_for(partner_url) as engine, engine.connect() as conn:
        unpublished = (
            await conn.execute(
                select(o.event_id).where(o.convention_id == convention_id, o.published_at.is_(None))
            )
        ).all()
    assert len(unpublished) == 1, "the event is held back in the outbox"

    await sim.stop()
    await sim.start()

    async with sim.client() as client:
        kept = await client.get(f"/partner/v1/reservations/{ack}")
        assert kept.status_code == 200, kept.text
        assert kept.json() == held.json()
        after = await hotels(client, convention_id)
        assert (await client.get("/partner/admin/faults")).json()["reorder_rate"] == 0
    booked = [
        n["booked"]
        for h in after["hotels"]
        if h["code"] == hotel
        for rt in h["room_types"]
        if rt["code"] == "KING"
        for n in rt["nights"]
    ]
    assert booked == [0, 1, 1, 0]
    assert [h["code"] for h in after["hotels"]] == [h["code"] for h in before["hotels"]]
    published = await eventually(
        lambda: events_of(sim, convention_id),
        lambda found: len(found) >= 1,
        what="the held-back event published by the restarted sim",
    )
    assert [(e["type"], e["event_id"]) for e in published] == [
        ("reservation.held", unpublished[0].event_id)
    ]


async def test_outages_and_errors_answer_503_and_recover(
    sim: Sim, faults: httpx.AsyncClient
) -> None:
    convention_id, _ = await new_convention(faults)
    path = f"/partner/v1/conventions/{convention_id}/hotels?from={FROM}&to={TO}"

    assert (await faults.post("/partner/admin/faults", json={"outage_seconds": 1.5})).is_success
    down = await faults.get(path)
    assert down.status_code == 503, down.text
    assert down.json()["code"] == "outage"
    assert "retry-after" in down.headers
    await eventually(
        lambda: faults.get(path), lambda a: a.status_code == 200, timeout=10, what="outage over"
    )

    assert (await faults.post("/partner/admin/faults", json={"error_rate": 1})).is_success
    assert [(await faults.get(path)).status_code for _ in range(5)] == [503] * 5
    assert (await faults.get("/partner/health")).status_code == 200, "admin and health unaffected"

    async def statuses_with_seed() -> list[int]:
        answer = await faults.post("/partner/admin/faults", json={"error_rate": 0.5, "seed": 7})
        assert answer.is_success
        return [(await faults.get(path)).status_code for _ in range(12)]

    first = await statuses_with_seed()
    assert set(first) == {200, 503}
    assert await statuses_with_seed() == first, "the same seed misbehaves the same"

    assert (await faults.post("/partner/admin/faults", json={"error_rate": 0})).is_success
    assert (await faults.get(path)).status_code == 200


async def test_a_timeout_answers_504_after_the_hold_took_effect(
    sim: Sim, faults: httpx.AsyncClient
) -> None:
    convention_id, hotel = await new_convention(faults)
    set_faults = await faults.post(
        "/partner/admin/faults", json={"timeout_rate": 1, "timeout_seconds": 0.3}
    )
    assert set_faults.is_success
    body = hold_body(convention_id, hotel)
    lost = await hold(faults, body, key=f"timeout-{convention_id}")
    assert lost.status_code == 504, lost.text
    assert (await faults.post("/partner/admin/faults", json={"timeout_rate": 0})).is_success
    retried = await hold(faults, body, key=f"timeout-{convention_id}")
    assert retried.status_code == 201
    listed = await faults.get("/partner/v1/reservations", params={"convention_id": convention_id})
    assert [r["ack"] for r in listed.json()["reservations"]] == [retried.json()["ack"]]


async def test_duplicated_events_appear_twice(sim: Sim, faults: httpx.AsyncClient) -> None:
    convention_id, hotel = await new_convention(faults)
    assert (await faults.post("/partner/admin/faults", json={"duplicate_rate": 1})).is_success
    held = await hold(faults, hold_body(convention_id, hotel))
    assert held.status_code == 201, held.text

    published = await eventually(
        lambda: events_of(sim, convention_id),
        lambda found: len(found) >= 2,
        what="the duplicated event on the partner topic",
    )
    assert len(published) == 2
    assert published[0] == published[1]
    assert published[0]["ack"] == held.json()["ack"]


async def test_a_held_back_event_is_overtaken_by_a_later_one(
    sim: Sim, faults: httpx.AsyncClient
) -> None:
    convention_id, hotel = await new_convention(faults)
    set_faults = await faults.post(
        "/partner/admin/faults", json={"reorder_rate": 1, "reorder_delay_seconds": 2}
    )
    assert set_faults.is_success
    assert sim.process is not None
    already = len(sim.process.events("partner_event_held_back"))
    held = await hold(faults, hold_body(convention_id, hotel))
    assert held.status_code == 201, held.text

    async def held_back() -> int:
        assert sim.process is not None
        return len(sim.process.events("partner_event_held_back"))

    await eventually(held_back, lambda n: n > already, what="the held event held back")
    assert (await faults.post("/partner/admin/faults", json={"reorder_rate": 0})).is_success
    confirmed = await faults.post(f"/partner/v1/reservations/{held.json()['ack']}/confirm")
    assert confirmed.status_code == 200, confirmed.text

    published = await eventually(
        lambda: events_of(sim, convention_id),
        lambda found: len(found) >= 2,
        what="both events, the held-back one last",
    )
    assert [(e["type"], e["sequence"]) for e in published] == [
        ("reservation.confirmed", 2),
        ("reservation.held", 1),
    ]
