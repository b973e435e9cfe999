"""Check-in at the door (`docs/CHECKIN.md`): staff of a convention (and admins) send what
their stations scanned. The gateway verifies each ticket itself and refuses, before anything
is published, a token that is not a ticket of this convention; the registration decider
decides the rest, once per scan, and the answer is its decision.

A scan's `scan_id` is the station's own id for it (derived from the token, the station and
the time when the station sends none): the command id derives from it, so a scan sent again
(a station re-sending its queue) is decided once and answered as it was decided. A scan
already decided is answered from the read model without publishing anything.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import QueryParameter
from pydantic import BaseModel, Field, ValidationError

from gateway.accounts import caller_of
from gateway.checkin_reads import (
    CHECKED_IN,
    CONFIRMED,
    SUPERSEDED,
    CheckInReads,
    CheckInSummary,
    DecidedScan,
    ScanPage,
    ScanView,
    StationKey,
    StationTickets,
)
from gateway.conventions import convention_guard, not_found
from gateway.deps import Gateway
from gateway.problems import PROBLEM_BASE, PROBLEM_JSON, Problem
from gateway.reads import Outcome
from gateway.reports import reports_guard
from gateway.ticket_prints import badge_pdf
from gateway.tickets import PDF_MEDIA_TYPE, PRIVATE, printed, signing_keys
from gateway.views import Body
from schemas.checkin import CheckInAttendee, CheckInRefusal, Station
from schemas.registration import SET_ASIDE
from schemas.tickets import TicketClaims, TicketRefused, public_keys, verify

SCAN_NAMESPACE = uuid.UUID("3b0c6f0e-51a4-4a8e-9d0e-7f3f2c6b9a10")
"""Scan ids a station did not choose: uuid5 of the token, the station and the time."""
CHECK_IN_NAMESPACE = uuid.UUID("c2f1d7a4-0e6b-4f0e-8a59-5d1c8e2b7f43")
"""Command ids of check-ins: uuid5 of the convention and the scan id."""
MAX_SYNC = 500
SYNC_CONCURRENCY = 64
"""Scans of one sync waiting for their decisions at once."""
SYNC_BODY_BYTES = 1024 * 1024
MAX_TOKEN_FIELD = 4096
"""Longer than any ticket (`schemas.tickets.MAX_TOKEN_LENGTH`): a token past that length
is a scan refused as `malformed`, not a request refused as invalid."""
REFUSED = "ticket-refused"
ALREADY = "already-checked-in"
WRONG_CONVENTION = "wrong_convention"
BAD_SCAN_TIME = "bad_scan_time"
SCAN_AGE_LIMIT = timedelta(days=30)
"""How long ago a scan may have been made: a station offline for longer is not believed."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of the gateway's clock a station's clock may run."""

Token = Annotated[
    str,
    Field(max_length=MAX_TOKEN_FIELD, description="The ticket as scanned: `BT1.<claims>.<sig>`."),
]


class CheckInBody(Body):
    token: Token
    station: Station
    scanned_at: datetime | None = Field(
        default=None,
        description="When the station scanned it, by its clock (no zone: UTC); default: now.",
    )
    scan_id: uuid.UUID | None = Field(
        default=None,
        description="The station's id for this scan, the same on every retry; default: "
        "derived from the token, the station and `scanned_at`.",
    )

    model_config = {
        "json_schema_extra": {"examples": [{"token": "BT1.eyJ….ZmFr…", "station": "hall-a-1"}]}
    }


class SyncScan(Body):
    token: Token
    station: Station
    scanned_at: datetime
    scan_id: uuid.UUID


class CheckInSync(Body):
    scans: list[SyncScan] = Field(max_length=MAX_SYNC)


class CheckedIn(BaseModel):
    scan_id: uuid.UUID
    registration_id: uuid.UUID
    name: str
    badge_type: str
    station: str
    scanned_at: datetime
    badge_pdf_url: str


class SyncResults(BaseModel):
    results: list[dict[str, Any]]
    """One per scan, in order: `{scan_id, status, …}`, the rest as the single route's
    answer (problem details for a refusal)."""


@dataclass(frozen=True)
class Scan:
    token: str
    station: str
    scanned_at: datetime
    scan_id: uuid.UUID


