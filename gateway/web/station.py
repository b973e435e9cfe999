"""The check-in station of a convention (`docs/CHECKIN.md`): the page its staff (and admins)
scan tickets with at the door.

With JavaScript (`static/station.js`) the page downloads the ticket list and the public keys
through `…/station/tickets` (this router's copy of the API's list, so the script reads it
like any file of the page), verifies each scan in the browser, keeps a queue in the
browser's storage and sends it to the API's sync route while it is online; a service worker
(`/staff/station-sw.js`) keeps the page and its script, so a reload without network still
opens it. Without JavaScript the page is a form: a token posted is checked in through the
API and its answer shown, which is all a USB scanner (it types the token and Enter) needs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template

from gateway.web.api import Answer, new_form_key
from gateway.web.pages import (
    PAGE_EXCEPTION_HANDLERS,
    STATIC,
    api,
    form_of,
    redirect,
    render,
    text,
    viewer,
    when,
)
from gateway.web.site import CSRF_DETAIL, login_url, passed_on

Page = Template | Redirect
STATION_LABELS = {"station": "Station name", "token": "Ticket"}
MISSING = {
    "station": "Name this station first: its scans are recorded under its name.",
    "token": "Scan a ticket, or type its text.",
}
SERVICE_WORKER = STATIC / "station-sw.js"
REFUSALS = {
    "malformed": "This is not a Butterfly ticket.",
    "unknown_key": "This ticket was signed with a key we do not know.",
    "bad_signature": "This ticket's signature is wrong: forged or altered.",
    "wrong_convention": "This ticket is for another convention.",
    "revoked": "This ticket was revoked: the registration was cancelled, or transferred "
    "since the ticket was issued.",
    "not_paid": "This registration is not paid.",
    "unknown_registration": "This convention has no such registration.",
}


@dataclass(frozen=True)
class Result:
    """What the station shows after a scan: `ok` (checked in), `bad` (refused) or `wait`
    (still being decided)."""

    kind: str
    verdict: str
    name: str = ""
    badge_type: str = ""
    detail: str = ""
    registration_id: str = ""


def _base(convention_id: uuid.UUID | str) -> str:
    return f"/staff/conventions/{convention_id}"


def _api_base(convention_id: uuid.UUID | str) -> str:
    return f"/api/v1/staff/conventions/{convention_id}"


async def _convention(
    request: Request[Any, Any, Any], convention_id: uuid.UUID
) -> dict[str, Any] | Redirect:
    """The convention, for its staff and admins; to log in first, else the 403 page."""
    who = await viewer(request)
    if not who.signed_in:
        return Redirect(path=login_url(request.url.path), status_code=303)
    if not who.staff_of(convention_id):
        raise HTTPException(
            status_code=403,
            detail="The check-in station is for the convention's staff and admins.",
        )
    answer = await api(request).get(f"/api/v1/admin/conventions/{convention_id}")
    if answer.status == 404:
        raise NotFoundException()
    if not answer.ok or not isinstance(answer.body, dict):
        raise HTTPException(
            status_code=answer.status if answer.status >= 400 else 502, detail=answer.message
        )
    return dict(answer.body)


def badge_names(convention: dict[str, Any]) -> dict[str, str]:
    return {
        str(b["code"]): f"{b.get('name') or b['code']} ({b['code']})"
        for b in convention.get("badge_types", [])
    }


async def station_page(
    request: Request[Any, Any, Any],
    convention: dict[str, Any],
    *,
    status: int = 200,
    station: str = "",
    result: Result | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
) -> Template:
    convention_id = str(convention["convention_id"])
    names = badge_names(convention)
    return await render(
        request,
        "staff/station.html",
        status=status,
        convention=convention,
        station_base=_base(convention_id),
        api_base=_api_base(convention_id),
        badge_names_json=json.dumps(names),
        badge_names=names,
        station=station,
        result=result,
        errors=errors or {},
        message=message,
        form_key=new_form_key(),
    )


@get("/conventions/{convention_id:uuid}/station", name="station")
async def station(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    convention = await _convention(request, convention_id)
    if isinstance(convention, Redirect):
        return convention
    return await station_page(request, convention)


def _result_of(answer: Answer, names: dict[str, str]) -> Result:
    badge = str(answer.item("badge_type") or "")
    shown = names.get(badge, badge)
    name = str(answer.item("name") or "")
    registration_id = str(answer.item("registration_id") or "")
    if answer.status == 201:
        return Result("ok", "Checked in", name, shown, registration_id=registration_id)
    if answer.status == 202:
        return Result(
            "wait",
            "Being decided",
            detail="The check-in is being decided: look the attendee up in a moment.",
            registration_id=registration_id,
        )
    if answer.kind == "already-checked-in":
        where = answer.item("checked_in_station") or "another station"
        at = when(answer.item("checked_in_at"))
        return Result(
            "bad",
            "Already checked in",
            name,
            shown,
            f"Checked in at {where}{f', {at}' if at else ''}.",
            registration_id,
        )
    reason = str(answer.item("reason") or "")
    return Result("bad", "Refused", detail=REFUSALS.get(reason, answer.message), registration_id="")


@post("/conventions/{convention_id:uuid}/station", name="station-scan")
async def scan(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    """A scan sent by the form (the station without JavaScript): checked in through the API,
    its answer shown with the form ready for the next one."""
    form = await form_of(request)
    convention = await _convention(request, convention_id)
    if isinstance(convention, Redirect):
        return convention
    station_name, token = text(form, "station"), text(form, "token")
    errors = {
        name: MISSING[name]
        for name, value in (("station", station_name), ("token", token))
        if not value
    }
    if errors:
        return await station_page(
            request, convention, status=422, station=station_name, errors=errors
        )
    body: dict[str, Any] = {"token": token, "station": station_name}
    scan_id = text(form, "form_key")
    if _is_uuid(scan_id):
        body["scan_id"] = scan_id
    answer = await api(request, text(form, "csrf_token")).post(
        f"{_api_base(convention_id)}/check-ins", body
    )
    if answer.status == 401:
        return redirect(request, login_url(request.url.path))
    if answer.kind == "csrf-failed":
        raise HTTPException(status_code=403, detail=CSRF_DETAIL)
    if answer.ok or answer.kind in ("already-checked-in", "ticket-refused"):
        result = _result_of(answer, badge_names(convention))
        return await station_page(
            request,
            convention,
            status=200 if answer.ok else answer.status,
            station=station_name,
            result=result,
        )
    errors = {
        name: f"{STATION_LABELS[name]}: {message.removeprefix('Value error, ')}"
        for name, message in answer.field_errors.items()
        if name in STATION_LABELS
    }
    return await station_page(
        request,
        convention,
        status=answer.status if answer.status >= 400 else 422,
        station=station_name,
        errors=errors,
        message="" if errors else answer.message,
    )


def _is_uuid(raw: str) -> bool:
    try:
        uuid.UUID(raw)
    except ValueError:
        return False
    return True


@get("/conventions/{convention_id:uuid}/station/tickets", name="station-tickets")
async def tickets(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Response[Any]:
    """The API's ticket list and keys as this page's own JSON, with an ETag over what a
    station keeps (not the time it was made), so asking again every few seconds costs a
    304 while nothing changed."""
    answer = await api(request).get(f"{_api_base(convention_id)}/tickets")
    if not answer.ok or not isinstance(answer.body, dict):
        return Response(
            answer.body if isinstance(answer.body, dict) else {"title": answer.message},
            status_code=answer.status if answer.status >= 400 else 502,
            media_type="application/problem+json",
            headers={"Cache-Control": "no-store"},
        )
    kept = {key: value for key, value in answer.body.items() if key != "generated_at"}
    tag = '"' + hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
    if tag in request.headers.get("if-none-match", ""):
        return Response(content=None, status_code=304, headers=headers)
    return Response(content=answer.body, media_type="application/json", headers=headers)


@get(
    "/conventions/{convention_id:uuid}/check-ins/{registration_id:uuid}/badge.pdf",
    name="station-badge",
)
async def badge(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, registration_id: uuid.UUID
) -> Response[bytes] | Redirect:
    """The badge to print for a checked-in attendee."""
    return await passed_on(
        request, f"{_api_base(convention_id)}/check-ins/{registration_id}/badge.pdf"
    )


@get("/station-sw.js", name="station-service-worker", sync_to_thread=False)
def service_worker() -> Response[bytes]:
    """The station's service worker, served from `/staff/` so that it may keep the station
    pages (a worker's reach is the folder it is served from)."""
    return Response(
        SERVICE_WORKER.read_bytes(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


station_router = Router(
    path="/staff",
    route_handlers=[station, scan, tickets, badge, service_worker],
    exception_handlers=PAGE_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
