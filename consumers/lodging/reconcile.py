"""Reconciliation: our room requests against the partner's reservations, and what to do
about each difference.

Partner events can be lost, reordered or late, and a process can stop between a partner call
and recording it; the partner's own list of reservations is the truth to compare with. The
comparison (`compare`) is a pure function of both lists. What it finds is reported as drifts;
what changes on our side goes back to the decider as corrections (the process manager never
writes the decider's tables); what only the partner can fix, a reservation held for a
request that no longer wants it, is cancelled there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.lodging import tables as t
from consumers.lodging.partner import PartnerClient, PartnerRefused, PartnerReservation
from schemas.lodging import Correction, Drift, DriftKind, RoomStatus, Stay

log = structlog.get_logger(__name__)

BOOKED = frozenset({RoomStatus.HELD, RoomStatus.CONFIRMED, RoomStatus.WAITLISTED})
"""Our statuses in which the partner must have our reservation."""
GONE = frozenset({RoomStatus.CANCELLED, RoomStatus.FAILED})
"""Our statuses in which the partner must hold nothing for the request."""
TEXT_LIMIT = 500


@dataclass(frozen=True)
class OurBooking:
    """One of our room requests, as far as reconciliation needs it."""

    request_id: uuid.UUID
    status: RoomStatus
    hotel: str | None
    ack: str | None
    stay: Stay
    total_cents: int | None = None
    next_step: str | None = None
    parked_step: str | None = None

    @property
    def holding(self) -> bool:
        """A hold is in flight (or parked, waiting for an admin): the partner may hold a
        reservation our row does not name yet."""
        return self.next_step == "hold" or self.parked_step == "hold"


@dataclass(frozen=True)
class Reconciliation:
    drifts: tuple[Drift, ...]
    corrections: tuple[Correction, ...]


def compare(
    ours: Sequence[OurBooking], theirs: Sequence[PartnerReservation]
) -> tuple[list[Drift], list[Correction], list[str]]:
    """The drifts between our bookings and the partner's reservations, the corrections to
    our side, and the acks of orphans to cancel at the partner (their drifts say
    "cancel at the partner"; the caller rewrites that once it has tried)."""
    by_ack = {r.ack: r for r in theirs}
    drifts: list[Drift] = []
    corrections: list[Correction] = []
    for booking in ours:
        found = _booking_drift(booking, by_ack)
        if found is not None:
            drifts.append(found[0])
            corrections.append(found[1])
    orphans = list(_orphans(ours, theirs))
    drifts.extend(drift for drift, _ in orphans)
    return drifts, corrections, [ack for _, ack in orphans]


def _booking_drift(
    booking: OurBooking, by_ack: dict[str, PartnerReservation]
) -> tuple[Drift, Correction] | None:
    if booking.holding or booking.ack is None or booking.status not in BOOKED:
        return None
    theirs = by_ack.get(booking.ack)
    if theirs is None:
        return _drift(
            DriftKind.MISSING_AT_PARTNER,
            booking,
            None,
            "request set back to requested: the hold is redone",
        ), Correction(request_id=booking.request_id, status=RoomStatus.REQUESTED)
    if theirs.status == "cancelled":
        return _drift(
            DriftKind.CANCELLED_AT_PARTNER, booking, theirs, "request marked cancelled"
        ), _correction(booking, theirs, RoomStatus.CANCELLED)
    status = _status_differs(booking.status, theirs.status)
    if status is not None:
        return _drift(
            DriftKind.STATUS_DIFFERS, booking, theirs, f"request marked {status.value}"
        ), _correction(booking, theirs, status)
    if theirs.hotel != booking.hotel or theirs.stay != booking.stay:
        return _drift(
            DriftKind.STAY_DIFFERS, booking, theirs, "request takes the partner's hotel and stay"
        ), _correction(booking, theirs, booking.status)
    return None


def _status_differs(ours: RoomStatus, theirs: str) -> RoomStatus | None:
    """The status we take from the partner, when its status contradicts ours."""
    if theirs == "confirmed" and ours in (RoomStatus.HELD, RoomStatus.WAITLISTED):
        return RoomStatus.CONFIRMED
    if theirs == "waitlisted" and ours in (RoomStatus.HELD, RoomStatus.CONFIRMED):
        return RoomStatus.WAITLISTED
    if theirs == "held" and ours in (RoomStatus.CONFIRMED, RoomStatus.WAITLISTED):
        return RoomStatus.HELD
    return None


def _orphans(
    ours: Sequence[OurBooking], theirs: Iterable[PartnerReservation]
) -> Iterable[tuple[Drift, str]]:
    by_request = {b.request_id: b for b in ours}
    for reservation in theirs:
        if reservation.status == "cancelled":
            continue
        request_id = _request_id(reservation.reference)
        if request_id is None:
            continue  # not made by us
        booking = by_request.get(request_id)
        why = _orphan_because(booking, reservation)
        if why is None:
            continue
        yield (
            Drift(
                kind=DriftKind.ORPHAN_AT_PARTNER,
                request_id=request_id,
                ack=reservation.ack,
                ours=_clip(why),
                theirs=_describe_theirs(reservation),
                repair="cancel at the partner",
            ),
            reservation.ack,
        )


def _orphan_because(booking: OurBooking | None, reservation: PartnerReservation) -> str | None:
    if booking is None:
        return "no such request"
    if booking.holding:
        return None
    if booking.status in GONE:
        return f"{booking.status.value} request"
    if booking.ack != reservation.ack:
        return f"{_describe_ours(booking)}; not its current reservation"
    return None


def _drift(
    kind: DriftKind, booking: OurBooking, theirs: PartnerReservation | None, repair: str
) -> Drift:
    return Drift(
        kind=kind,
        request_id=booking.request_id,
        ack=booking.ack,
        ours=_describe_ours(booking),
        theirs="no such reservation" if theirs is None else _describe_theirs(theirs),
        repair=_clip(repair),
    )


def _correction(booking: OurBooking, theirs: PartnerReservation, status: RoomStatus) -> Correction:
    return Correction(
        request_id=booking.request_id,
        status=status,
        hotel=theirs.hotel,
        ack=theirs.ack,
        stay=theirs.stay,
        total_cents=theirs.total_cents,
    )


def _describe_stay(hotel: str | None, stay: Stay) -> str:
    return (
        f"{hotel or '-'} {stay.room_type} {stay.check_in.isoformat()}..{stay.check_out.isoformat()}"
        f" for {', '.join(stay.guests)}"
    )


def _describe_ours(booking: OurBooking) -> str:
    ack = f" ack {booking.ack}" if booking.ack else ""
    return _clip(f"{booking.status.value}{ack} {_describe_stay(booking.hotel, booking.stay)}")


def _describe_theirs(reservation: PartnerReservation) -> str:
    return _clip(
        f"{reservation.status} ack {reservation.ack} "
        f"{_describe_stay(reservation.hotel, reservation.stay)}, {reservation.total_cents} cents"
    )


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


class Reconciler:
    """Reads our side from the decider's tables (read only), the partner's side from its
    API, and cancels orphans at the partner."""

    def __init__(self, engine: AsyncEngine, partner: PartnerClient) -> None:
        self._engine = engine
        self._partner = partner

    async def reconcile(self, convention_id: uuid.UUID, *, repair: bool = True) -> Reconciliation:
        """Compare the convention's bookings; with `repair`, cancel orphans at the partner.

        Ours is read before theirs, so a reservation the partner made for a request our
        snapshot predates is not taken for an orphan: references our snapshot does not know
        are looked up again, and found ones count as holds in flight. Raises
        `PartnerUnavailable` (retry it) or `PartnerRefused` from the partner's listing."""
        ours = await self._ours(convention_id)
        theirs = await self._partner.reservations(convention_id)
        ours += await self._late(convention_id, ours, theirs)
        drifts, corrections, orphans = compare(ours, theirs)
        outcomes = {ack: await self._cancel_orphan(ack) for ack in orphans} if repair else {}
        drifts = [
            _with_repair(d, outcomes.get(d.ack or "", "would cancel at the partner"))
            if d.kind is DriftKind.ORPHAN_AT_PARTNER
            else d
            for d in drifts
        ]
        log.info(
            "lodging_reconciled",
            convention_id=str(convention_id),
            drifts=len(drifts),
            corrections=len(corrections),
            orphans=len(orphans),
        )
        return Reconciliation(tuple(drifts), tuple(corrections))

    async def _cancel_orphan(self, ack: str) -> str:
        try:
            await self._partner.cancel(ack)
        except PartnerRefused as refused:
            if refused.status == 404:
                return "already gone at the partner"
            return _clip(f"cancel refused by the partner: {refused.code}: {refused.message}")
        return "cancelled at the partner"

    async def _ours(
        self, convention_id: uuid.UUID, request_ids: Iterable[str] | None = None
    ) -> list[OurBooking]:
        r = t.requests.c
        query = select(
            r.request_id,
            r.status,
            r.hotel,
            r.ack,
            r.stay,
            r.total_cents,
            r.next_step,
            r.parked_step,
        ).where(r.convention_id == str(convention_id))
        if request_ids is not None:
            query = query.where(r.request_id.in_(list(request_ids)))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(r.created_at, r.request_id))).all()
        return [
            OurBooking(
                request_id=uuid.UUID(row.request_id),
                status=RoomStatus(row.status),
                hotel=row.hotel,
                ack=row.ack,
                stay=Stay.model_validate_json(row.stay),
                total_cents=row.total_cents,
                next_step=row.next_step,
                parked_step=row.parked_step,
            )
            for row in rows
        ]

    async def _late(
        self,
        convention_id: uuid.UUID,
        ours: Sequence[OurBooking],
        theirs: Sequence[PartnerReservation],
    ) -> list[OurBooking]:
        """Requests made after our snapshot that the partner already holds something for,
        as holds in flight."""
        known = {b.request_id for b in ours}
        unknown = {
            request_id
            for request_id in (_request_id(r.reference) for r in theirs if r.status != "cancelled")
            if request_id is not None and request_id not in known
        }
        if not unknown:
            return []
        late = await self._ours(convention_id, {str(request_id) for request_id in unknown})
        return [replace(b, next_step="hold") for b in late]


def _with_repair(drift: Drift, repair: str) -> Drift:
    return drift.model_copy(update={"repair": _clip(repair)})


def _request_id(reference: str) -> uuid.UUID | None:
    """The request a partner reservation was made for, if we made it."""
    try:
        return uuid.UUID(reference)
    except ValueError:
        return None