@dataclass(frozen=True)
class Answer:
    """The answer to one scan: an HTTP status and its body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def scan_of(
    token: str, station: str, scanned_at: datetime | None, scan_id: uuid.UUID | None
) -> Scan:
    moment = as_utc(scanned_at or datetime.now(UTC))
    if scan_id is None:
        scan_id = uuid.uuid5(SCAN_NAMESPACE, f"{token}\n{station}\n{moment.isoformat()}")
    return Scan(token, station, moment, scan_id)


def command_id_of(convention_id: uuid.UUID, scan_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CHECK_IN_NAMESPACE, f"{convention_id}:{scan_id}")


def scan_location(convention_id: uuid.UUID, scan_id: uuid.UUID) -> str:
    return f"/api/v1/staff/conventions/{convention_id}/check-ins/scans/{scan_id}"


def badge_url(convention_id: uuid.UUID, registration_id: uuid.UUID) -> str:
    return f"/api/v1/staff/conventions/{convention_id}/check-ins/{registration_id}/badge.pdf"


def _problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Answer:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    return Answer(status, body | extra)


_REFUSALS = {
    "malformed": "This is not a Butterfly ticket.",
    "unknown_key": "This ticket was signed with a key we do not know.",
    "bad_signature": "This ticket's signature is wrong: forged or altered.",
    WRONG_CONVENTION: "This ticket is for another convention.",
    BAD_SCAN_TIME: "The station's clock is wrong: the scan time is in the future or more "
    "than 30 days ago.",
    CheckInRefusal.REVOKED.value: "This ticket was revoked: the registration was cancelled, "
    "or transferred since the ticket was issued.",
    CheckInRefusal.NOT_PAID.value: "This registration is not paid.",
    CheckInRefusal.UNKNOWN_REGISTRATION.value: "This convention has no such registration.",
}


def refused(scan: Scan, reason: str, registration_id: uuid.UUID | None = None) -> Answer:
    extra = {} if registration_id is None else {"registration_id": str(registration_id)}
    return _problem(
        422,
        REFUSED,
        "Ticket refused",
        _REFUSALS.get(reason, "This ticket does not admit anyone."),
        reason=reason,
        scan_id=str(scan.scan_id),
        **extra,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def answer_of(convention_id: uuid.UUID, decided: DecidedScan) -> Answer:
    """The answer a decided scan gets, however often it is sent."""
    view = decided.view
    if view.outcome == CHECKED_IN:
        checked_in = CheckedIn(
            scan_id=view.scan_id,
            registration_id=view.registration_id,
            name=decided.name or "",
            badge_type=decided.badge_type or "",
            station=view.station,
            scanned_at=view.scanned_at,
            badge_pdf_url=badge_url(convention_id, view.registration_id),
        )
        return Answer(201, checked_in.model_dump(mode="json"))
    if view.outcome in (SUPERSEDED, CheckInRefusal.ALREADY_CHECKED_IN.value):
        return _problem(
            409,
            ALREADY,
            "Already checked in",
            "This registration was checked in by an earlier scan."
            if view.outcome == SUPERSEDED
            else "This registration is checked in already.",
            reason=CheckInRefusal.ALREADY_CHECKED_IN.value,
            superseded=view.outcome == SUPERSEDED,
            scan_id=str(view.scan_id),
            registration_id=str(view.registration_id),
            name=decided.name,
            badge_type=decided.badge_type,
            checked_in_at=_iso(view.winner_scanned_at or decided.checked_in_at),
            checked_in_station=view.winner_station or decided.checked_in_station,
        )
    scan = Scan("", view.station, view.scanned_at, view.scan_id)
    return refused(scan, view.outcome, view.registration_id)


def pending(convention_id: uuid.UUID, scan: Scan, claims: TicketClaims) -> Answer:
    location = scan_location(convention_id, scan.scan_id)
    return Answer(
        202,
        {
            "scan_id": str(scan.scan_id),
            "registration_id": str(claims.registration_id),
            "location": location,
        },
        {"Location": location},
    )


def answer_without_row(
    convention_id: uuid.UUID, scan: Scan, claims: TicketClaims, outcome: Outcome
) -> Answer:
    """A decision whose scan has no row: a command the decider set aside, or (not expected)
    a decision the read model does not show yet."""
    if outcome.reason == SET_ASIDE:
        return _problem(
            422,
            "check-in-invalid",
            "Check-in could not be processed",
            "The scan could not be processed and was set aside for the operators.",
            reason=SET_ASIDE,
            scan_id=str(scan.scan_id),
        )
    if outcome.reason in _REFUSALS:
        return refused(scan, outcome.reason, claims.registration_id)
    return pending(convention_id, scan, claims)


class Door:
    """One request's scans, verified, decided and answered in order."""

    def __init__(
        self, request: Request[Any, Any, Any], gateway: Gateway, convention_id: uuid.UUID
    ) -> None:
        self._request = request
        self._gateway = gateway
        self._convention_id = convention_id
        self._reads = CheckInReads(gateway.read_engine)

    async def answer(self, scans: Sequence[Scan]) -> list[Answer]:
        keys = public_keys(signing_keys(self._gateway))
        answers: list[Answer | None] = [None] * len(scans)
        admitted: list[tuple[int, Scan, TicketClaims]] = []
        now = datetime.now(UTC)
        for index, scan in enumerate(scans):
            if not now - SCAN_AGE_LIMIT <= scan.scanned_at <= now + CLOCK_SKEW:
                # The earliest scan wins: a station's wrong clock must not win every check-in.
                answers[index] = refused(scan, BAD_SCAN_TIME)
                continue
            try:
                claims = verify(scan.token, keys)
            except TicketRefused as refusal:
                answers[index] = refused(scan, refusal.reason)
                continue
            if claims.convention_id != self._convention_id:
                answers[index] = refused(scan, WRONG_CONVENTION, claims.registration_id)
                continue
            admitted.append((index, scan, claims))
        known = await self._reads.decided(scan.scan_id for _, scan, _ in admitted)
        fresh = [item for item in admitted if item[1].scan_id not in known]
        outcomes = await self._decide_all(fresh)
        known |= await self._reads.decided(
            scan.scan_id
            for (_, scan, _), outcome in zip(fresh, outcomes, strict=True)
            if outcome is not None
        )
        decisions = {
            scan.scan_id: outcome for (_, scan, _), outcome in zip(fresh, outcomes, strict=True)
        }
        for index, scan, claims in admitted:
            decided = known.get(scan.scan_id)
            outcome = decisions.get(scan.scan_id)
            if decided is not None and (
                decided.view.registration_id != claims.registration_id
                or decided.convention_id != self._convention_id
            ):
                answers[index] = _problem(
                    422,
                    "scan-id-reused",
                    "Scan id reused",
                    "This scan id was decided for another ticket: send each scan its own id.",
                    reason="scan_id_reused",
                    scan_id=str(scan.scan_id),
                )
            elif decided is not None:
                answers[index] = answer_of(self._convention_id, decided)
            elif outcome is None:
                answers[index] = pending(self._convention_id, scan, claims)
            else:
                answers[index] = answer_without_row(self._convention_id, scan, claims, outcome)
        return [answer for answer in answers if answer is not None]

    async def _decide_all(
        self, scans: Sequence[tuple[int, Scan, TicketClaims]]
    ) -> list[Outcome | None]:
        if not scans:
            return []
        who = await caller_of(self._request)
        actor = "admin-token" if who.account is None else f"account:{who.account.account_id}"
        staff = None if who.account is None else who.account.account_id
        gate = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def decide(scan: Scan, claims: TicketClaims) -> Outcome | None:
            try:
                command = CheckInAttendee(
                    convention_id=self._convention_id,
                    registration_id=claims.registration_id,
                    ticket_serial=claims.serial,
                    station=scan.station,
                    scanned_at=scan.scanned_at,
                    scan_id=scan.scan_id,
                    staff_account_id=staff,
                )
            except ValidationError:
                # Only a ticket we signed gets here; one whose serial the contract cannot
                # carry admits nobody.
                return Outcome("rejected", CheckInRefusal.REVOKED.value)
            async with gate:
                return await self._gateway.decide(
                    self._request,
                    command,
                    command_id_of(self._convention_id, scan.scan_id),
                    actor,
                    streamed=True,
                )

        return list(await asyncio.gather(*(decide(scan, claims) for _, scan, claims in scans)))


