"""A registration: its status as it is decided, its orders and their payment, its ticket,
receipts, cancelling, options, rooms and the hotel lottery."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template

from gateway.correlation import CORRELATION_HEADER
from gateway.web.api import INTERNAL_BASE, TIMEOUT_SECONDS, Answer, new_form_key
from gateway.web.pages import (
    api,
    form_of,
    number,
    redirect,
    text,
    viewer,
)
from gateway.web.site.common import (
    KEY_REUSED_TEXT,
    OPTION_REASONS,
    REASON_TEXT,
    ROOM_ACTIVE,
    ROOM_LABELS,
    Page,
    digest,
    done,
    fail,
    friendly,
    login_url,
    outright,
    page,
    placed,
    refused_status,
    unchanged,
)
from gateway.web.site.conventions import (
    _choices,
    _register_values,
)
from schemas.registration import SET_ASIDE


def current_room(requests: list[dict[str, Any]]) -> dict[str, Any] | None:
    active = [r for r in requests if r["status"] in ROOM_ACTIVE]
    shown = active or requests
    return shown[-1] if shown else None


def _room_digest(room: dict[str, Any] | None) -> str:
    if room is None:
        return "none"
    return digest(room["request_id"], room["status"], room.get("hotel"), room.get("ack"))


async def registration_context(
    request: Request[Any, Any, Any], registration_id: uuid.UUID
) -> dict[str, Any]:
    """What a registration's page shows: the registration with its orders, its convention,
    and for a confirmed one its hotels and room request. Another attendee's is not found."""
    client = api(request)
    command_id = request.query_params.get("command_id") or None
    answer = await client.get(f"/api/v1/registrations/{registration_id}", command_id=command_id)
    if answer.status in (202, 404) and command_id:
        # Just sent: not decided yet, or the read model has not shown it yet.
        registration: dict[str, Any] = {
            "registration_id": str(registration_id),
            "status": "pending",
        }
        return {"registration": registration, "convention": None, "command_id": command_id}
    if answer.status == 422 and answer.item("reason") in (SET_ASIDE, "idempotency_key_reused"):
        # The request that made it was refused before it was decided.
        registration = {
            "registration_id": str(registration_id),
            "status": "rejected",
            "reason": SET_ASIDE,
        }
        return {"registration": registration, "convention": None, "command_id": command_id}
    if not answer.ok:
        fail(answer)
    registration = answer.body
    convention_id = str(registration["convention_id"])
    conv = await client.get(f"/api/v1/conventions/{convention_id}")
    context: dict[str, Any] = {
        "registration": registration,
        "convention": conv.body if conv.ok else None,
        "command_id": command_id if registration["status"] == "pending" else None,
        "hotels": [],
        "lottery": "closed",
        "room": None,
        "rooms": [],
        "ticket": None,
    }
    if registration["status"] == "confirmed":
        hotels, rooms, ticket = await asyncio.gather(
            client.get(f"/api/v1/conventions/{convention_id}/hotels"),
            client.get(f"/api/v1/registrations/{registration_id}/lodging"),
            client.get(f"/api/v1/registrations/{registration_id}/ticket"),
        )
        context["ticket"] = ticket.body if ticket.ok and isinstance(ticket.body, dict) else None
        context["hotels"] = hotels.item("hotels", []) if hotels.ok else []
        context["lottery"] = hotels.item("lottery", "closed") if hotels.ok else "closed"
        context["rooms"] = rooms.item("items", []) if rooms.ok else []
        context["room"] = current_room(context["rooms"])
    return context


def _sold_out(option: dict[str, Any]) -> bool:
    variants = option.get("variants", [])
    if option["remaining"] is not None and option["remaining"] <= 0:
        return True
    return bool(variants) and all(
        v["remaining"] is not None and v["remaining"] <= 0 for v in variants
    )


def _options_for(convention: dict[str, Any], badge_type: str) -> list[dict[str, Any]]:
    """The options a registration of `badge_type` can buy, each marked `gone` when sold out."""
    return [
        {**option, "gone": _sold_out(option)}
        for option in convention.get("options", [])
        if not option["badge_types"] or badge_type in option["badge_types"]
    ]


