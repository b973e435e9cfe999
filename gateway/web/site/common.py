"""What the website's pages share: the texts they show, reading forms and answers, the
login redirect."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template

from gateway.web.api import Answer
from gateway.web.pages import (
    error_page,
    redirect,
    render,
    viewer,
)
from schemas.registration import SET_ASIDE

Page = Template | Redirect | Response[Any]

WAIT_SECONDS = 3
"""How long a registration form waits for its decision before showing it as being confirmed."""
CSRF_DETAIL = (
    "This form is out of date or was not sent from this site: reload the page and try again."
)

KEY_REUSED_TEXT = "This form was sent before with other answers: check them and send it again."
"""A form sent again with other answers under the same form key."""

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
