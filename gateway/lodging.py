"""Lodging: hotel blocks, room requests, the hotel lottery, and the admin's syncs, pickup,
retries and reconciliations.

Lodging is decided asynchronously (the decider, then the process manager calling the
partner), so every write is checked against the read models, published to
`lodging.commands`, and answered `202 Accepted` with a `Location` to poll. The checks here
are the first fence only: the decider applies the same rules to whatever reaches it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from gateway.accounts import may_see
from gateway.conventions import ADMIN, convention_guard, not_found
from gateway.deps import (
    Gateway,
    IdempotencyKey,
    command_id_for,
    correlation_id,
    key_reused,
    request_command_id,
    request_hash,
)
from gateway.lodging_reads import REGISTRATION_REQUESTS, BlockNight, LodgingReads
from gateway.lodging_views import (
    HotelsView,
    LodgingAccepted,
    LotteryRun,
    LotteryView,
    NewLotteryEntry,
    NewRoomRequest,
    PickupView,
    ReconciliationView,
    RoomRequestList,
    RoomRequestPage,
    RoomRequestView,
    SyncView,
)
from gateway.problems import Problem
from gateway.views import RegistrationView
from schemas.lodging import (
    CancelRoomRequest,
    EnterLottery,
    FailureReason,
    OpenLottery,
    ReconcileLodging,
    RequestRoom,
    RetryRoomRequest,
    RoomStatus,
    RunLottery,
    SyncHotels,
    lottery_request_id,
)
from schemas.registration import Command
from schemas.registry import wrap
from schemas.topics import lodging_key

ATTENDEE = "attendee"
FINISHED = (RoomStatus.FAILED.value, RoomStatus.CANCELLED.value)
Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size")]


def request_location(request_id: uuid.UUID) -> str:
    return f"/api/v1/lodging/{request_id}"


def lottery_location(convention_id: uuid.UUID) -> str:
    return f"/api/v1/admin/conventions/{convention_id}/lodging/lottery"


class LodgingController(Controller):
    tags = ["lodging"]

    @get(
        "/api/v1/conventions/{convention_id:uuid}/hotels",
        operation_id="listHotels",
        summary="The convention's hotels: room types, nights, block, booked and left",
        description="`booked` counts this convention's own room requests holding a room "
        "that night; `left` is the block less that, never below 0. Empty until the first "
        "sync with the lodging partner. `lottery` says whether the hotel lottery takes "
        "entries (`open`).",
    )
    async def hotels(self, gateway: Gateway, convention_id: uuid.UUID) -> HotelsView:
        await _convention(gateway, convention_id)
        return await _reads(gateway).hotels(convention_id)

    @post(
        "/api/v1/registrations/{registration_id:uuid}/lodging",
        operation_id="requestRoom",
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for a room for a confirmed registration",
        description="Hotels in order of preference: the next is tried when one cannot hold "
        "the room. Answers 202 at once; poll `Location` for held, confirmed, waitlisted or "
        "failed. The same Idempotency-Key and body answer the same request again; the key "
        "with another body is refused.",
    )
    async def request_room(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        data: NewRoomRequest,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        reads = _reads(gateway)
        registration = await _registration(request, gateway, registration_id)
        request_id = command_id_for(f"lodging:{registration_id}", idempotency_key)
        fingerprint = request_hash(
            data.model_dump(mode="json") | {"registration_id": str(registration_id)}
        )
        command_id = request_id
        if idempotency_key is not None:
            command_id = request_command_id(request_id, fingerprint)
            known = await reads.request(request_id)
            if known is not None:
                if known.request_hash != fingerprint:
                    raise key_reused()
                return _request_accepted(request_id, command_id, known.view.status)
        _check_confirmed(registration)
        active = await reads.active_request(registration_id)
        if active is not None:
            raise Problem(
                409,
                "already-requested",
                "Room already requested",
                "This registration already has a room request; cancel it first.",
                headers={"Location": request_location(active.request_id)},
                reason=FailureReason.ALREADY_REQUESTED.value,
                request_id=str(active.request_id),
            )
        stay = data.stay()
        await _check_fits(reads, registration.convention_id, data)
        command = RequestRoom(
            convention_id=registration.convention_id,
            request_id=request_id,
            registration_id=registration_id,
            hotels=tuple(data.hotels),
            stay=stay,
            request_hash=fingerprint,
        )
        await _publish(request, gateway, command, command_id, ATTENDEE)
        await _until_readable(lambda: reads.request(request_id))
        return _request_accepted(request_id, command_id, RoomStatus.REQUESTED.value)

    @get(
        "/api/v1/registrations/{registration_id:uuid}/lodging",
        operation_id="listRegistrationRoomRequests",
        summary="A registration's room requests, oldest first",
        description="Those asked for directly and those its lottery entry became once drawn, "
        f"each as `GET /api/v1/lodging/{{request_id}}` answers it (the latest "
        f"{REGISTRATION_REQUESTS}). Another account's registration is not found, as with the "
        "registration itself.",
    )
    async def registration_requests(
        self, request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
    ) -> RoomRequestList:
        await _registration(request, gateway, registration_id)
        return RoomRequestList(items=await _reads(gateway).requests_of(registration_id))

    @get(
        "/api/v1/lodging/{request_id:uuid}",
        operation_id="getRoomRequest",
        summary="A room request: status, hotel, stay, acknowledgement, price",
    )
    async def get_request(
        self, request: Request[Any, Any, Any], gateway: Gateway, request_id: uuid.UUID
    ) -> RoomRequestView:
        return await _known_request(gateway, request_id, request)

    @delete(
        "/api/v1/lodging/{request_id:uuid}",
        operation_id="cancelRoomRequest",
        status_code=HTTP_202_ACCEPTED,
        summary="Cancel a room request, releasing its room",
        description="409 `not_cancellable` once the request failed or was cancelled.",
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        request_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        view = await _known_request(gateway, request_id, request)
        if view.status in FINISHED:
            raise Problem(
                409,
                "not-cancellable",
                "Room request cannot be cancelled",
                f"The room request is {view.status}.",
                reason=FailureReason.NOT_CANCELLABLE.value,
                request_id=str(request_id),
            )
        command_id = command_id_for(f"lodging-cancel:{request_id}", idempotency_key)
        command = CancelRoomRequest(convention_id=view.convention_id, request_id=request_id)
        await _publish(request, gateway, command, command_id, ATTENDEE)
        return _request_accepted(request_id, command_id, "cancellation-requested")

    @post(
        "/api/v1/conventions/{convention_id:uuid}/lodging/lottery/entries",
        operation_id="enterLottery",
        status_code=HTTP_202_ACCEPTED,
        summary="Enter a confirmed registration in the hotel lottery",
        description="409 `lottery_not_open` unless the lottery is open. `Location` is the "
        "room request the entry becomes once drawn (awarded or waitlisted).",
    )
    async def enter_lottery(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: NewLotteryEntry,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        reads = _reads(gateway)
        if await reads.lottery_status(convention_id) != "open":
            raise _lottery_problem(FailureReason.LOTTERY_NOT_OPEN, "The lottery is not open.")
        registration = await _registration(request, gateway, data.registration_id)
        if registration.convention_id != convention_id:
            raise _unknown_registration(data.registration_id)
        _check_confirmed(registration)
        stay = data.stay()
        await _check_fits(reads, convention_id, data)
        command_id = command_id_for(
            f"lottery:{convention_id}:{data.registration_id}", idempotency_key
        )
        command = EnterLottery(
            convention_id=convention_id,
            registration_id=data.registration_id,
            hotels=tuple(data.hotels),
            stay=stay,
        )
        await _publish(request, gateway, command, command_id, ATTENDEE)
        request_id = lottery_request_id(convention_id, data.registration_id)
        return _accepted(
            request_location(request_id),
            LodgingAccepted(
                status="entered",
                command_id=command_id,
                request_id=request_id,
                registration_id=data.registration_id,
                convention_id=convention_id,
            ),
        )


class AdminLodgingController(Controller):
    guards = [convention_guard]
    tags = ["admin", "lodging"]

    @post(
        "/api/v1/admin/conventions/{convention_id:uuid}/hotels/sync",
        operation_id="syncHotels",
        status_code=HTTP_202_ACCEPTED,
        summary="Fetch the convention's hotel blocks from the lodging partner",
    )
    async def sync_hotels(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        sync_id = command_id_for(f"sync:{convention_id}", idempotency_key)
        command = SyncHotels(convention_id=convention_id, sync_id=sync_id)
        await _publish(request, gateway, command, sync_id, ADMIN)
        await _until_readable(lambda: _reads(gateway).sync(sync_id))
        return _accepted(
            f"/api/v1/admin/lodging/syncs/{sync_id}",
            LodgingAccepted(
                status="requested",
                command_id=sync_id,
                sync_id=sync_id,
                convention_id=convention_id,
            ),
        )

    @get(
        "/api/v1/admin/lodging/syncs/{sync_id:uuid}",
        operation_id="getHotelSync",
        summary="A hotel sync: requested, done or failed",
    )
    async def get_sync(self, gateway: Gateway, sync_id: uuid.UUID) -> SyncView:
        view = await _reads(gateway).sync(sync_id)
        if view is None:
            raise _not_found("sync-not-found", "Sync not found", f"There is no sync {sync_id}.")
        return view

    @get(
        "/api/v1/admin/conventions/{convention_id:uuid}/lodging/pickup",
        operation_id="lodgingPickup",
        summary="Block pickup per hotel, room type and night, with room-night totals",
    )
    async def pickup(self, gateway: Gateway, convention_id: uuid.UUID) -> PickupView:
        await _convention(gateway, convention_id)
        return await _reads(gateway).pickup(convention_id)

    @get(
        "/api/v1/admin/conventions/{convention_id:uuid}/lodging/requests",
        operation_id="adminListRoomRequests",
        summary="A convention's room requests, oldest first, by cursor",
        description="Filter by `status`, and with `parked=true` by the requests the process "
        "manager gave up on (retry them with the retry route).",
    )
    async def list_requests(
        self,
        gateway: Gateway,
        convention_id: uuid.UUID,
        status: str | None = None,
        parked: bool | None = None,
        cursor: str | None = None,
        limit: Limit = 50,
    ) -> RoomRequestPage:
        statuses = [s.value for s in RoomStatus]
        if status is not None and status not in statuses:
            raise Problem(
                400,
                "validation-error",
                "Invalid request",
                f"status must be one of {', '.join(statuses)}.",
                errors=[{"field": "status", "message": "unknown status"}],
            )
        await _convention(gateway, convention_id)
        items, next_cursor = await _reads(gateway).requests(
            convention_id, status=status, parked=parked, cursor=cursor, limit=limit
        )
        return RoomRequestPage(items=items, next=next_cursor)

    @post(
        "/api/v1/admin/lodging/{request_id:uuid}/retry",
        operation_id="retryRoomRequest",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a parked room request back to the process manager",
        description="409 `not_parked` unless the request is parked.",
    )
    async def retry(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        request_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        view = await _known_request(gateway, request_id)
        if view.parked is None:
            raise Problem(
                409,
                "not-parked",
                "Room request is not parked",
                "Only a parked room request can be retried.",
                reason=FailureReason.NOT_PARKED.value,
                request_id=str(request_id),
            )
        command_id = command_id_for(f"lodging-retry:{request_id}", idempotency_key)
        command = RetryRoomRequest(convention_id=view.convention_id, request_id=request_id)
        await _publish(request, gateway, command, command_id, ADMIN)
        return _request_accepted(request_id, command_id, "retry-requested")

    @post(
        "/api/v1/admin/conventions/{convention_id:uuid}/lodging/lottery/open",
        operation_id="openLottery",
        status_code=HTTP_202_ACCEPTED,
        summary="Open the hotel lottery for entries",
    )
    async def open_lottery(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        command_id = command_id_for(f"lottery-open:{convention_id}", idempotency_key)
        command = OpenLottery(convention_id=convention_id)
        await _publish(request, gateway, command, command_id, ADMIN)
        return _lottery_accepted(convention_id, command_id, "open-requested")

    @post(
        "/api/v1/admin/conventions/{convention_id:uuid}/lodging/lottery/run",
        operation_id="runLottery",
        status_code=HTTP_202_ACCEPTED,
        summary="Draw the hotel lottery",
        description="The seed makes the draw reproducible. Awards become room requests in "
        "draw order; the rest are waitlisted. 409 unless the lottery is open.",
    )
    async def run_lottery(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: LotteryRun,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        status = await _reads(gateway).lottery_status(convention_id)
        if status == "drawn":
            raise _lottery_problem(FailureReason.LOTTERY_ALREADY_RUN, "The lottery was drawn.")
        if status != "open":
            raise _lottery_problem(FailureReason.LOTTERY_NOT_OPEN, "The lottery is not open.")
        command_id = command_id_for(f"lottery-run:{convention_id}", idempotency_key)
        command = RunLottery(convention_id=convention_id, seed=data.seed)
        await _publish(request, gateway, command, command_id, ADMIN)
        return _lottery_accepted(convention_id, command_id, "draw-requested")

    @get(
        "/api/v1/admin/conventions/{convention_id:uuid}/lodging/lottery",
        operation_id="getLottery",
        summary="The hotel lottery: status, seed, entries, awards and waitlist in draw order",
    )
    async def get_lottery(self, gateway: Gateway, convention_id: uuid.UUID) -> LotteryView:
        await _convention(gateway, convention_id)
        return await _reads(gateway).lottery(convention_id)

    @post(
        "/api/v1/admin/conventions/{convention_id:uuid}/lodging/reconcile",
        operation_id="reconcileLodging",
        status_code=HTTP_202_ACCEPTED,
        summary="Compare our bookings with the partner's and repair the drift",
    )
    async def reconcile(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        reconciliation_id = command_id_for(f"reconcile:{convention_id}", idempotency_key)
        command = ReconcileLodging(convention_id=convention_id, reconciliation_id=reconciliation_id)
        await _publish(request, gateway, command, reconciliation_id, ADMIN)
        await _until_readable(lambda: _reads(gateway).reconciliation(reconciliation_id))
        return _accepted(
            f"/api/v1/admin/lodging/reconciliations/{reconciliation_id}",
            LodgingAccepted(
                status="requested",
                command_id=reconciliation_id,
                reconciliation_id=reconciliation_id,
                convention_id=convention_id,
            ),
        )

    @get(
        "/api/v1/admin/lodging/reconciliations/{reconciliation_id:uuid}",
        operation_id="getReconciliation",
        summary="A reconciliation: requested, done or failed, with the drifts it found",
    )
    async def get_reconciliation(
        self, gateway: Gateway, reconciliation_id: uuid.UUID
    ) -> ReconciliationView:
        view = await _reads(gateway).reconciliation(reconciliation_id)
        if view is None:
            raise _not_found(
                "reconciliation-not-found",
                "Reconciliation not found",
                f"There is no reconciliation {reconciliation_id}.",
            )
        return view


READABLE_WITHIN_SECONDS = 3.0
"""How long a write waits for the lodging projector to show what it accepted, so its
`Location` answers at once; past that it answers 202 anyway (the command is on the topic)."""


async def _until_readable(probe: Callable[[], Awaitable[object | None]]) -> None:
    deadline = time.monotonic() + READABLE_WITHIN_SECONDS
    delay = 0.01
    while await probe() is None and time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def _reads(gateway: Gateway) -> LodgingReads:
    return LodgingReads(gateway.read_engine)


async def _publish(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    command: Command,
    command_id: uuid.UUID,
    actor: str,
) -> None:
    envelope = wrap(
        command,
        message_id=command_id,
        occurred_at=datetime.now(UTC),
        correlation_id=correlation_id(request),
        causation_id=None,
        key=lodging_key(command.convention_id),
        actor=actor,
    )
    await gateway.publisher.publish(gateway.topics.lodging_commands, envelope)


def _accepted(location: str, body: LodgingAccepted) -> Response[Any]:
    return Response(body, status_code=HTTP_202_ACCEPTED, headers={"Location": location})


def _request_accepted(request_id: uuid.UUID, command_id: uuid.UUID, status: str) -> Response[Any]:
    return _accepted(
        request_location(request_id),
        LodgingAccepted(status=status, command_id=command_id, request_id=request_id),
    )


def _lottery_accepted(
    convention_id: uuid.UUID, command_id: uuid.UUID, status: str
) -> Response[Any]:
    return _accepted(
        lottery_location(convention_id),
        LodgingAccepted(status=status, command_id=command_id, convention_id=convention_id),
    )


async def _convention(gateway: Gateway, convention_id: uuid.UUID) -> None:
    if not await gateway.reads.convention_exists(convention_id):
        raise not_found(convention_id)


async def _registration(
    request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
) -> RegistrationView:
    """The registration a room is asked for: unknown, or another account's, is a 404."""
    known = await gateway.reads.registration(registration_id)
    if known is None or not await may_see(request, gateway, known[0]):
        raise _unknown_registration(registration_id)
    return known[0]


