"""The admin app's dashboard and lodging desk of one convention.

The dashboard shows registrations per minute, revenue by badge type, the hotel blocks'
pickup per night, the totals and check-in at the door, each in a region that htmx fetches
again every few seconds (its fragment route); without JavaScript the page shows the same
figures as of its loading.
The lodging desk shows the hotels and their pickup, the room requests (parked ones can be
retried), the hotel lottery and reconciliation with the partner.

Admins and staff of the convention see and act; analysts see the figures the API shows them
(the reports and the hotels' blocks) and no button; anyone else is refused. Every figure
comes from the JSON API, called in process, so a page shows what the API would answer and
nothing else.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template
from markupsafe import Markup

from gateway.web.api import Answer, Api, new_form_key
from gateway.web.charts import Datum, bar_chart, column_chart, number
from gateway.web.pages import (
    PAGE_EXCEPTION_HANDLERS,
    api,
    form_of,
    money,
    redirect,
    render,
    text,
    viewer,
)
from gateway.web.site import login_url

Page = Template | Redirect
REFRESH = "every 5s"
"""How often a dashboard region asks for its figures again."""
PAUSED_WHILE_READING = "[!this.querySelector('details[open]')]"
"""Not while its table is open: the swap would close it under the reader's eyes."""
PROGRESS_REFRESH = "every 1s"
"""How often a sync or reconciliation in progress is asked about."""
WINDOW_MINUTES = 30
"""The registrations chart shows this many minutes, up to now (or to the last registration,
when that was longer ago)."""
MINUTE = "%Y-%m-%dT%H:%M"
CHECK_IN_HOURS = 24
CHECK_IN_MIN_HOURS = 6
"""The check-in chart shows from 6 to 24 hours, up to the last check-in."""
CONFLICTS_SHOWN = 20
"""The latest conflicts between stations listed on the dashboard."""
ROOM_STATUSES = ("requested", "held", "confirmed", "waitlisted", "failed", "cancelled")
PARTS = ("totals", "revenue", "registrations", "pickup", "checkin")
WIDE = ("registrations", "pickup", "checkin")
"""The regions as wide as the page (the others share a row)."""


@dataclass(frozen=True)
class Desk:
    """The convention a page is about, as the API shows it to this visitor, and what the
    visitor may do there."""

    convention: dict[str, Any]
    may_act: bool
    """Admins and staff of the convention: the buttons, the requests and the lottery."""
    is_admin: bool
    """Admins also read syncs and reconciliations and retry parked requests (the API keeps
    those routes, which name no convention, for admins)."""

    @property
    def id(self) -> str:
        return str(self.convention["convention_id"])

    @property
    def currency(self) -> str:
        return str(self.convention.get("currency") or "EUR")

    @property
    def base(self) -> str:
        return f"/admin/conventions/{self.id}"

    def badge_name(self, code: str) -> str:
        for badge in self.convention.get("badge_types", []):
            if badge.get("code") == code:
                return f"{badge.get('name')} ({code})"
        return code


@dataclass(frozen=True)
class Part:
    """One live region of the dashboard."""

    name: str
    title: str
    url: str
    chart: Markup | None = None
    facts: Sequence[tuple[str, str, str]] = ()
    """(key, label, value): the totals."""
    note: str | None = None
    error: str | None = None
    more_charts: Sequence[Markup] = ()
    conflicts: Sequence[dict[str, Any]] = ()
    """Check-in: scans replaced by an earlier one at another station, the latest first."""
    more_conflicts: int = 0
    as_of: str = field(default_factory=lambda: datetime.now(UTC).strftime("%H:%M:%S UTC"))


