"""The process manager's steps against a fake partner: which command each partner answer
becomes, under which id, and how unavailability is retried and finally parked."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.lodging.circuit import CircuitBreaker
from consumers.lodging.manager import (
    ConventionStep,
    LodgingManager,
    RoomStep,
    confirm,
    hold,
    release,
    sync,
)
from consumers.lodging.partner import (
    PartnerClient,
    PartnerRefused,
    PartnerReservation,
    PartnerStatus,
    PartnerUnavailable,
)
from schemas.lodging import (
    HotelInventory,
    ParkRoomRequest,
    RecordConfirmation,
    RecordHold,
    RecordHotelInventory,
    RecordRelease,
    Stay,
    partner_idempotency_key,
    reply_command_id,
)
from schemas.topics import Topics

CONVENTION = uuid.uuid4()
STAY = Stay(
    room_type="KING", check_in=date(2027, 5, 1), check_out=date(2027, 5, 3), guests=("Ada",)
)


class FakePartner(PartnerClient):
    """The partner, answering from a script: `answers[ack or key]` is a status, or an
    exception to raise once per entry of `failures`."""

    def __init__(self) -> None:
        super().__init__("http://partner.invalid", 1.0, CircuitBreaker(3, 1.0))
        self.statuses: dict[str, PartnerStatus] = {}
        self.refusals: dict[str, PartnerRefused] = {}
        self.failures: list[PartnerUnavailable] = []
        self.listed: list[PartnerReservation] = []
        self.calls: list[tuple[str, str]] = []

    def _made(self, ack: str, status: PartnerStatus, reference: str = "") -> PartnerReservation:
        return PartnerReservation(ack, status, "H1", STAY, 20000, reference)

    def _script(self, call: str, subject: str) -> None:
        self.calls.append((call, subject))
        if self.failures:
            raise self.failures.pop(0)
        refused = self.refusals.get(f"{call}:{subject}")
        if refused is not None:
            raise refused

    async def hold(
        self,
        idempotency_key: str,
        convention_id: uuid.UUID,
        hotel: str,
        stay: Stay,
        reference: str,
    ) -> PartnerReservation:
        self._script("hold", idempotency_key)
        ack = f"HB-{hotel}"
        return self._made(ack, self.statuses.get(ack, "held"), reference)

    async def confirm(self, ack: str) -> PartnerReservation:
        self._script("confirm", ack)
        return self._made(ack, "confirmed")

    async def cancel(self, ack: str) -> PartnerReservation:
        self._script("cancel", ack)
        return self._made(ack, "cancelled")

    async def reservations(
        self, convention_id: uuid.UUID, reference: str | None = None
    ) -> list[PartnerReservation]:
        self._script("reservations", reference or "")
        return [r for r in self.listed if reference is None or r.reference == reference]

    async def hotels(
        self, convention_id: uuid.UUID, first: date, last: date
    ) -> list[HotelInventory]:
        self._script("hotels", str(convention_id))
        return [HotelInventory(code="H1", name="Hotel One", room_types=())]


def room(step: str = "hold", *, attempt: int = 0, retries: int = 0, ack: str | None = None) -> Any:
    return RoomStep(
        request_id=uuid.uuid4(),
        convention_id=CONVENTION,
        partition_no=0,
        step=step,  # type: ignore[arg-type]
        hotels=("H1", "H2"),
        attempt=attempt,
        retries=retries,
        stay=STAY,
        ack=ack,
    )


async def test_a_held_room_is_recorded_under_the_holds_id() -> None:
    partner, work = FakePartner(), room(attempt=1, retries=2)

    done = await hold(partner, work)

    assert done.command == RecordHold(
        convention_id=CONVENTION,
        request_id=work.request_id,
        attempt=1,
        hotel="H2",
        outcome="held",
        ack="HB-H2",
        total_cents=20000,
    )
    assert done.message_id == reply_command_id(work.request_id, "hold", "1.2")
    assert partner.calls == [("hold", partner_idempotency_key(work.request_id, "H2"))]


async def test_a_waitlisting_with_hotels_left_is_cancelled_and_refused() -> None:
    partner, work = FakePartner(), room()
    partner.statuses["HB-H1"] = "waitlisted"

    done = await hold(partner, work)

    assert isinstance(done.command, RecordHold)
    assert (done.command.outcome, done.command.reason, done.command.ack) == (
        "refused",
        "no_availability",
        "HB-H1",
    )
    assert partner.calls[-1] == ("cancel", "HB-H1")


async def test_a_waitlisting_at_the_last_hotel_is_kept() -> None:
    partner, work = FakePartner(), room(attempt=1)
    partner.statuses["HB-H2"] = "waitlisted"

    done = await hold(partner, work)

    assert isinstance(done.command, RecordHold)
    assert (done.command.outcome, done.command.ack) == ("waitlisted", "HB-H2")
    assert [call for call, _ in partner.calls] == ["hold"]


async def test_a_hold_found_cancelled_after_a_crash_is_refused_again() -> None:
    partner, work = FakePartner(), room()
    partner.statuses["HB-H1"] = "cancelled"

    done = await hold(partner, work)

    assert isinstance(done.command, RecordHold)
    assert (done.command.outcome, done.command.reason) == ("refused", "no_availability")


async def test_a_refused_hold_records_the_partners_reason() -> None:
    partner, work = FakePartner(), room()
    key = partner_idempotency_key(work.request_id, "H1")
    partner.refusals[f"hold:{key}"] = PartnerRefused(422, "outside_block", "x" * 600)

    done = await hold(partner, work)

    assert isinstance(done.command, RecordHold)
    assert done.command.outcome == "refused"
    assert done.command.reason is not None
    assert done.command.reason.startswith("outside_block: xxx")
    assert len(done.command.reason) == 500


async def test_confirm_records_the_confirmation_or_parks_a_refusal() -> None:
    partner = FakePartner()
    fine, refused = room("confirm", retries=1, ack="HB-A"), room("confirm", ack="HB-B")
    partner.refusals["confirm:HB-B"] = PartnerRefused(409, "reservation_cancelled", "gone")

    confirmed, parked = await confirm(partner, fine), await confirm(partner, refused)

    assert confirmed.command == RecordConfirmation(
        convention_id=CONVENTION, request_id=fine.request_id, ack="HB-A"
    )
    assert confirmed.message_id == reply_command_id(fine.request_id, "confirm", "1")
    assert parked.command == ParkRoomRequest(
        convention_id=CONVENTION,
        request_id=refused.request_id,
        step="confirm",
        error="reservation_cancelled: gone",
    )
    assert parked.message_id == reply_command_id(refused.request_id, "park-confirm", "0")


async def test_release_cancels_the_ack_and_everything_under_the_reference() -> None:
    partner, work = FakePartner(), room("release", ack="HB-H2")
    reference = str(work.request_id)
    partner.listed = [
        PartnerReservation("HB-H1", "held", "H1", STAY, 1, reference),
        PartnerReservation("HB-H2", "held", "H2", STAY, 1, reference),
        PartnerReservation("HB-H3", "cancelled", "H3", STAY, 1, reference),
        PartnerReservation("HB-XX", "held", "H1", STAY, 1, str(uuid.uuid4())),
    ]

    done = await release(partner, work)

    assert done.command == RecordRelease(
        convention_id=CONVENTION, request_id=work.request_id, acks=("HB-H2", "HB-H1", "HB-H3")
    )
    assert ("cancel", "HB-XX") not in partner.calls
    assert ("cancel", "HB-H3") not in partner.calls


async def test_release_of_an_ack_the_partner_never_had_releases_nothing() -> None:
    partner, work = FakePartner(), room("release", ack="HB-LOST")
    partner.refusals["cancel:HB-LOST"] = PartnerRefused(404, "unknown_reservation", "no")

    done = await release(partner, work)

    assert done.command == RecordRelease(
        convention_id=CONVENTION, request_id=work.request_id, acks=()
    )


async def test_sync_records_the_inventory_or_the_refusal() -> None:
    partner = FakePartner()
    work = ConventionStep(CONVENTION, 0, "sync", uuid.uuid4(), date(2027, 5, 1), date(2027, 5, 3))

    synced = await sync(partner, work)
    partner.refusals[f"hotels:{CONVENTION}"] = PartnerRefused(422, "invalid_request", "too long")
    refused = await sync(partner, work)

    assert isinstance(synced.command, RecordHotelInventory)
    assert [h.code for h in synced.command.hotels] == ["H1"]
    assert synced.message_id == reply_command_id(work.job_id, "sync")
    assert isinstance(refused.command, RecordHotelInventory)
    assert (refused.command.hotels, refused.command.error) == ((), "invalid_request: too long")


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(
        self, topic: str, *, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def manager(partner: FakePartner, producer: FakeProducer, give_up: float) -> LodgingManager:
    return LodgingManager(
        cast(AsyncEngine, None),
        cast(AIOKafkaProducer, producer),
        Topics("t."),
        partner,
        lambda: {0},
        give_up_seconds=give_up,
    )


def published(producer: FakeProducer) -> list[dict[str, Any]]:
    return [json.loads(value) for _, _, value in producer.sent]


@pytest.mark.parametrize("unavailable", [1, 3])
async def test_unavailability_is_retried_with_the_same_key(unavailable: int) -> None:
    partner, producer, work = FakePartner(), FakeProducer(), room()
    partner.failures = [PartnerUnavailable("503")] * unavailable

    await manager(partner, producer, give_up=60)._perform(work)

    key = partner_idempotency_key(work.request_id, "H1")
    assert partner.calls == [("hold", key)] * (unavailable + 1)
    [envelope] = published(producer)
    assert (envelope["type"], envelope["message_id"], envelope["key"], envelope["actor"]) == (
        "RecordHold",
        str(reply_command_id(work.request_id, "hold", "0.0")),
        str(CONVENTION),
        "lodging-manager",
    )
    assert producer.sent[0][0] == "t.lodging.commands"


async def test_a_step_unavailable_past_the_give_up_time_is_parked() -> None:
    partner, producer, work = FakePartner(), FakeProducer(), room("confirm", retries=3, ack="A")
    partner.failures = [PartnerUnavailable("the bureau is down")] * 5

    await manager(partner, producer, give_up=0)._perform(work)

    [envelope] = published(producer)
    assert envelope["type"] == "ParkRoomRequest"
    assert envelope["message_id"] == str(reply_command_id(work.request_id, "park-confirm", "3"))
    assert envelope["payload"]["step"] == "confirm"
    assert "the bureau is down" in envelope["payload"]["error"]


async def test_a_sync_unavailable_past_the_give_up_time_records_the_error() -> None:
    partner, producer = FakePartner(), FakeProducer()
    work = ConventionStep(CONVENTION, 0, "sync", uuid.uuid4(), date(2027, 5, 1), date(2027, 5, 3))
    partner.failures = [PartnerUnavailable("down")]

    await manager(partner, producer, give_up=0)._perform(work)

    [envelope] = published(producer)
    assert envelope["type"] == "RecordHotelInventory"
    assert envelope["message_id"] == str(reply_command_id(work.job_id, "sync"))
    assert envelope["payload"]["hotels"] == []
    assert "down" in envelope["payload"]["error"]