def _check_confirmed(registration: RegistrationView) -> None:
    if registration.status != "confirmed":
        raise Problem(
            409,
            "registration-not-confirmed",
            "Registration not confirmed",
            f"Rooms are for confirmed registrations; this one is {registration.status}.",
            reason=FailureReason.REGISTRATION_NOT_CONFIRMED.value,
            registration_id=str(registration.registration_id),
        )


async def _check_fits(reads: LodgingReads, convention_id: uuid.UUID, data: NewRoomRequest) -> None:
    """Once the convention's blocks are synced, the request must name its hotels, a room
    type one of them offers, and nights one of them has a block for."""
    block = await reads.block_nights(convention_id)
    if not block:
        return
    known = {b.hotel for b in block}
    unknown = [hotel for hotel in data.hotels if hotel not in known]
    if unknown:
        raise _misfit(
            FailureReason.UNKNOWN_HOTEL,
            "hotels",
            f"The convention has no hotel {', '.join(unknown)}.",
        )
    if not any(b.room_type == data.room_type and b.hotel in data.hotels for b in block):
        raise _misfit(
            FailureReason.UNKNOWN_ROOM_TYPE,
            "room_type",
            f"None of these hotels has room type {data.room_type}.",
        )
    nights = data.stay().nights()
    if not any(
        all(BlockNight(hotel, data.room_type, night) in block for night in nights)
        for hotel in data.hotels
    ):
        raise _misfit(
            FailureReason.NIGHTS_OUTSIDE_BLOCK,
            "check_in",
            "No preferred hotel has a block of this room type for every night of the stay.",
        )


