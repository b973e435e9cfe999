"""The website for attendees: conventions, accounts, registering, paying, lodging, waitlists.

Each handler reads its form, calls the JSON API (`gateway.web.api`) and either redirects to
the result (303) or renders the form again with the API's refusal next to its fields (422,
or the API's own 4xx). The live parts (what is left of a convention, a registration being
decided or paid, a room being booked) are fragments htmx asks for again every few seconds;
a fragment whose numbers did not change answers 204, so nothing is swapped or announced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template

from gateway.correlation import CORRELATION_HEADER
from gateway.web.api import INTERNAL_BASE, TIMEOUT_SECONDS, Answer, Api, new_form_key
from gateway.web.pages import (
    PAGE_EXCEPTION_HANDLERS,
    api,
    error_page,
    form_of,
    keep_cookies,
    many,
    number,
    redirect,
    render,
    text,
    viewer,
)
from schemas.registration import SET_ASIDE

Page = Template | Redirect | Response[Any]

WAIT_SECONDS = 3
"""How long a registration form waits for its decision before showing it as being confirmed."""
CSRF_DETAIL = (
    "This form is out of date or was not sent from this site: reload the page and try again."
)

NOT_A_CODE = "This is not a code we sent: copy the whole line from the mail."

NOTICES = {
    "signed-up": "Your account is made. We mailed you a code: enter it below to confirm your "
    "e-mail address.",
    "verified": "Your e-mail address is confirmed.",
    "code-sent": "A new code is on its way to your e-mail address.",
    "already-verified": "Your e-mail address is confirmed already.",
    "reset-mailed": "If the address has an account, a code to reset its password is on its way.",
    "password-reset": "Your password is changed: log in with the new one.",
    "cancelled": "Your registration is cancelled.",
    "options-added": "The options are ordered: an order with something to pay holds them "
    "until it is paid, so pay for it below.",
    "given-back": "The option is given back; what you paid for it is refunded by the "
    "convention's refund rule.",
    "promo-applied": "The promo code is applied.",
    "room-requested": "Your room request is on its way to the hotels.",
    "room-cancelled": "Your room request is being cancelled.",
    "lottery-entered": "You are in the hotel lottery: once it is drawn, your room (or your "
    "place on its waiting list) shows here.",
    "waitlist-joined": "You are on the waitlist: we mail you when a place is offered.",
    "waitlist-left": "You left the waitlist.",
    "not-payable": "This order can no longer be paid: its hold ended, or it is paid already.",
}

STATUS_TEXT = {
    "pending": "Being confirmed",
    "pending_payment": "Waiting for payment",
    "confirmed": "Confirmed",
    "rejected": "Not accepted",
    "cancelled": "Cancelled",
    "expired": "Expired: not paid in time",
    "paid": "Paid",
    "requested": "Asked of the hotels",
    "held": "Held, being confirmed",
    "waitlisted": "On the hotel's waiting list",
    "failed": "Not booked",
    "waiting": "Waiting",
    "offered": "Offered to you",
    "accepted": "Accepted",
    "left": "Left",
}

REASON_TEXT = {
    "not_open": "The convention is not open for registration.",
    "unknown_badge_type": "The convention has no such badge type.",
    "sold_out": "What was asked for is sold out.",
    "already_registered": "This e-mail address already holds a registration for this convention.",
    "unknown_option": "The convention sells no such option.",
    "unknown_variant": "Choose one of the option's variants.",
    "option_not_for_badge": "This option cannot be bought with the badge type chosen.",
    "limit_reached": "That is more of this option than one registration may hold.",
    "unknown_code": "There is no such promo code.",
    "code_not_yet_valid": "The promo code is not valid yet.",
    "code_expired": "The promo code has expired.",
    "code_used_up": "The promo code has been used as often as it may be.",
    "code_not_applicable": "The promo code does not apply to anything in this order.",
    "code_already_applied": "The order has a promo code already.",
    "not_pending_payment": "The order is not waiting for its payment.",
    "not_removable": "The registration does not hold that many paid units of this option.",
    "not_sold_out": "There are places left: register instead of waiting.",
    "already_waiting": "This e-mail address waits in this line already.",
    "no_offer": "There is no offer to accept.",
    "offer_expired": "The offer ran out.",
    "not_cancellable": "This registration cannot be cancelled.",
    "lottery_not_open": "The hotel lottery is not open.",
    "lottery_already_run": "The hotel lottery has been drawn already.",
    "already_requested": "This registration already has a room request.",
    "registration_not_confirmed": "Rooms are for confirmed registrations.",
    "unknown_hotel": "Choose hotels from the list.",
    "unknown_room_type": "None of these hotels has this room type.",
    "nights_outside_block": "No hotel chosen has rooms of this type for every night of the stay.",
    "no_availability": "No hotel chosen had a room for these nights.",
    "refused_by_partner": "The hotels refused the request.",
    "registration_cancelled": "The registration was cancelled.",
    SET_ASIDE: "The request could not be processed and was set aside for the operators.",
}
CODE_REASONS = frozenset(
    {
        "unknown_code",
        "code_not_yet_valid",
        "code_expired",
        "code_used_up",
        "code_not_applicable",
        "code_already_applied",
    }
)
OPTION_REASONS = frozenset(
    {"unknown_option", "unknown_variant", "option_not_for_badge", "limit_reached"}
)
ROOM_ACTIVE = ("requested", "held", "confirmed", "waitlisted")
ROOM_MOVING = ("requested", "held")
REGISTRATION_MOVING = ("pending", "pending_payment")

REGISTER_LABELS = {
    "name": "Your name",
    "email": "E-mail address",
    "badge_type": "Badge type",
    "options": "Options",
    "promo_code": "Promo code",
}
ACCOUNT_LABELS = {"name": "Your name", "email": "E-mail address", "password": "Password"}
TOKEN_LABELS = {"token": "Code", "password": "New password"}
ROOM_LABELS = {
    "hotels": "Hotels",
    "room_type": "Room type",
    "check_in": "Check-in",
    "check_out": "Check-out",
    "guests": "Guests",
}


# --- helpers ------------------------------------------------------------------------------------


def safe_next(raw: str | None, default: str = "/me/registrations") -> str:
    """Where to go after logging in: only a path of this site (never `//elsewhere`)."""
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/") or raw.startswith("//"):
        return default
    return raw


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path)}"


def done(path: str, notice: str) -> str:
    """`path` with the notice the page it leads to shows (one of NOTICES, never free text)."""
    return f"{path}{'&' if '?' in path else '?'}done={notice}"


async def page(
    request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any
) -> Template:
    """A page with the notice its address names (after a redirect)."""
    context.setdefault("notice", NOTICES.get(request.query_params.get("done", "")))
    context.setdefault("status_text", STATUS_TEXT)
    context.setdefault("reason_text", REASON_TEXT)
    return await render(request, template, status=status, **context)


def fail(answer: Answer) -> NoReturn:
    """A read the page cannot do without was refused: the error page for it."""
    if answer.status == 404:
        raise NotFoundException()
    if answer.kind == "csrf-failed":
        raise HTTPException(status_code=403, detail=CSRF_DETAIL)
    status = answer.status if 400 <= answer.status < 600 else 502
    raise HTTPException(status_code=status, detail=answer.message)


async def outright(request: Request[Any, Any, Any], answer: Answer, back: str) -> Page | None:
    """The answers no form shows next to a field: a forged or stale form (403), a visitor
    who must log in first (to the login page, then back), something not there (404)."""
    if answer.status == 401:
        return redirect(request, login_url(back))
    if answer.kind != "csrf-failed" and answer.status != 404:
        return None
    await viewer(request)
    if answer.status == 404:
        return error_page(request, 404)
    return error_page(request, 403, CSRF_DETAIL)


def refused_status(answer: Answer) -> int:
    """The status a refused form is shown again with: the API's own error status, else 422."""
    return answer.status if 400 <= answer.status < 600 else 422