def _page_path(request: Request[Any, Any, Any]) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def _desk(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Desk | Redirect:
    """Who may see the convention's pages: a visitor not logged in is sent to log in, one
    without the power is refused (403), an unknown convention is a 404."""
    who = await viewer(request)
    if not who.signed_in:
        return Redirect(path=login_url(_page_path(request)), status_code=303)
    if not (who.is_analyst or who.staff_of(convention_id)):
        raise HTTPException(
            status_code=403,
            detail="These pages are for admins, analysts and the convention's staff.",
        )
    may_act = who.staff_of(convention_id)
    answer = await api(request).get(
        f"/api/v1/admin/conventions/{convention_id}"
        if may_act
        else f"/api/v1/conventions/{convention_id}"
    )
    _check(answer)
    return Desk(convention=dict(answer.body), may_act=may_act, is_admin=who.is_admin)


def _check(answer: Answer) -> None:
    """A refusal of something the page cannot do without, as the page's own error."""
    if answer.ok and isinstance(answer.body, dict):
        return
    if answer.status == 404:
        raise NotFoundException()
    raise HTTPException(
        status_code=answer.status if answer.status >= 400 else 502, detail=answer.message
    )


# --- the figures ----------------------------------------------------------------------------


async def _report(call: Api, desk: Desk, name: str, **params: Any) -> Answer:
    return await call.get(f"/api/v1/admin/conventions/{desk.id}/reports/{name}", **params)


async def _pickup(call: Api, desk: Desk) -> Answer:
    """The blocks' pickup: the admin route for those who may use it; otherwise the same
    figures read from the hotels' list (block and booked per night), which anyone may read."""
    if desk.may_act:
        return await call.get(f"/api/v1/admin/conventions/{desk.id}/lodging/pickup")
    hotels = await call.get(f"/api/v1/conventions/{desk.id}/hotels")
    if not hotels.ok:
        return hotels
    return Answer(hotels.status, pickup_of_hotels(hotels.body), hotels.headers)


def pickup_of_hotels(view: dict[str, Any]) -> dict[str, Any]:
    """The pickup view (`GET …/lodging/pickup`) of a hotels list (`GET …/hotels`)."""
    hotels = []
    for hotel in view.get("hotels", []):
        room_types = []
        for room in hotel.get("room_types", []):
            nights = [
                {
                    "night": n["night"],
                    "block": n["block"],
                    "booked": n["booked"],
                    "pickup_percent": _percent(n["booked"], n["block"]),
                }
                for n in room.get("nights", [])
            ]
            block, booked = sum(n["block"] for n in nights), sum(n["booked"] for n in nights)
            room_types.append(
                {
                    "code": room["code"],
                    "description": room.get("description", ""),
                    "block": block,
                    "booked": booked,
                    "pickup_percent": _percent(booked, block),
                    "nights": nights,
                }
            )
        block = sum(r["block"] for r in room_types)
        booked = sum(r["booked"] for r in room_types)
        hotels.append(
            {
                "code": hotel["code"],
                "name": hotel.get("name", hotel["code"]),
                "block": block,
                "booked": booked,
                "pickup_percent": _percent(booked, block),
                "room_types": room_types,
            }
        )
    block, booked = sum(h["block"] for h in hotels), sum(h["booked"] for h in hotels)
    return {
        "convention_id": view.get("convention_id"),
        "block": block,
        "booked": booked,
        "pickup_percent": _percent(booked, block),
        "hotels": hotels,
    }


def _percent(booked: int, block: int) -> float:
    return round(100 * booked / block, 1) if block > 0 else 0.0


def per_minute(
    rows: Sequence[dict[str, Any]], now: datetime, minutes: int = WINDOW_MINUTES
) -> list[Datum]:
    """Registrations per minute over the last `minutes` minutes, gaps as zeros: up to `now`
    while registrations came in that window, else up to the last one."""
    counts: dict[datetime, int] = defaultdict(int)
    for row in rows:
        try:
            moment = datetime.strptime(str(row["period"]), MINUTE)
        except ValueError:
            continue
        counts[moment] += int(row.get("registrations") or 0)
    end = now.replace(tzinfo=None, second=0, microsecond=0)
    if counts and end - max(counts) >= timedelta(minutes=minutes):
        end = max(counts)
    start = end - timedelta(minutes=minutes - 1)
    return [
        Datum(label=f"{moment:%Y-%m-%d %H:%M}", value=counts.get(moment, 0))
        for moment in (start + timedelta(minutes=i) for i in range(minutes))
    ]


def revenue_by_badge(desk: Desk, rows: Sequence[dict[str, Any]]) -> list[Datum]:
    """Revenue per badge type, every badge type of the convention (none sold: zero) first."""
    cents: dict[str, int] = {b["code"]: 0 for b in desk.convention.get("badge_types", [])}
    for row in rows:
        if row.get("dimension") == "badge_type":
            code = str(row["code"])
            cents[code] = cents.get(code, 0) + int(row.get("revenue_cents") or 0)
    return [
        Datum(label=desk.badge_name(code), value=value, text=money(value, desk.currency))
        for code, value in cents.items()
    ]


def pickup_by_night(pickup: dict[str, Any]) -> list[Datum]:
    """Room nights booked against the block, per hotel and night (room types added up)."""
    data = []
    for hotel in pickup.get("hotels", []):
        nights: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for room in hotel.get("room_types", []):
            for night in room.get("nights", []):
                nights[str(night["night"])][0] += int(night["booked"])
                nights[str(night["night"])][1] += int(night["block"])
        for night, (booked, block) in sorted(nights.items()):
            data.append(
                Datum(
                    label=f"{hotel['code']} {night}",
                    value=booked,
                    text=f"{booked} of {block}",
                    limit=block,
                )
            )
    return data


def pickup_by_hotel(pickup: dict[str, Any]) -> list[Datum]:
    return [
        Datum(
            label=f"{hotel['name']} ({hotel['code']})",
            value=int(hotel["booked"]),
            text=f"{hotel['booked']} of {hotel['block']} ({hotel['pickup_percent']}%)",
            limit=int(hotel["block"]),
        )
        for hotel in pickup.get("hotels", [])
    ]


def per_hour(rows: Sequence[dict[str, Any]], hours: int = CHECK_IN_HOURS) -> list[Datum]:
    """Check-ins per hour up to the last one, gaps as zeros: from the first, but at least
    `CHECK_IN_MIN_HOURS` and at most `hours`."""
    counts: dict[datetime, int] = defaultdict(int)
    for row in rows:
        try:
            moment = datetime.fromisoformat(str(row["hour"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        hour = moment.astimezone(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
        counts[hour] += int(row.get("checked_in") or 0)
    if not counts:
        return []
    end = max(counts)
    start = max(
        min(min(counts), end - timedelta(hours=CHECK_IN_MIN_HOURS - 1)),
        end - timedelta(hours=hours - 1),
    )
    span = int((end - start) / timedelta(hours=1)) + 1
    return [
        Datum(label=f"{moment:%Y-%m-%d %H:00}", value=counts.get(moment, 0))
        for moment in (start + timedelta(hours=i) for i in range(span))
    ]


def checked_in_by_badge(desk: Desk, rows: Sequence[dict[str, Any]]) -> list[Datum]:
    return [
        Datum(
            label=desk.badge_name(str(row["badge_type"])),
            value=int(row["checked_in"]),
            text=f"{number(int(row['checked_in']))} of {number(int(row['registered']))}",
            limit=int(row["registered"]),
        )
        for row in rows
    ]


async def _check_in(call: Api, desk: Desk, url: str) -> Part:
    """The door: checked in of registered, per badge type and per hour, and the scans two
    stations disagreed on."""
    answer = await call.get(f"/api/v1/staff/conventions/{desk.id}/check-ins/summary")
    if not answer.ok or not isinstance(answer.body, dict):
        return Part("checkin", "Check-in", url, error=_unavailable(answer))
    body = answer.body
    registered, checked_in = int(body["registered"]), int(body["checked_in"])
    facts = [
        (
            "checked-in",
            "Checked in",
            f"{number(checked_in)} of {number(registered)} ({_percent(checked_in, registered)}%)",
        ),
        ("conflicts", "Conflicts between stations", number(len(body["conflicts"]))),
    ]
    by_badge = bar_chart(
        "chart-checkin-badges",
        "Checked in of registered, per badge type",
        checked_in_by_badge(desk, body["by_badge_type"]),
        label_heading="Badge type",
        value_heading="Checked in",
        limit_heading="Registered",
        empty="The convention has no badge types yet.",
    )
    by_hour = column_chart(
        "chart-checkin-hours",
        "Check-ins per hour (UTC)",
        per_hour(body["by_hour"]),
        label_heading="Hour (UTC)",
        value_heading="Check-ins",
        axis_label=lambda label: label[-5:],
        empty="Nobody is checked in yet.",
    )
    conflicts = list(reversed(body["conflicts"]))
    return Part(
        "checkin",
        "Check-in",
        url,
        chart=by_badge,
        facts=facts,
        more_charts=(by_hour,),
        conflicts=conflicts[:CONFLICTS_SHOWN],
        more_conflicts=max(0, len(conflicts) - CONFLICTS_SHOWN),
    )


def _rows(answer: Answer) -> list[dict[str, Any]]:
    rows = answer.item("rows", [])
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _unavailable(answer: Answer) -> str:
    return f"These figures cannot be read just now: {answer.message}"


async def _part(request: Request[Any, Any, Any], desk: Desk, name: str) -> Part:
    call = api(request)
    url = f"{desk.base}/dashboard/{name}"
    if name == "registrations":
        answer = await _report(call, desk, "registrations", by="minute")
        if not answer.ok:
            return Part(name, "Registrations", url, error=_unavailable(answer))
        rows = _rows(answer)
        data = per_minute(rows, datetime.now(UTC))
        total = sum(int(r.get("registrations") or 0) for r in rows)
        chart = column_chart(
            "chart-registrations",
            f"Registrations per minute, the last {WINDOW_MINUTES} minutes (UTC)",
            data,
            label_heading="Minute (UTC)",
            value_heading="Registrations",
            axis_label=lambda label: label[-5:],
        )
        shown = int(sum(d.value for d in data))
        note = f"{number(total)} registrations in all, {number(shown)} in the minutes shown."
        return Part(name, "Registrations", url, chart=chart, note=note)
    if name == "revenue":
        answer = await _report(call, desk, "revenue")
        if not answer.ok:
            return Part(name, "Revenue", url, error=_unavailable(answer))
        chart = bar_chart(
            "chart-revenue",
            "Revenue by badge type (paid less refunded)",
            revenue_by_badge(desk, _rows(answer)),
            label_heading="Badge type",
            value_heading=f"Revenue ({desk.currency})",
            empty="The convention has no badge types yet.",
        )
        return Part(name, "Revenue", url, chart=chart)
    if name == "pickup":
        answer = await _pickup(call, desk)
        if not answer.ok:
            return Part(name, "Hotel pickup", url, error=_unavailable(answer))
        chart = bar_chart(
            "chart-pickup",
            "Room nights booked of the block, per hotel and night",
            pickup_by_night(answer.body),
            label_heading="Hotel and night",
            value_heading="Booked of the block",
            limit_heading="Block",
            empty="No hotel blocks yet: sync them from the partner on the Lodging page.",
        )
        return Part(name, "Hotel pickup", url, chart=chart)
    if name == "checkin":
        return await _check_in(call, desk, url)
    return await _totals(call, desk, url)


async def _totals(call: Api, desk: Desk, url: str) -> Part:
    registrations, revenue, pickup = await asyncio.gather(
        _report(call, desk, "registrations"), _report(call, desk, "revenue"), _pickup(call, desk)
    )
    facts: list[tuple[str, str, str]] = []
    errors = [a.message for a in (registrations, revenue, pickup) if not a.ok]
    if registrations.ok:
        rows = _rows(registrations)
        for key, label in (
            ("registrations", "Registrations"),
            ("confirmed", "Confirmed"),
            ("cancelled", "Cancelled"),
            ("expired", "Expired"),
        ):
            facts.append((key, label, number(sum(int(r.get(key) or 0) for r in rows))))
    if revenue.ok:
        cents = sum(int(r.get("revenue_cents") or 0) for r in _rows(revenue))
        facts.append(("revenue", "Revenue", money(cents, desk.currency)))
    if pickup.ok:
        body = pickup.body
        booked = (
            f"{number(body['booked'])} of {number(body['block'])} ({body['pickup_percent']}%)"
            if body["block"]
            else "no hotel blocks yet"
        )
        facts.append(("room-nights", "Room nights booked", booked))
    error = f"Some figures cannot be read just now: {'; '.join(errors)}" if errors else None
    return Part("totals", "Totals", url, facts=facts, error=error)


# --- the dashboard --------------------------------------------------------------------------


@get("/{convention_id:uuid}/dashboard", name="admin-dashboard")
async def dashboard(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    desk = await _desk(request, convention_id)
    if isinstance(desk, Redirect):
        return desk
    parts = await asyncio.gather(*(_part(request, desk, name) for name in PARTS))
    return await render(
        request,
        "admin/dashboard.html",
        convention=desk.convention,
        desk=desk,
        parts=parts,
        wide=WIDE,
        refresh=REFRESH,
        paused=PAUSED_WHILE_READING,
    )


@get("/{convention_id:uuid}/dashboard/{part:str}", name="admin-dashboard-part")
async def dashboard_part(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, part: str
) -> Response[Any]:
    """One region of the dashboard, for htmx to swap in. Should the visitor no longer see
    the page (logged out, role revoked), htmx is told to load the page itself, which says
    why."""
    if part not in PARTS:
        raise NotFoundException()
    desk = await _fragment_desk(request, convention_id, "dashboard")
    if not isinstance(desk, Desk):
        return desk
    return await render(
        request,
        "admin/dashboard_part.html",
        part=await _part(request, desk, part),
        refresh=REFRESH,
        paused=PAUSED_WHILE_READING,
    )


# --- the lodging desk -----------------------------------------------------------------------

NOTICES = {
    "retry": "The room request was sent back to the partner.",
    "lottery-open": "The lottery is being opened: confirmed attendees can enter.",
    "lottery-run": "The lottery is being drawn.",
    "reconcile": "Reconciliation with the partner was asked for. Its report is for admins.",
}


def _filters(request: Request[Any, Any, Any]) -> dict[str, str]:
    params = request.query_params
    status = str(params.get("status") or "")
    return {
        "status": status if status in ROOM_STATUSES else "",
        "parked": "true" if params.get("parked") in ("true", "on", "1") else "",
        "cursor": str(params.get("cursor") or ""),
    }


@dataclass(frozen=True)
class Progress:
    """A sync or reconciliation as far as the API tells this visitor."""

    kind: str
    id: str
    url: str
    view: dict[str, Any] | None
    message: str | None = None

    @property
    def running(self) -> bool:
        return self.message is None and (self.view is None or self.view["status"] == "requested")


async def _sync_progress(request: Request[Any, Any, Any], desk: Desk, sync_id: str) -> Progress:
    url = f"{desk.base}/lodging/syncs/{sync_id}"
    answer = await api(request).get(f"/api/v1/admin/lodging/syncs/{sync_id}")
    if answer.ok and answer.item("convention_id") == desk.id:
        return Progress("sync", sync_id, url, dict(answer.body))
    if answer.status == 404:
        return Progress("sync", sync_id, url, None)
    if answer.status == 403:
        return Progress(
            "sync",
            sync_id,
            url,
            None,
            "The sync was asked for; only admins can follow its progress. Reload the page "
            "to see the blocks once the partner has answered.",
        )
    return Progress("sync", sync_id, url, None, _unavailable(answer))


async def _lodging_page(
    request: Request[Any, Any, Any],
    desk: Desk,
    *,
    status: int = 200,
    message: str | None = None,
    errors: dict[str, str] | None = None,
    seed: str = "",
) -> Template:
    call = api(request)
    filters = _filters(request)
    wanted: dict[str, Any] = {
        "hotels": call.get(f"/api/v1/conventions/{desk.id}/hotels"),
        "pickup": _pickup(call, desk),
    }
    if desk.may_act:
        wanted["requests"] = call.get(
            f"/api/v1/admin/conventions/{desk.id}/lodging/requests",
            status=filters["status"],
            parked=filters["parked"],
            cursor=filters["cursor"],
            limit=50,
        )
        wanted["lottery"] = call.get(f"/api/v1/admin/conventions/{desk.id}/lodging/lottery")
    sync_id = str(request.query_params.get("sync") or "")
    if _is_uuid(sync_id):
        wanted["sync"] = _sync_progress(request, desk, sync_id)
    found = dict(zip(wanted, await asyncio.gather(*wanted.values()), strict=True))
    pickup: Answer = found["pickup"]
    chart = (
        bar_chart(
            "chart-lodging-pickup",
            "Room nights booked of the block, per hotel",
            pickup_by_hotel(pickup.body),
            label_heading="Hotel",
            value_heading="Booked of the block",
            limit_heading="Block",
            empty="No hotel blocks yet.",
        )
        if pickup.ok
        else None
    )
    done = str(request.query_params.get("done") or "")
    return await render(
        request,
        "admin/lodging.html",
        status=status,
        convention=desk.convention,
        desk=desk,
        hotels=found["hotels"],
        pickup=pickup,
        pickup_chart=chart,
        requests=found.get("requests"),
        lottery=found.get("lottery"),
        sync=found.get("sync"),
        filters=filters,
        status_choices=[("", "Any status"), *((s, s) for s in ROOM_STATUSES)],
        notice=NOTICES.get(done),
        message=message,
        errors=errors or {},
        seed=seed,
        form_key=new_form_key(),
        progress_refresh=PROGRESS_REFRESH,
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@get("/{convention_id:uuid}/lodging", name="admin-lodging")
async def lodging(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    desk = await _desk(request, convention_id)
    if isinstance(desk, Redirect):
        return desk
    return await _lodging_page(request, desk)


async def _acting(
    request: Request[Any, Any, Any], convention_id: uuid.UUID
) -> tuple[Desk, dict[str, Any]] | Redirect:
    """A lodging form's post: the visitor may act on the convention, and the form."""
    form = await form_of(request)
    desk = await _desk(request, convention_id)
    if isinstance(desk, Redirect):
        return Redirect(
            path=login_url(f"/admin/conventions/{convention_id}/lodging"), status_code=303
        )
    if not desk.may_act:
        raise HTTPException(status_code=403, detail="Analysts read; they do not act.")
    return desk, form


async def _act(
    request: Request[Any, Any, Any],
    desk: Desk,
    form: dict[str, Any],
    path: str,
    body: Any = None,
) -> Answer:
    return await api(request, text(form, "csrf_token")).post(
        path, body, idempotency_key=text(form, "form_key") or None
    )


@post("/{convention_id:uuid}/lodging/sync", name="admin-lodging-sync")
async def sync_hotels(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    acting = await _acting(request, convention_id)
    if isinstance(acting, Redirect):
        return acting
    desk, form = acting
    answer = await _act(request, desk, form, f"/api/v1/admin/conventions/{desk.id}/hotels/sync")
    if not answer.ok:
        return await _lodging_page(request, desk, status=answer.status, message=answer.message)
    return redirect(request, f"{desk.base}/lodging?sync={answer.item('sync_id')}#hotels")


@get("/{convention_id:uuid}/lodging/syncs/{sync_id:uuid}", name="admin-lodging-sync-status")
async def sync_status(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, sync_id: uuid.UUID
) -> Response[Any]:
    """The sync's region, for htmx; once the sync is done, the page is loaded again to show
    the hotels it brought."""
    desk = await _fragment_desk(request, convention_id, "lodging")
    if not isinstance(desk, Desk):
        return desk
    progress = await _sync_progress(request, desk, str(sync_id))
    finished = progress.view is not None and progress.view["status"] == "done"
    return await render(
        request,
        "admin/lodging_sync.html",
        sync=progress,
        progress_refresh=PROGRESS_REFRESH,
        headers={"HX-Refresh": "true"} if finished else None,
    )


async def _fragment_desk(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, page: str
) -> Desk | Response[Any]:
    try:
        desk = await _desk(request, convention_id)
    except HTTPException:
        desk = None
    if isinstance(desk, Desk):
        return desk
    return Response(
        content=b"",
        status_code=204,
        headers={"HX-Redirect": f"/admin/conventions/{convention_id}/{page}"},
    )


@post(
    "/{convention_id:uuid}/lodging/requests/{request_id:uuid}/retry",
    name="admin-lodging-retry",
)
async def retry_request(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, request_id: uuid.UUID
) -> Page:
    acting = await _acting(request, convention_id)
    if isinstance(acting, Redirect):
        return acting
    desk, form = acting
    answer = await _act(request, desk, form, f"/api/v1/admin/lodging/{request_id}/retry")
    if not answer.ok:
        return await _lodging_page(request, desk, status=answer.status, message=answer.message)
    return redirect(request, f"{desk.base}/lodging?done=retry#requests")


@post("/{convention_id:uuid}/lodging/lottery/open", name="admin-lodging-lottery-open")
async def open_lottery(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    acting = await _acting(request, convention_id)
    if isinstance(acting, Redirect):
        return acting
    desk, form = acting
    answer = await _act(
        request, desk, form, f"/api/v1/admin/conventions/{desk.id}/lodging/lottery/open"
    )
    if not answer.ok:
        return await _lodging_page(request, desk, status=answer.status, message=answer.message)
    return redirect(request, f"{desk.base}/lodging?done=lottery-open#lottery")


@post("/{convention_id:uuid}/lodging/lottery/run", name="admin-lodging-lottery-run")
async def run_lottery(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    acting = await _acting(request, convention_id)
    if isinstance(acting, Redirect):
        return acting
    desk, form = acting
    seed = text(form, "seed")
    body = {"seed": int(seed) if seed.isdigit() else seed}
    answer = await _act(
        request, desk, form, f"/api/v1/admin/conventions/{desk.id}/lodging/lottery/run", body
    )
    if not answer.ok:
        errors = answer.field_errors
        return await _lodging_page(
            request,
            desk,
            status=answer.status if answer.status in (409, 503) else 422,
            message=answer.message if not errors else None,
            errors=errors,
            seed=seed,
        )
    return redirect(request, f"{desk.base}/lodging?done=lottery-run#lottery")


@post("/{convention_id:uuid}/lodging/reconcile", name="admin-lodging-reconcile")
async def reconcile(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    acting = await _acting(request, convention_id)
    if isinstance(acting, Redirect):
        return acting
    desk, form = acting
    answer = await _act(
        request, desk, form, f"/api/v1/admin/conventions/{desk.id}/lodging/reconcile"
    )
    if not answer.ok:
        return await _lodging_page(request, desk, status=answer.status, message=answer.message)
    if not desk.is_admin:
        return redirect(request, f"{desk.base}/lodging?done=reconcile#reconcile")
    return redirect(
        request, f"{desk.base}/lodging/reconciliations/{answer.item('reconciliation_id')}"
    )


async def _reconciliation(
    request: Request[Any, Any, Any], desk: Desk, reconciliation_id: uuid.UUID
) -> Progress:
    url = f"{desk.base}/lodging/reconciliations/{reconciliation_id}"
    answer = await api(request).get(f"/api/v1/admin/lodging/reconciliations/{reconciliation_id}")
    if answer.ok and answer.item("convention_id") == desk.id:
        return Progress("reconciliation", str(reconciliation_id), url, dict(answer.body))
    if answer.ok or answer.status == 404:
        raise NotFoundException()
    if answer.status == 403:
        raise HTTPException(status_code=403, detail="Reconciliation reports are for admins.")
    return Progress("reconciliation", str(reconciliation_id), url, None, _unavailable(answer))


@get(
    "/{convention_id:uuid}/lodging/reconciliations/{reconciliation_id:uuid}",
    name="admin-lodging-reconciliation",
)
async def reconciliation(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, reconciliation_id: uuid.UUID
) -> Page:
    desk = await _desk(request, convention_id)
    if isinstance(desk, Redirect):
        return desk
    report = await _reconciliation(request, desk, reconciliation_id)
    return await render(
        request,
        "admin/lodging_reconciliation.html",
        convention=desk.convention,
        desk=desk,
        report=report,
        progress_refresh=PROGRESS_REFRESH,
    )


@get(
    "/{convention_id:uuid}/lodging/reconciliations/{reconciliation_id:uuid}/report",
    name="admin-lodging-reconciliation-report",
)
async def reconciliation_report(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, reconciliation_id: uuid.UUID
) -> Response[Any]:
    """The report's region, for htmx, while the reconciliation runs."""
    desk = await _fragment_desk(
        request, convention_id, f"lodging/reconciliations/{reconciliation_id}"
    )
    if not isinstance(desk, Desk):
        return desk
    try:
        report = await _reconciliation(request, desk, reconciliation_id)
    except HTTPException:
        return Response(content=b"", status_code=204, headers={"HX-Refresh": "true"})
    return await render(
        request,
        "admin/lodging_reconciliation_report.html",
        report=report,
        progress_refresh=PROGRESS_REFRESH,
    )


dashboard_router = Router(
    path="/admin/conventions",
    route_handlers=[
        dashboard,
        dashboard_part,
        lodging,
        sync_hotels,
        sync_status,
        retry_request,
        open_lottery,
        run_lottery,
        reconcile,
        reconciliation,
        reconciliation_report,
    ],
    exception_handlers=PAGE_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