def _misfit(reason: FailureReason, field: str, detail: str) -> Problem:
    return Problem(
        422,
        reason.value.replace("_", "-"),
        "Room request does not fit the hotel blocks",
        detail,
        reason=reason.value,
        errors=[{"field": field, "message": detail}],
    )


def _lottery_problem(reason: FailureReason, detail: str) -> Problem:
    return Problem(
        409, reason.value.replace("_", "-"), "Lottery not available", detail, reason=reason.value
    )


async def _known_request(
    gateway: Gateway, request_id: uuid.UUID, request: Request[Any, Any, Any] | None = None
) -> RoomRequestView:
    """The room request; with the caller's `request`, a room of a registration the caller
    may not see is not found either."""
    known = await _reads(gateway).request(request_id)
    if known is not None and request is not None:
        registration = await gateway.reads.registration(known.view.registration_id)
        if registration is not None and not await may_see(request, gateway, registration[0]):
            known = None
    if known is None:
        raise _not_found(
            "room-request-not-found",
            "Room request not found",
            f"There is no room request {request_id}.",
        )
    return known.view


def _unknown_registration(registration_id: uuid.UUID) -> Problem:
    return _not_found(
        "registration-not-found",
        "Registration not found",
        f"There is no registration {registration_id}.",
    )


def _not_found(kind: str, title: str, detail: str) -> Problem:
    return Problem(404, kind, title, detail)