def _registration_extras(context: dict[str, Any]) -> dict[str, Any]:
    registration = context["registration"]
    convention = context.get("convention") or {}
    hotels = context.get("hotels", [])
    room_types: dict[str, str] = {}
    for hotel in hotels:
        for room_type in hotel["room_types"]:
            room_types.setdefault(room_type["code"], room_type["description"])
    return {
        "hotel_names": {h["code"]: h["name"] for h in hotels},
        "room_types": room_types,
        "badge_name": {b["code"]: b["name"] for b in convention.get("badge_types", [])}.get(
            registration.get("badge_type", ""), registration.get("badge_type", "")
        ),
        "status_seen": registration["status"],
        "room_seen": _room_digest(context.get("room")),
        "add_options": _options_for(convention, registration.get("badge_type", "")),
        "option_values": _register_values({}),
    }


async def registration_page(
    request: Request[Any, Any, Any],
    registration_id: uuid.UUID,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str = "",
    room_values: dict[str, Any] | None = None,
    option_values: dict[str, Any] | None = None,
) -> Template:
    context = await registration_context(request, registration_id)
    extras = _registration_extras(context)
    if option_values is not None:
        extras["option_values"] = option_values
    return await page(
        request,
        "site/registration.html",
        status=status,
        errors=errors or {},
        message=message,
        room_values=room_values or _room_defaults(context),
        form_key=new_form_key(),
        **context,
        **extras,
    )


def _room_defaults(context: dict[str, Any]) -> dict[str, Any]:
    registration = context["registration"]
    convention = context.get("convention") or {}
    hotels = context.get("hotels", [])
    types = [t["code"] for h in hotels for t in h["room_types"]]
    return {
        "hotels": [hotels[0]["code"]] if hotels else [],
        "room_type": types[0] if types else "",
        "check_in": convention.get("starts_on", ""),
        "check_out": convention.get("ends_on", ""),
        "guests": registration.get("name", ""),
    }


