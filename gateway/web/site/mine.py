"""What is mine: my registrations, my waitlist places, accepting or leaving an offer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from litestar import Request, get, post
from litestar.response import Template

from gateway.web.api import Api, new_form_key
from gateway.web.pages import (
    api,
    form_of,
    redirect,
    text,
    viewer,
)
from gateway.web.site.common import (
    CODE_REASONS,
    REASON_TEXT,
    Page,
    done,
    fail,
    friendly,
    need_login,
    outright,
    page,
    refused_status,
)


async def _convention_names(client: Api, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    unique = sorted(set(ids))
    answers = await asyncio.gather(*(client.get(f"/api/v1/conventions/{cid}") for cid in unique))
    return {cid: a.body for cid, a in zip(unique, answers, strict=True) if a.ok}


@get("/me/registrations", name="my-registrations")
async def my_registrations(request: Request[Any, Any, Any]) -> Page:
    login_first = await need_login(request)
    if login_first is not None:
        return login_first
    client = api(request)
    answer = await client.get("/api/v1/me/registrations")
    if not answer.ok:
        fail(answer)
    items = answer.item("items", [])
    away = answer.item("transferred_away", [])
    conventions = await _convention_names(
        client, [i["convention_id"] for i in items] + [a["convention_id"] for a in away]
    )
    return await page(
        request,
        "site/my_registrations.html",
        registrations=items,
        transferred_away=away,
        conventions=conventions,
    )


@get("/me/waitlist", name="my-waitlist")
async def my_waitlist(request: Request[Any, Any, Any]) -> Page:
    login_first = await need_login(request)
    if login_first is not None:
        return login_first
    client = api(request)
    answer = await client.get("/api/v1/me/waitlist")
    if not answer.ok:
        fail(answer)
    entries = answer.item("items", [])
    return await page(
        request,
        "site/my_waitlist.html",
        entries=entries,
        form_key=new_form_key(),
        conventions=await _convention_names(client, [e["convention_id"] for e in entries]),
        errors={},
    )


async def waitlist_entry_page(
    request: Request[Any, Any, Any],
    entry_id: uuid.UUID,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> Template:
    client = api(request)
    answer = await client.get(f"/api/v1/waitlist/{entry_id}")
    if not answer.ok:
        fail(answer)
    entry = answer.body
    return await page(
        request,
        "site/waitlist_entry.html",
        status=status,
        entry=entry,
        form_key=new_form_key(),
        conventions=await _convention_names(client, [entry["convention_id"]]),
        errors=errors or {},
    )


@get("/waitlist/{entry_id:uuid}", name="waitlist-entry")
async def waitlist_entry(request: Request[Any, Any, Any], entry_id: uuid.UUID) -> Template:
    return await waitlist_entry_page(request, entry_id)


@post("/waitlist/{entry_id:uuid}/accept", name="accept-offer")
async def accept_offer(request: Request[Any, Any, Any], entry_id: uuid.UUID) -> Page:
    form = await form_of(request)
    code = text(form, "promo_code")
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/waitlist/{entry_id}/accept",
        {"promo_code": code} if code else {},
        idempotency_key=text(form, "form_key") or None,
    )
    if answer.ok and answer.item("registration_id"):
        return redirect(request, f"/registrations/{answer.item('registration_id')}")
    stop = await outright(request, answer, f"/waitlist/{entry_id}")
    if stop is not None:
        return stop
    reason = str(answer.item("reason") or "")
    if reason in CODE_REASONS or "promo_code" in answer.field_errors:
        field = f"promo-{entry_id}"
        said = REASON_TEXT.get(reason) or friendly(
            "Promo code", code, answer.field_errors.get("promo_code", answer.message)
        )
    else:
        field, said = f"entry-{entry_id}", REASON_TEXT.get(reason, answer.message)
    return await waitlist_entry_page(
        request,
        entry_id,
        status=refused_status(answer),
        errors={field: said},
    )


@post("/waitlist/{entry_id:uuid}/leave", name="leave-waitlist")
async def leave_waitlist(request: Request[Any, Any, Any], entry_id: uuid.UUID) -> Page:
    form = await form_of(request)
    answer = await api(request, text(form, "csrf_token")).delete(
        f"/api/v1/waitlist/{entry_id}", idempotency_key=text(form, "form_key") or None
    )
    if answer.ok:
        who = await viewer(request)
        to = "/me/waitlist" if who.signed_in else f"/waitlist/{entry_id}"
        return redirect(request, done(to, "waitlist-left"))
    stop = await outright(request, answer, f"/waitlist/{entry_id}")
    if stop is not None:
        return stop
    return await waitlist_entry_page(
        request,
        entry_id,
        status=refused_status(answer),
        errors={f"entry-{entry_id}": REASON_TEXT.get(str(answer.item("reason")), answer.message)},
    )
