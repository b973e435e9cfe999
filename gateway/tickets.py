"""A confirmed registration's ticket (`docs/CHECKIN.md`): the signed token, its QR code and
the printable PDF, for whoever may read the registration (its owner, staff of its
convention, admins; a guest registration by its id)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Controller, Request, Response, get
from pydantic import BaseModel

from gateway.accounts import may_see
from gateway.checkin_reads import CONFIRMED, CheckInReads, Holder
from gateway.deps import Gateway
from gateway.problems import Problem
from gateway.ticket_prints import Printed, ticket_pdf
from infra.qr import qr_svg
from schemas.tickets import SigningKey, issue

SVG_MEDIA_TYPE = "image/svg+xml"
PDF_MEDIA_TYPE = "application/pdf"
PRIVATE = {"Cache-Control": "private, no-store"}
"""A ticket admits its holder: no shared cache keeps one."""


class TicketView(BaseModel):
    token: str
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    badge_type: str
    serial: int
    qr_svg_url: str
    pdf_url: str


def ticket_url(registration_id: uuid.UUID, suffix: str = "") -> str:
    return f"/api/v1/registrations/{registration_id}/ticket{suffix}"


def signing_keys(gateway: Gateway) -> tuple[SigningKey, ...]:
    if not gateway.ticket_keys:
        raise Problem(
            503,
            "tickets-unavailable",
            "Tickets are not set up",
            "This gateway has no ticket keys (BUTTERFLY_TICKET_KEYS).",
        )
    return gateway.ticket_keys


def printed(holder: Holder) -> Printed:
    return Printed(
        convention=holder.convention_name,
        name=holder.name,
        badge_type=holder.badge_label,
        registration_id=holder.registration_id,
    )


async def _ticket(
    request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
) -> tuple[Holder, str]:
    keys = signing_keys(gateway)
    known = await gateway.reads.registration(registration_id)
    holder = await CheckInReads(gateway.read_engine).holder(registration_id)
    if known is None or holder is None or not await may_see(request, gateway, known[0]):
        raise Problem(
            404,
            "registration-not-found",
            "Registration not found",
            f"There is no registration {registration_id}.",
        )
    if holder.status != CONFIRMED:
        raise Problem(
            409,
            "no-ticket",
            "No ticket",
            f"The registration is {holder.status}: a ticket comes with a confirmed "
            "registration (free, or paid).",
            registration_id=str(registration_id),
            registration_status=holder.status,
        )
    token = issue(
        holder.registration_id, holder.convention_id, holder.badge_type, holder.serial, keys
    )
    return holder, token


class TicketController(Controller):
    path = "/api/v1/registrations/{registration_id:uuid}"
    tags = ["check-in"]

    @get(
        "/ticket",
        operation_id="getTicket",
        summary="The registration's ticket: its signed token and where its QR code and PDF are",
        description="For its owner, staff of its convention and admins (404 for anyone else). "
        "409 `no-ticket` unless the registration is confirmed. A transfer gives the "
        "registration a new serial: the tickets issued before it are refused at the door.",
    )
    async def ticket(
        self, request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
    ) -> Response[TicketView]:
        holder, token = await _ticket(request, gateway, registration_id)
        return Response(
            TicketView(
                token=token,
                registration_id=holder.registration_id,
                convention_id=holder.convention_id,
                badge_type=holder.badge_type,
                serial=holder.serial,
                qr_svg_url=ticket_url(registration_id, ".svg"),
                pdf_url=ticket_url(registration_id, ".pdf"),
            ),
            headers=PRIVATE,
        )

    @get(
        "/ticket.svg",
        operation_id="getTicketQrCode",
        summary="The ticket's QR code (SVG)",
        media_type=SVG_MEDIA_TYPE,
    )
    async def qr_code(
        self, request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
    ) -> Response[bytes]:
        _, token = await _ticket(request, gateway, registration_id)
        return Response(qr_svg(token), media_type=SVG_MEDIA_TYPE, headers=PRIVATE)

    @get(
        "/ticket.pdf",
        operation_id="getTicketPdf",
        summary="The printable ticket (PDF): convention, name, badge type, QR code",
        media_type=PDF_MEDIA_TYPE,
    )
    async def printable(
        self, request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
    ) -> Response[bytes]:
        holder, token = await _ticket(request, gateway, registration_id)
        content = await asyncio.to_thread(ticket_pdf, token, printed(holder))
        return Response(
            content,
            media_type=PDF_MEDIA_TYPE,
            headers={
                **PRIVATE,
                "Content-Disposition": f'inline; filename="ticket-{registration_id}.pdf"',
            },
        )