def friendly(label: str, value: Any, message: str) -> str:
    message = message.removeprefix("Value error, ").strip()
    if value in ("", None, []) or message == "Field required":
        return f"Enter {label[0].lower()}{label[1:]}."
    if "should match pattern" in message:
        return f"{label} has characters it cannot have."
    return f"{label}: {message[:1].lower()}{message[1:]}"


def placed(
    answer: Answer, labels: Mapping[str, str], values: Mapping[str, Any]
) -> tuple[dict[str, str], str]:
    """The API's refusal as the form shows it: each named field's error next to it, what
    names no field of the form in the summary's message."""
    errors: dict[str, str] = {}
    rest: list[str] = []
    for name, message in answer.field_errors.items():
        if name in labels:
            errors[name] = friendly(labels[name], values.get(name), message)
        else:
            rest.append(message.removeprefix("Value error, "))
    if not errors and not rest:
        return errors, answer.message
    return errors, " ".join(rest)


def digest(*parts: Any) -> str:
    """A short fingerprint of what a live region shows: unchanged, nothing is swapped."""
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def unchanged() -> Response[Any]:
    """A live region's answer when nothing changed: htmx swaps nothing and polls on."""
    return Response(content=None, status_code=204)


async def need_login(request: Request[Any, Any, Any]) -> Redirect | None:
    who = await viewer(request)
    if who.signed_in:
        return None
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(request, login_url(here))


