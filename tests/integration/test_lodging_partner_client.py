"""The process manager's partner client against the partner simulator, served in this
process on this run's broker and MariaDB: typed answers, idempotent holds, the reference
filter, refusals, and an outage that opens the circuit breaker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx
import pytest
import uvicorn

from consumers.lodging import tables as t
from consumers.lodging.circuit import CircuitBreaker, CircuitState
from consumers.lodging.partner import PartnerClient, PartnerRefused, PartnerUnavailable
from consumers.lodging.reconcile import Reconciler
from infra.services import free_port
from infra.settings import Settings
from infra.simulators.lodging import store
from infra.simulators.lodging.api import create_partner_app
from schemas.lodging import DriftKind, RoomStatus, Stay
from tests.conftest import StackFactory
from tests.support import engine_for

pytestmark = [
    pytest.mark.integration,
    # the simulator's own handlers, built here rather than in a process of their own
    pytest.mark.filterwarnings("ignore::litestar.exceptions.LitestarDeprecationWarning"),
]

FROM, TO = date(2027, 5, 1), date(2027, 5, 3)
STAY = Stay(room_type="KING", check_in=FROM, check_out=TO, guests=("Ada Lovelace",))
NO_FAULTS = {"error_rate": 0, "timeout_rate": 0, "outage_seconds": 0}


class _InProcessServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test runner keeps its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Sim:
    base_url: str
    settings: Settings

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)


@pytest.fixture(scope="module")
async def sim(make_settings: StackFactory) -> AsyncIterator[Sim]:
    settings = await make_settings(partitions=1)
    port = free_port()
    server = _InProcessServer(
        uvicorn.Config(
            create_partner_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(600):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.05)
        assert server.started, "the partner simulator did not start"
        yield Sim(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        await store.drop_store(settings)


@pytest.fixture
async def partner(sim: Sim) -> AsyncIterator[PartnerClient]:
    client = PartnerClient(sim.base_url, 5.0, CircuitBreaker(failure_threshold=2, open_seconds=0.3))
    await client.start()
    try:
        yield client
    finally:
        await client.close()
        async with sim.admin() as admin:
            assert (await admin.post("/partner/admin/faults", json=NO_FAULTS)).is_success


def state(partner: PartnerClient) -> CircuitState:
    return partner.breaker.state


async def seeded(partner: PartnerClient) -> tuple[uuid.UUID, str]:
    convention_id = uuid.uuid4()
    hotels = await partner.hotels(convention_id, FROM, TO)
    return convention_id, hotels[0].code


async def test_hotels_map_the_partners_blocks(sim: Sim, partner: PartnerClient) -> None:
    convention_id = uuid.uuid4()

    hotels = await partner.hotels(convention_id, FROM, TO)

    async with sim.admin() as admin:
        raw = (
            await admin.get(
                f"/partner/v1/conventions/{convention_id}/hotels",
                params={"from": FROM.isoformat(), "to": TO.isoformat()},
            )
        ).json()
    assert [h.code for h in hotels] == [h["code"] for h in raw["hotels"]]
    first, raw_first = hotels[0].room_types[0], raw["hotels"][0]["room_types"][0]
    assert first.code == raw_first["code"]
    assert [(n.night.isoformat(), n.size, n.booked, n.rate_cents) for n in first.nights] == [
        (n["night"], n["block"], n["booked"], n["rate_cents"]) for n in raw_first["nights"]
    ]
    assert all(n.release_date is not None for n in first.nights)


async def test_hold_confirm_cancel_and_the_reference_filter(partner: PartnerClient) -> None:
    convention_id, hotel = await seeded(partner)
    reference = str(uuid.uuid4())

    held = await partner.hold(f"key-{reference}", convention_id, hotel, STAY, reference)
    again = await partner.hold(f"key-{reference}", convention_id, hotel, STAY, reference)
    other = await partner.hold(f"key-{uuid.uuid4()}", convention_id, hotel, STAY, "someone else")

    assert held.status == "held"
    assert (held.hotel, held.stay, held.reference) == (hotel, STAY, reference)
    assert held.total_cents > 0
    assert again == held, "the same key answers the same reservation"
    assert [r.ack for r in await partner.reservations(convention_id, reference)] == [held.ack]
    assert {r.ack for r in await partner.reservations(convention_id)} == {held.ack, other.ack}

    assert (await partner.confirm(held.ack)).status == "confirmed"
    assert (await partner.confirm(held.ack)).status == "confirmed", "confirming twice is once"
    assert (await partner.reservation(held.ack)).status == "confirmed"
    assert (await partner.cancel(held.ack)).status == "cancelled"
    assert (await partner.cancel(held.ack)).status == "cancelled", "cancelling twice is once"
    assert state(partner) is CircuitState.CLOSED


async def test_refusals_carry_the_partners_code_and_keep_the_circuit_closed(
    partner: PartnerClient,
) -> None:
    convention_id, hotel = await seeded(partner)

    with pytest.raises(PartnerRefused) as unknown_hotel:
        await partner.hold("key-x", convention_id, "NOSUCH", STAY, "ref")
    with pytest.raises(PartnerRefused) as unknown_ack:
        await partner.cancel("HB-AAAAAAAA")
    held = await partner.hold(f"key-{uuid.uuid4()}", convention_id, hotel, STAY, "ref")
    await partner.cancel(held.ack)
    with pytest.raises(PartnerRefused) as cancelled:
        await partner.confirm(held.ack)

    assert (unknown_hotel.value.status, unknown_hotel.value.code) == (422, "unknown_hotel")
    assert (unknown_ack.value.status, unknown_ack.value.code) == (404, "unknown_reservation")
    assert (cancelled.value.status, cancelled.value.code) == (409, "reservation_cancelled")
    assert state(partner) is CircuitState.CLOSED


async def test_an_outage_is_unavailable_opens_the_circuit_and_a_probe_closes_it(
    sim: Sim, partner: PartnerClient
) -> None:
    convention_id, _ = await seeded(partner)
    async with sim.admin() as admin:
        assert (await admin.post("/partner/admin/faults", json={"outage_seconds": 60})).is_success

        for _ in range(2):
            with pytest.raises(PartnerUnavailable, match="outage"):
                await partner.reservations(convention_id)
        assert state(partner) is CircuitState.OPEN

        assert (await admin.post("/partner/admin/faults", json={"outage_seconds": 0})).is_success

    assert await partner.reservations(convention_id) == []
    assert state(partner) is CircuitState.CLOSED


async def test_an_unreachable_partner_is_unavailable() -> None:
    client = PartnerClient(
        f"http://127.0.0.1:{free_port()}", 1.0, CircuitBreaker(failure_threshold=1, open_seconds=60)
    )
    await client.start()
    try:
        with pytest.raises(PartnerUnavailable):
            await client.reservation("HB-AAAAAAAA")
        assert state(client) is CircuitState.OPEN
    finally:
        await client.close()


async def test_reconciliation_finds_drifts_and_cancels_orphans_at_the_partner(
    sim: Sim, partner: PartnerClient
) -> None:
    """Our rows are written directly here, standing in for the lodging decider."""
    convention_id, hotel = await seeded(partner)
    kept, lost, dropped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    held = await partner.hold(f"k-{kept}", convention_id, hotel, STAY, str(kept))
    orphan = await partner.hold(f"k-{dropped}", convention_id, hotel, STAY, str(dropped))
    await partner.confirm(held.ack)

    def row(request_id: uuid.UUID, status: RoomStatus, ack: str | None) -> dict[str, object]:
        now = datetime.now(UTC).replace(tzinfo=None)
        return {
            "request_id": str(request_id),
            "convention_id": str(convention_id),
            "registration_id": str(uuid.uuid4()),
            "partition_no": 0,
            "status": status.value,
            "hotels": f'["{hotel}"]',
            "hotel": hotel,
            "stay": STAY.model_dump_json(),
            "ack": ack,
            "request_hash": "h",
            "created_at": now,
            "updated_at": now,
        }

    async with engine_for(sim.settings.db.write_url) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                t.requests.insert(),
                [
                    row(kept, RoomStatus.HELD, held.ack),
                    row(lost, RoomStatus.CONFIRMED, "HB-AAAAAAAA"),
                    row(dropped, RoomStatus.CANCELLED, orphan.ack),
                ],
            )
        found = await Reconciler(engine, partner).reconcile(convention_id)

    assert sorted((d.kind, d.request_id) for d in found.drifts) == sorted(
        [
            (DriftKind.STATUS_DIFFERS, kept),
            (DriftKind.MISSING_AT_PARTNER, lost),
            (DriftKind.ORPHAN_AT_PARTNER, dropped),
        ]
    )
    assert {(c.request_id, c.status) for c in found.corrections} == {
        (kept, RoomStatus.CONFIRMED),
        (lost, RoomStatus.REQUESTED),
    }
    orphan_drift = next(d for d in found.drifts if d.kind is DriftKind.ORPHAN_AT_PARTNER)
    assert orphan_drift.repair == "cancelled at the partner"
    assert (await partner.reservation(orphan.ack)).status == "cancelled"