def respond(request: Request[Any, Any, Any], answer: Answer) -> Response[Any]:
    if answer.status >= 400:
        return Response(
            answer.body | {"instance": request.url.path},
            status_code=answer.status,
            media_type=PROBLEM_JSON,
            headers=answer.headers,
        )
    return Response(
        answer.body, status_code=answer.status, media_type=MediaType.JSON, headers=answer.headers
    )


Limit = Annotated[int, QueryParameter(ge=1, le=500)]
StationFilter = Annotated[
    str | None,
    QueryParameter(max_length=60, description="Only the scans of this station."),
]


class CheckInController(Controller):
    path = "/api/v1/staff/conventions/{convention_id:uuid}"
    tags = ["check-in"]

    @get(
        "/tickets",
        operation_id="stationTickets",
        guards=[convention_guard],
        summary="What a station downloads to check tickets in offline",
        description="The public keys tickets are verified with (raw Ed25519, base64url) and "
        "every registration that may be checked in, with its ticket serial and check-in.",
    )
    async def station_tickets(self, gateway: Gateway, convention_id: uuid.UUID) -> Response[Any]:
        keys = signing_keys(gateway)
        if not await gateway.reads.convention_exists(convention_id):
            raise not_found(convention_id)
        tickets = await CheckInReads(gateway.read_engine).station_tickets(convention_id)
        listing = StationTickets(
            convention_id=convention_id,
            generated_at=datetime.now(UTC),
            keys=[StationKey(kid=key.kid, public_key=key.public_b64) for key in keys],
            tickets=tickets,
        )
        return Response(listing, headers=PRIVATE)

    @post(
        "/check-ins",
        operation_id="checkIn",
        guards=[convention_guard],
        status_code=201,
        summary="Check a scanned ticket in",
        description="201 checked in; 409 `already-checked-in` with `checked_in_at` and "
        "`checked_in_station`; 422 `ticket-refused` with `reason` (`malformed`, "
        "`unknown_key`, `bad_signature`, `wrong_convention`, `revoked`, `not_paid`, "
        "`unknown_registration`); 202 with a `Location` to poll while undecided. The same "
        "`scan_id` is decided once and answered alike every time it is sent.",
    )
    async def check_in(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: CheckInBody,
    ) -> Response[Any]:
        scan = scan_of(data.token, data.station, data.scanned_at, data.scan_id)
        [answer] = await Door(request, gateway, convention_id).answer([scan])
        return respond(request, answer)

    @post(
        "/check-ins/sync",
        operation_id="syncCheckIns",
        guards=[convention_guard],
        status_code=200,
        request_max_body_size=SYNC_BODY_BYTES,
        summary="Send a station's queue of scans (at most 500)",
        description="Each scan is answered as `POST …/check-ins` would answer it, in order, "
        "with its `scan_id` and `status`; a refused scan refuses only itself.",
    )
    async def sync(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: CheckInSync,
    ) -> SyncResults:
        scans = [
            scan_of(scan.token, scan.station, scan.scanned_at, scan.scan_id) for scan in data.scans
        ]
        answers = await Door(request, gateway, convention_id).answer(scans)
        return SyncResults(
            results=[
                {"scan_id": str(scan.scan_id)} | answer.body | {"status": answer.status}
                for scan, answer in zip(scans, answers, strict=True)
            ]
        )

    @get(
        "/check-ins",
        operation_id="listCheckIns",
        guards=[convention_guard],
        summary="The scans as decided, in the order they were scanned, by cursor",
    )
    async def list_scans(
        self,
        gateway: Gateway,
        convention_id: uuid.UUID,
        station: StationFilter = None,
        cursor: str | None = None,
        limit: Limit = 100,
    ) -> ScanPage:
        return await CheckInReads(gateway.read_engine).scans(
            convention_id, station=station or None, cursor=cursor, limit=limit
        )

    @get(
        "/check-ins/scans/{scan_id:uuid}",
        operation_id="getCheckInScan",
        guards=[convention_guard],
        summary="One scan as decided (where a 202 answer points)",
        description="404 until it is decided.",
    )
    async def scan(
        self, gateway: Gateway, convention_id: uuid.UUID, scan_id: uuid.UUID
    ) -> ScanView:
        decided = (await CheckInReads(gateway.read_engine).decided([scan_id])).get(scan_id)
        if decided is None or decided.convention_id != convention_id:
            raise Problem(
                404,
                "scan-not-found",
                "Scan not decided",
                "No such scan has been decided (yet) in this convention.",
            )
        return decided.view

    @get(
        "/check-ins/summary",
        operation_id="checkInSummary",
        guards=[reports_guard],
        summary="The door in numbers: registered and checked in, per badge type and per hour, "
        "and the conflicts between stations",
        description="For staff of the convention, admins and analysts.",
    )
    async def summary(self, gateway: Gateway, convention_id: uuid.UUID) -> CheckInSummary:
        if not await gateway.reads.convention_exists(convention_id):
            raise not_found(convention_id)
        return await CheckInReads(gateway.read_engine).summary(convention_id)

    @get(
        "/check-ins/{registration_id:uuid}/badge.pdf",
        operation_id="badgePdf",
        guards=[convention_guard],
        media_type=PDF_MEDIA_TYPE,
        summary="The badge to print (PDF): name, badge type, convention",
    )
    async def badge(
        self, gateway: Gateway, convention_id: uuid.UUID, registration_id: uuid.UUID
    ) -> Response[bytes]:
        holder = await CheckInReads(gateway.read_engine).holder(registration_id)
        if holder is None or holder.convention_id != convention_id:
            raise Problem(
                404,
                "registration-not-found",
                "Registration not found",
                f"This convention has no registration {registration_id}.",
            )
        if holder.status != CONFIRMED:
            raise Problem(
                409,
                "not-confirmed",
                "No badge",
                f"The registration is {holder.status}: only a confirmed one gets a badge.",
                registration_status=holder.status,
            )
        content = await asyncio.to_thread(badge_pdf, printed(holder))
        return Response(
            content,
            media_type=PDF_MEDIA_TYPE,
            headers={"Content-Disposition": f'inline; filename="badge-{registration_id}.pdf"'},
        )
