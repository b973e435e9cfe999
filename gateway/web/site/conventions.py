"""Conventions: the list with places left, one convention's page, registering, and joining
its waitlist."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get, post
from litestar.response import Redirect, Template

from gateway.web.api import Answer, new_form_key
from gateway.web.pages import (
    api,
    form_of,
    many,
    number,
    redirect,
    render,
    text,
    viewer,
)
from gateway.web.site.common import (
    CODE_REASONS,
    KEY_REUSED_TEXT,
    OPTION_REASONS,
    REASON_TEXT,
    REGISTER_LABELS,
    WAIT_SECONDS,
    Page,
    digest,
    done,
    fail,
    login_url,
    outright,
    page,
    placed,
    refused_status,
    unchanged,
)


@get("/", name="home", sync_to_thread=False)
def home() -> Redirect:
    return Redirect(path="/conventions", status_code=303)


async def _conventions(request: Request[Any, Any, Any]) -> Answer:
    answer = await api(request).get(
        "/api/v1/conventions", cursor=request.query_params.get("cursor")
    )
    if not answer.ok:
        fail(answer)
    return answer


def _cards_digest(items: list[dict[str, Any]]) -> str:
    return digest(
        [
            (
                c["convention_id"],
                c["status"],
                [(b["code"], b["remaining"]) for b in c["badge_types"]],
            )
            for c in items
        ]
    )


@get("/conventions", name="conventions")
async def conventions(request: Request[Any, Any, Any]) -> Template:
    answer = await _conventions(request)
    items = answer.item("items", [])
    return await page(
        request,
        "site/conventions.html",
        conventions=items,
        next_cursor=answer.item("next"),
        cursor=request.query_params.get("cursor") or "",
        seen=_cards_digest(items),
    )


@get("/conventions/numbers", name="conventions-numbers")
async def conventions_numbers(request: Request[Any, Any, Any]) -> Page:
    """The live part of the conventions list: each badge type's places left."""
    answer = await api(request).get(
        "/api/v1/conventions", cursor=request.query_params.get("cursor")
    )
    if not answer.ok:
        return unchanged()
    items = answer.item("items", [])
    seen = _cards_digest(items)
    if seen == request.query_params.get("seen"):
        return unchanged()
    return await render(
        request,
        "site/_convention_cards.html",
        conventions=items,
        cursor=request.query_params.get("cursor") or "",
        seen=seen,
    )


def _numbers_digest(convention: dict[str, Any]) -> str:
    return digest(
        convention["status"],
        [
            (
                b["code"],
                b["price_cents"],
                b.get("tier"),
                b.get("remaining_at_price"),
                b["remaining"],
            )
            for b in convention["badge_types"]
        ],
        [
            (o["code"], o["remaining"], [(v["code"], v["remaining"]) for v in o["variants"]])
            for o in convention.get("options", [])
        ],
    )