# --- conventions --------------------------------------------------------------------------------


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
        message = "This form was sent before with other answers: check them and send it again."
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


# --- accounts -----------------------------------------------------------------------------------


@get("/login", name="login")
async def login_form(request: Request[Any, Any, Any]) -> Template:
    return await page(
        request,
        "site/login.html",
        next_path=safe_next(request.query_params.get("next")),
        values={},
        errors={},
    )


@post("/login", name="login-post")
async def login(request: Request[Any, Any, Any]) -> Page:
    form = await form_of(request)
    values = {"email": text(form, "email")}
    next_path = safe_next(text(form, "next"))
    answer = await api(request).post(
        "/api/v1/sessions", {"email": values["email"], "password": form.get("password", "")}
    )
    if answer.ok:
        keep_cookies(request, answer)
        return redirect(request, next_path)
    status = answer.status if answer.status in (401, 429, 503) else 422
    return await page(
        request,
        "site/login.html",
        status=status,
        next_path=next_path,
        values=values,
        errors=answer.field_errors,
        message=answer.message
        if answer.kind != "invalid-credentials"
        else "Wrong e-mail or password.",
    )


@post("/logout", name="logout")
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    form = await form_of(request)
    answer = await api(request, text(form, "csrf_token")).delete("/api/v1/sessions/current")
    keep_cookies(request, answer)
    return redirect(request, "/conventions")


@get("/signup", name="signup")
async def signup_form(request: Request[Any, Any, Any]) -> Template:
    return await page(request, "site/signup.html", values={}, errors={}, message="")


@post("/signup", name="signup-post")
async def signup(request: Request[Any, Any, Any]) -> Page:
    form = await form_of(request)
    values = {"name": text(form, "name"), "email": text(form, "email")}
    password = str(form.get("password", ""))
    answer = await api(request).post("/api/v1/accounts", {**values, "password": password})
    if answer.ok:
        return redirect(request, done("/verify", "signed-up"))
    if answer.kind == "email-taken":
        errors = {
            "email": "This e-mail address has an account already: log in, or reset its password."
        }
        message = ""
    else:
        errors, message = placed(answer, ACCOUNT_LABELS, {**values, "password": password})
    return await page(
        request,
        "site/signup.html",
        status=refused_status(answer),
        values=values,
        errors=errors,
        message=message,
    )


@get("/verify", name="verify")
async def verify_form(request: Request[Any, Any, Any]) -> Template:
    """The form for the mailed code; a link carrying `?token=` fills it in (confirming
    stays a post)."""
    token = request.query_params.get("token", "")
    return await page(request, "site/verify.html", values={"token": token}, errors={}, message="")


@post("/verify", name="verify-post")
async def verify(request: Request[Any, Any, Any]) -> Page:
    form = await form_of(request)
    values = {"token": text(form, "token")}
    answer = await api(request).post("/api/v1/accounts/verify", values)
    if answer.status == 200:
        who = await viewer(request)
        to = "/me/registrations" if who.signed_in else "/login"
        return redirect(request, done(to, "verified"))
    if answer.status == 202:
        message = "Your code is being checked: send it again in a moment."
        errors: dict[str, str] = {}
    elif answer.kind in ("invalid-token", "token-expired"):
        errors = {
            "token": "This code is wrong, used or replaced by a newer one."
            if answer.kind == "invalid-token"
            else "This code has expired: ask for a new one."
        }
        message = ""
    else:
        errors, message = placed(answer, TOKEN_LABELS, values)
        if "token" in errors and values["token"]:
            errors["token"] = NOT_A_CODE
    return await page(
        request,
        "site/verify.html",
        status=202 if answer.status == 202 else refused_status(answer),
        values=values,
        errors=errors,
        message=message,
    )