@get("/registrations/{registration_id:uuid}", name="registration")
async def registration(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Template:
    return await registration_page(request, registration_id)


@get("/registrations/{registration_id:uuid}/status", name="registration-status")
async def registration_status(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    """The live status of a registration being decided or paid: 204 while it stays as the
    page saw it, else the new status (and the page's details, swapped out of band)."""
    try:
        context = await registration_context(request, registration_id)
    except HTTPException:
        return unchanged()
    if context["registration"]["status"] == request.query_params.get("seen"):
        return unchanged()
    return await page(
        request,
        "site/_registration_update.html",
        errors={},
        message="",
        room_values=_room_defaults(context),
        form_key=new_form_key(),
        **context,
        **_registration_extras(context),
    )


@get("/registrations/{registration_id:uuid}/lodging", name="registration-lodging")
async def registration_lodging(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    """The live status of a registration's room request."""
    try:
        context = await registration_context(request, registration_id)
    except HTTPException:
        return unchanged()
    if _room_digest(context.get("room")) == request.query_params.get("seen"):
        return unchanged()
    return await page(
        request,
        "site/_lodging_status.html",
        errors={},
        message="",
        room_values=_room_defaults(context),
        form_key=new_form_key(),
        **context,
        **_registration_extras(context),
    )


async def api_file(request: Request[Any, Any, Any], path: str) -> httpx.Response:
    """A file the API serves (a QR code, a PDF), read as bytes with the visitor's cookies
    (`Api` reads JSON and text)."""
    headers = {"accept": "*/*"}
    cookie = request.headers.get("cookie")
    if cookie:
        headers["cookie"] = cookie
    correlation = request.scope.get("state", {}).get("correlation_id")
    if correlation is not None:
        headers[CORRELATION_HEADER] = str(correlation)
    client = request.client
    transport = httpx.ASGITransport(
        app=request.app,  # type: ignore[arg-type]
        client=(client.host, client.port) if client is not None else ("127.0.0.1", 0),
    )
    base = str(request.base_url).rstrip("/") or INTERNAL_BASE
    async with httpx.AsyncClient(
        transport=transport, base_url=base, timeout=TIMEOUT_SECONDS
    ) as http:
        return await http.get(path, headers=headers)


async def passed_on(
    request: Request[Any, Any, Any],
    path: str,
    *,
    download: str | None = None,
    adjust: Callable[[bytes], bytes] | None = None,
) -> Response[bytes] | Redirect:
    """The API's file as this site's own (so an `<img>` or a link needs nothing but the
    page's cookies): as it is, or as a download named `download`; a refusal is the error
    page."""
    answer = await api_file(request, path)
    if answer.status_code == 401:
        return redirect(request, login_url(request.url.path))
    if answer.status_code != 200:
        body = answer.json() if "json" in answer.headers.get("content-type", "") else None
        fail(Answer(answer.status_code, body, answer.headers))
    disposition = answer.headers.get("content-disposition")
    if download is not None:
        disposition = f'attachment; filename="{download}"'
    headers = {"Cache-Control": "private, no-store"}
    if disposition:
        headers["Content-Disposition"] = disposition
    return Response(
        answer.content if adjust is None else adjust(answer.content),
        media_type=answer.headers.get("content-type", "application/octet-stream"),
        headers=headers,
    )


@get("/registrations/{registration_id:uuid}/ticket.svg", name="ticket-qr")
async def ticket_qr(
    request: Request[Any, Any, Any], registration_id: uuid.UUID
) -> Response[bytes] | Redirect:
    """The ticket's QR code, for the registration page's `<img>`."""
    return await passed_on(
        request, f"/api/v1/registrations/{registration_id}/ticket.svg", adjust=scalable
    )


SVG_SIZE = re.compile(rb'<svg([^>]*?) width="(\d+)" height="(\d+)"')


def scalable(svg: bytes) -> bytes:
    """The QR code with a `viewBox`, so it shrinks to a phone's width instead of being
    cut off, on a white ground (a scanner needs the quiet zone light)."""
    if b"viewBox" in svg[:300]:
        return svg
    return SVG_SIZE.sub(
        rb'<svg\1 width="\2" height="\3" viewBox="0 0 \2 \3" style="background:#fff"',
        svg,
        count=1,
    )


@get("/registrations/{registration_id:uuid}/ticket.pdf", name="ticket-pdf")
async def ticket_pdf(
    request: Request[Any, Any, Any], registration_id: uuid.UUID
) -> Response[bytes] | Redirect:
    """The printable ticket, downloaded."""
    return await passed_on(
        request,
        f"/api/v1/registrations/{registration_id}/ticket.pdf",
        download=f"ticket-{registration_id}.pdf",
    )


@get("/registrations/{registration_id:uuid}/receipt", name="receipt")
async def receipt(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Template:
    context = await registration_context(request, registration_id)
    orders = [o for o in context["registration"].get("orders", []) if o["paid_cents"] > 0]
    wanted = request.query_params.get("order")
    if wanted:
        orders = [o for o in orders if o["order_id"] == wanted]
    if not orders:
        raise NotFoundException()
    return await page(
        request,
        "site/receipt.html",
        orders=orders,
        **context,
        **_registration_extras(context),
    )


@post("/registrations/{registration_id:uuid}/orders/{order_id:uuid}/pay", name="pay")
async def pay(
    request: Request[Any, Any, Any], registration_id: uuid.UUID, order_id: uuid.UUID
) -> Page:
    """Start paying an order and go to the provider's checkout page."""
    form = await form_of(request)
    back = f"/registrations/{registration_id}"
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/registrations/{registration_id}/orders/{order_id}/payments",
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok and answer.item("checkout_url"):
        return redirect(request, str(answer.item("checkout_url")))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    if answer.status == 409:
        return redirect(request, done(back, "not-payable"))
    return await registration_page(
        request, registration_id, status=answer.status, message=answer.message
    )


@post("/registrations/{registration_id:uuid}/orders/{order_id:uuid}/promo-code", name="order-promo")
async def order_promo_code(
    request: Request[Any, Any, Any], registration_id: uuid.UUID, order_id: uuid.UUID
) -> Page:
    form = await form_of(request)
    back = f"/registrations/{registration_id}"
    code = text(form, "promo_code")
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/registrations/{registration_id}/orders/{order_id}/promo-code",
        {"promo_code": code},
    )
    if answer.ok:
        return redirect(request, done(back, "promo-applied"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    reason = str(answer.item("reason") or "")
    if reason:
        said = REASON_TEXT.get(reason, answer.message)
    else:
        said = friendly(
            "Promo code", code, next(iter(answer.field_errors.values()), answer.message)
        )
    return await registration_page(
        request,
        registration_id,
        status=refused_status(answer),
        errors={f"promo-{order_id}": said},
    )


@get("/registrations/{registration_id:uuid}/cancel", name="cancel")
async def cancel_form(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Template:
    context = await registration_context(request, registration_id)
    return await page(
        request,
        "site/cancel.html",
        message="",
        form_key=new_form_key(),
        **context,
        **_registration_extras(context),
    )


@post("/registrations/{registration_id:uuid}/cancel", name="cancel-post")
async def cancel(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    form = await form_of(request)
    back = f"/registrations/{registration_id}"
    answer = await api(request, text(form, "csrf_token")).delete(
        f"/api/v1/registrations/{registration_id}",
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok:
        return redirect(request, done(back, "cancelled"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    context = await registration_context(request, registration_id)
    return await page(
        request,
        "site/cancel.html",
        status=answer.status,
        message=REASON_TEXT.get(str(answer.item("reason") or ""), answer.message),
        form_key=new_form_key(),
        **context,
        **_registration_extras(context),
    )


@post("/registrations/{registration_id:uuid}/give-back", name="give-back")
async def give_back(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    """Give back paid units of an option."""
    form = await form_of(request)
    back = f"/registrations/{registration_id}"
    code = text(form, "code")
    answer = await api(request, text(form, "csrf_token")).call(
        "DELETE",
        f"/api/v1/registrations/{registration_id}/options/{quote(code, safe='')}",
        params={"variant": text(form, "variant"), "quantity": number(form, "quantity")},
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok:
        return redirect(request, done(back, "given-back"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    reason = str(answer.item("reason") or "")
    return await registration_page(
        request,
        registration_id,
        status=refused_status(answer),
        message=REASON_TEXT.get(reason, answer.message),
    )


def _options_refused(answer: Answer, values: dict[str, Any]) -> tuple[dict[str, str], str]:
    """Where the refusal of options to add is shown: next to the option when one was
    chosen (the API does not name which one it refused), else on the options together."""
    reason = str(answer.item("reason") or "")
    if not reason:
        if "options" in answer.field_errors and not values["options"]:
            return {"options": "Choose the options to add."}, ""
        return placed(answer, {"options": "Options"}, values)
    said = REASON_TEXT.get(reason, answer.message)
    if reason != "sold_out" and reason not in OPTION_REASONS:
        return {}, said
    chosen = values["options"]
    return {f"option-{chosen[0]}" if len(chosen) == 1 else "options": said}, ""


@post("/registrations/{registration_id:uuid}/options", name="add-options")
async def add_options(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    """Buy options for a registration: a new order, paid from the registration's page."""
    form = await form_of(request)
    values = _register_values(form)
    back = f"/registrations/{registration_id}"
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/registrations/{registration_id}/orders",
        {"options": _choices(form, values)},
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok:
        return redirect(request, done(back, "options-added"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    errors, message = _options_refused(answer, values)
    if answer.kind == "idempotency-key-reused":
        message = KEY_REUSED_TEXT
    return await registration_page(
        request,
        registration_id,
        status=refused_status(answer),
        errors=errors,
        message=message,
        option_values=values,
    )


@post("/registrations/{registration_id:uuid}/options/waitlist", name="option-waitlist")
async def join_option_waitlist(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    """Wait for a sold-out option for a registration: the button pressed names it."""
    form = await form_of(request)
    code = text(form, "waitlist")
    back = f"/registrations/{registration_id}"
    client = api(request, text(form, "csrf_token"))
    mine = await client.get(f"/api/v1/registrations/{registration_id}")
    if not mine.ok:
        stop = await outright(request, mine, back)
        if stop is not None:
            return stop
        fail(mine)
    body: dict[str, Any] = {
        "kind": "option",
        "code": code,
        "registration_id": str(registration_id),
    }
    if text(form, f"variant-{code}"):
        body["variant"] = text(form, f"variant-{code}")
    quantity = number(form, f"quantity-{code}")
    if quantity is not None:
        body["quantity"] = quantity
    answer = await client.post(
        f"/api/v1/conventions/{mine.item('convention_id')}/waitlist",
        body,
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok and answer.item("entry_id"):
        who = await viewer(request)
        to = "/me/waitlist" if who.signed_in else f"/waitlist/{answer.item('entry_id')}"
        return redirect(request, done(to, "waitlist-joined"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    reason = str(answer.item("reason") or "")
    if reason == "not_sold_out":
        said = "There are some left: add it instead of waiting."
    elif reason:
        said = REASON_TEXT.get(reason, answer.message)
    else:
        said = next(iter(answer.field_errors.values()), answer.message)
        said = said.removeprefix("Value error, ")
    return await registration_page(
        request,
        registration_id,
        status=refused_status(answer),
        errors={f"option-{code}": said},
    )


def _room_values(form: dict[str, Any]) -> dict[str, Any]:
    ranked = [text(form, f"hotel-{rank}") for rank in range(1, 6)]
    return {
        "hotels": [code for code in ranked if code],
        "room_type": text(form, "room_type"),
        "check_in": text(form, "check_in"),
        "check_out": text(form, "check_out"),
        "guests": text(form, "guests"),
    }


def _room_body(values: dict[str, Any]) -> dict[str, Any]:
    guests = [line.strip() for line in values["guests"].replace(",", "\n").splitlines()]
    return {
        "hotels": values["hotels"],
        "room_type": values["room_type"],
        "check_in": values["check_in"] or None,
        "check_out": values["check_out"] or None,
        "guests": [name for name in guests if name],
    }


async def _room_refused(
    request: Request[Any, Any, Any],
    registration_id: uuid.UUID,
    answer: Answer,
    values: dict[str, Any],
) -> Page:
    back = f"/registrations/{registration_id}"
    if answer.kind == "already-requested":
        return redirect(request, back)
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    errors, message = placed(answer, ROOM_LABELS, values)
    reason = str(answer.item("reason") or "")
    if reason in REASON_TEXT:
        message = "" if errors else REASON_TEXT[reason]
    if "hotels" in errors:
        errors["hotel-1"] = errors.pop("hotels")
    return await registration_page(
        request,
        registration_id,
        status=refused_status(answer),
        errors=errors,
        message=message,
        room_values=values,
    )


@post("/registrations/{registration_id:uuid}/lodging", name="request-room")
async def request_room(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    form = await form_of(request)
    values = _room_values(form)
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/registrations/{registration_id}/lodging",
        _room_body(values),
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok:
        return redirect(request, done(f"/registrations/{registration_id}", "room-requested"))
    return await _room_refused(request, registration_id, answer, values)


@post("/registrations/{registration_id:uuid}/lottery", name="enter-lottery")
async def enter_lottery(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Page:
    form = await form_of(request)
    values = _room_values(form)
    client = api(request, text(form, "csrf_token"))
    mine = await client.get(f"/api/v1/registrations/{registration_id}")
    if not mine.ok:
        stop = await outright(request, mine, f"/registrations/{registration_id}")
        if stop is not None:
            return stop
        fail(mine)
    answer = await client.post(
        f"/api/v1/conventions/{mine.item('convention_id')}/lodging/lottery/entries",
        {**_room_body(values), "registration_id": str(registration_id)},
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok:
        return redirect(request, done(f"/registrations/{registration_id}", "lottery-entered"))
    return await _room_refused(request, registration_id, answer, values)


@post("/registrations/{registration_id:uuid}/lodging/{request_id:uuid}/cancel", name="cancel-room")
async def cancel_room(
    request: Request[Any, Any, Any], registration_id: uuid.UUID, request_id: uuid.UUID
) -> Page:
    form = await form_of(request)
    back = f"/registrations/{registration_id}"
    answer = await api(request, text(form, "csrf_token")).delete(
        f"/api/v1/lodging/{request_id}", idempotency_key=text(form, "form_key") or None
    )
    if answer.ok:
        return redirect(request, done(back, "room-cancelled"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    reason = str(answer.item("reason") or "")
    return await registration_page(
        request,
        registration_id,
        status=refused_status(answer),
        message=REASON_TEXT.get(reason, answer.message),
    )