async def _convention(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> dict[str, Any]:
    answer = await api(request).get(f"/api/v1/conventions/{convention_id}")
    if not answer.ok:
        fail(answer)
    body: dict[str, Any] = answer.body
    return body


async def convention_page(
    request: Request[Any, Any, Any],
    convention_id: uuid.UUID,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    form_key: str | None = None,
) -> Template:
    convention = await _convention(request, convention_id)
    who = await viewer(request)
    if values is None:
        account = who.account or {}
        open_badges = [b["code"] for b in convention["badge_types"] if b["remaining"] > 0]
        values = {
            "name": account.get("name", ""),
            "email": account.get("email", ""),
            "badge_type": open_badges[0] if len(open_badges) == 1 else "",
            "options": [],
            "variants": {},
            "quantities": {},
            "promo_code": "",
        }
    return await page(
        request,
        "site/convention.html",
        status=status,
        convention=convention,
        seen=_numbers_digest(convention),
        values=values,
        errors=errors or {},
        message=message,
        form_key=form_key or new_form_key(),
        badge_names={b["code"]: b["name"] for b in convention["badge_types"]},
    )


@get("/conventions/{convention_id:uuid}", name="convention")
async def convention(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    return await convention_page(request, convention_id)


@get("/conventions/{convention_id:uuid}/numbers", name="convention-numbers")
async def convention_numbers(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    """The live part of a convention's page: prices in force and what is left."""
    answer = await api(request).get(f"/api/v1/conventions/{convention_id}")
    if not answer.ok:
        return unchanged()
    seen = _numbers_digest(answer.body)
    if seen == request.query_params.get("seen"):
        return unchanged()
    return await render(request, "site/_convention_numbers.html", convention=answer.body, seen=seen)


def _register_values(form: dict[str, Any]) -> dict[str, Any]:
    chosen = many(form, "option")
    return {
        "name": text(form, "name"),
        "email": text(form, "email"),
        "badge_type": text(form, "badge_type"),
        "options": chosen,
        "variants": {code: text(form, f"variant-{code}") for code in chosen},
        "quantities": {code: text(form, f"quantity-{code}") for code in chosen},
        "promo_code": text(form, "promo_code"),
    }


def _choices(form: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    choices: list[dict[str, Any]] = []
    for code in values["options"]:
        choice: dict[str, Any] = {"code": code}
        if values["variants"].get(code):
            choice["variant"] = values["variants"][code]
        quantity = number(form, f"quantity-{code}")
        if quantity is not None:
            choice["quantity"] = quantity
        choices.append(choice)
    return choices


def _rejection(
    reason: str, subject: str | None, convention: dict[str, Any], badge_type: str
) -> tuple[str, str]:
    """The field a registration's rejection is about, and what to say there."""
    options = {o["code"]: o["name"] for o in convention.get("options", [])}
    badges = {b["code"]: b["name"] for b in convention["badge_types"]}
    if reason in CODE_REASONS:
        return "promo_code", REASON_TEXT[reason]
    if reason == "sold_out" and subject:
        return f"option-{subject}", f"{options.get(subject, subject)} is sold out."
    if reason in OPTION_REASONS:
        field = f"option-{subject}" if subject in options else "options"
        return field, REASON_TEXT[reason]
    if reason == "sold_out":
        name = badges.get(badge_type, "This badge type")
        return "badge_type", f"{name} is sold out: join its waitlist to be offered a place."
    if reason == "unknown_badge_type":
        return "badge_type", REASON_TEXT[reason]
    if reason == "already_registered":
        return "email", REASON_TEXT[reason]
    return "form", REASON_TEXT.get(reason, "The registration was not accepted.")


@post("/conventions/{convention_id:uuid}/register", name="register")
async def register(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    form = await form_of(request)
    values = _register_values(form)
    body = {
        "name": values["name"],
        "email": values["email"],
        "badge_type": values["badge_type"],
        "options": _choices(form, values),
        "promo_code": values["promo_code"] or None,
    }
    form_key = text(form, "form_key") or None
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/conventions/{convention_id}/registrations",
        body,
        idempotency_key=form_key,
        wait_seconds=WAIT_SECONDS,
    )
    back = f"/conventions/{convention_id}"
    if answer.ok and answer.item("registration_id"):
        query = urlsplit(answer.headers.get("location", "")).query if answer.status == 202 else ""
        return redirect(
            request,
            f"/registrations/{answer.item('registration_id')}{'?' + query if query else ''}",
        )
    if answer.status == 401:
        return redirect(request, login_url(back))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    if answer.busy:
        return await convention_page(
            request,
            convention_id,
            status=503,
            values=values,
            message=answer.message,
            form_key=form_key,
        )
    if answer.status == 409 and answer.item("reason"):
        convention = await _convention(request, convention_id)
        field, said = _rejection(
            str(answer.item("reason")), answer.item("subject"), convention, values["badge_type"]
        )
        errors = {} if field == "form" else {field: said}
        return await convention_page(
            request,
            convention_id,
            status=409,
            values=values,
            errors=errors,
            message=said if field == "form" else "",
        )
    errors, message = placed(answer, REGISTER_LABELS, values)
    if answer.kind == "idempotency-key-reused":
        message = KEY_REUSED_TEXT
    return await convention_page(
        request,
        convention_id,
        status=refused_status(answer),
        values=values,
        errors=errors,
        message=message,
    )


@post("/conventions/{convention_id:uuid}/waitlist", name="join-waitlist")
async def join_waitlist(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    """Wait for a sold-out badge type: the button pressed names it; a guest gives the name
    and e-mail to offer a place to (an account's own are used otherwise)."""
    form = await form_of(request)
    code = text(form, "waitlist")
    values = {"wl_name": text(form, "wl_name"), "wl_email": text(form, "wl_email")}
    body: dict[str, Any] = {"kind": "badge", "code": code}
    if values["wl_email"]:
        body["email"] = values["wl_email"]
    if values["wl_name"]:
        body["name"] = values["wl_name"]
    answer = await api(request, text(form, "csrf_token")).post(
        f"/api/v1/conventions/{convention_id}/waitlist",
        body,
        idempotency_key=text(form, "form_key") or None,
    )
    back = f"/conventions/{convention_id}"
    if answer.ok and answer.item("entry_id"):
        who = await viewer(request)
        to = "/me/waitlist" if who.signed_in else f"/waitlist/{answer.item('entry_id')}"
        return redirect(request, done(to, "waitlist-joined"))
    stop = await outright(request, answer, back)
    if stop is not None:
        return stop
    reason = str(answer.item("reason") or "")
    errors: dict[str, str] = {}
    message = ""
    if reason:
        errors["badge_type"] = REASON_TEXT.get(reason, answer.message)
    else:
        labels = {"name": "Your name", "email": "E-mail address"}
        found, message = placed(
            answer, labels, {"name": values["wl_name"], "email": values["wl_email"]}
        )
        errors = {f"wl_{name}": said for name, said in found.items()}
    shown = {**_register_values({}), **values}
    return await convention_page(
        request,
        convention_id,
        status=refused_status(answer),
        values=shown,
        errors=errors,
        message=message,
    )