@post("/verify/resend", name="verify-resend")
async def resend(request: Request[Any, Any, Any]) -> Page:
    form = await form_of(request)
    answer = await api(request, text(form, "csrf_token")).post("/api/v1/accounts/verify/resend")
    if answer.ok:
        return redirect(request, done("/verify", "code-sent"))
    if answer.kind == "already-verified":
        return redirect(request, done("/me/registrations", "already-verified"))
    stop = await outright(request, answer, "/verify")
    if stop is not None:
        return stop
    return await page(
        request,
        "site/verify.html",
        status=answer.status,
        values={},
        errors={},
        message=answer.message,
    )


@get("/password-reset", name="password-reset")
async def reset_request_form(request: Request[Any, Any, Any]) -> Template:
    return await page(request, "site/password_reset.html", values={}, errors={}, message="")


@post("/password-reset", name="password-reset-post")
async def reset_request(request: Request[Any, Any, Any]) -> Page:
    form = await form_of(request)
    values = {"email": text(form, "email")}
    answer = await api(request).post("/api/v1/accounts/password-reset", values)
    if answer.ok:
        return redirect(request, done("/password-reset/confirm", "reset-mailed"))
    errors, message = placed(answer, ACCOUNT_LABELS, values)
    return await page(
        request,
        "site/password_reset.html",
        status=refused_status(answer),
        values=values,
        errors=errors,
        message=message,
    )


@get("/password-reset/confirm", name="password-reset-confirm")
async def reset_form(request: Request[Any, Any, Any]) -> Template:
    token = request.query_params.get("token", "")
    return await page(
        request, "site/password_reset_confirm.html", values={"token": token}, errors={}, message=""
    )


@post("/password-reset/confirm", name="password-reset-confirm-post")
async def reset(request: Request[Any, Any, Any]) -> Page:
    form = await form_of(request)
    values = {"token": text(form, "token")}
    password = str(form.get("password", ""))
    answer = await api(request).post(
        "/api/v1/accounts/password-reset/confirm", {**values, "password": password}
    )
    if answer.status == 200:
        return redirect(request, done("/login", "password-reset"))
    if answer.kind in ("invalid-token", "token-expired"):
        errors = {"token": "This code is wrong, used, expired or replaced by a newer one."}
        message = ""
    elif answer.status == 202:
        errors, message = {}, "Your new password is being set: send the form again in a moment."
    else:
        errors, message = placed(answer, TOKEN_LABELS, {**values, "password": password})
    return await page(
        request,
        "site/password_reset_confirm.html",
        status=refused_status(answer),
        values=values,
        errors=errors,
        message=message,
    )


# --- a registration -----------------------------------------------------------------------------


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
    if answer.status == 404 and command_id:
        # Just sent: the read model has not shown it yet; it is being confirmed.
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
        message = "This form was sent before with other answers: check them and send it again."
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


# --- mine: registrations and waitlists ------------------------------------------------------------


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


site_router = Router(
    path="/",
    route_handlers=[
        home,
        conventions,
        conventions_numbers,
        convention,
        convention_numbers,
        register,
        join_waitlist,
        login_form,
        login,
        logout,
        signup_form,
        signup,
        verify_form,
        verify,
        resend,
        reset_request_form,
        reset_request,
        reset_form,
        reset,
        registration,
        registration_status,
        registration_lodging,
        ticket_qr,
        ticket_pdf,
        receipt,
        pay,
        order_promo_code,
        cancel_form,
        cancel,
        give_back,
        add_options,
        join_option_waitlist,
        request_room,
        enter_lottery,
        cancel_room,
        my_registrations,
        my_waitlist,
        waitlist_entry,
        accept_offer,
        leave_waitlist,
    ],
    exception_handlers=PAGE_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
