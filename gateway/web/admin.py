"""The administration app (`/admin`): conventions and their catalogue, registrations and
their history, accounts and roles, dead letters, and the first admin's bootstrap.

Who may enter: admins (everything), analysts (what the public API shows, read-only), and
staff of a convention (that convention's pages); anyone else gets a 403 page, and a visitor
who is not logged in is sent to the website's login. Like the website, every page is a client
of the JSON API (`gateway.web.api`), which refuses, validates and decides: a form posts, and
is either redirected to its result with a fixed notice (`?done=<key>`) or rendered again with
the API's refusal next to its fields.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template

from gateway.web.api import Answer, Api, new_form_key
from gateway.web.pages import (
    PAGE_EXCEPTION_HANDLERS,
    Viewer,
    api,
    cents,
    form_of,
    many,
    number,
    redirect,
    render,
    text,
    viewer,
)
from gateway.web.site import login_url

Page = Template | Redirect
Values = dict[str, Any]

STATUSES = ("pending", "pending_payment", "confirmed", "rejected", "cancelled", "expired")
"""The registration statuses the admin listing filters on."""
ROLES = (("admin", "Admin"), ("analyst", "Analyst"), ("staff", "Staff of a convention"))
BLANK_ROWS = 4
"""Rows a form offers for a list (badge types, variants, tiers) beyond those it holds."""
MAX_ROWS = 50
"""Badge types a convention can be created with, as the API takes them."""
LIST_LIMIT = 100
PAGE_SIZE = 50

DONE = {
    "bootstrapped": "You are an admin now.",
    "created": "The convention was created as a draft.",
    "opened": "Registration is open.",
    "closed": "Registration is closed.",
    "quota": "The quota was changed.",
    "tiers": "The price tiers were saved.",
    "option-added": "The option was added.",
    "option-changed": "The option was changed.",
    "promo-created": "The promo code was created.",
    "policy": "The order policy was saved.",
    "granted": "The role was granted.",
    "revoked": "The role was revoked.",
    "retried": "The dead letter was sent back to its topic.",
    "pending": "Sent: it is still being decided. Reload in a moment to see it.",
}
"""The only notices a redirect can ask for: a query never puts its own text on a page."""

REASON_FIELDS = {
    "code_exists": "code",
    "quota_below_taken": "quota",
    "currency_mismatch": "currency",
    "scope_required": "convention_id",
    "unknown_badge_type": "badge_types",
    "unknown_account": "email",
}
"""The form field a refusal without field errors is about, when the form has that field."""

NOT_STAFF = (
    "The administration app is for admins, analysts and convention staff. "
    "To make the first admin, use /admin/bootstrap with the admin token."
)


# --- who may enter -------------------------------------------------------------------------


class LoginNeeded(HTTPException):
    status_code = 401


def _to_login(request: Request[Any, Any, Any], exc: LoginNeeded) -> Response[Any]:
    target = "/admin"
    if request.method == "GET":
        query = request.url.query
        target = request.url.path + (f"?{query}" if query else "")
    return redirect(request, login_url(target))


async def signed_in(request: Request[Any, Any, Any]) -> Viewer:
    who = await viewer(request)
    if not who.signed_in:
        raise LoginNeeded()
    return who


async def staff_viewer(request: Request[Any, Any, Any]) -> Viewer:
    """Someone the admin app has something for: an admin, an analyst, staff."""
    who = await signed_in(request)
    if not who.may_administer:
        raise HTTPException(status_code=403, detail=NOT_STAFF)
    return who


async def admin_viewer(request: Request[Any, Any, Any]) -> Viewer:
    who = await staff_viewer(request)
    if not who.is_admin:
        raise HTTPException(status_code=403, detail="This page is for admins.")
    return who


async def convention_viewer(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, *, manage: bool = False
) -> Viewer:
    """Admins and the convention's staff; analysts too when the page only reads."""
    who = await staff_viewer(request)
    if who.staff_of(convention_id) or (who.is_analyst and not manage):
        return who
    raise HTTPException(
        status_code=403, detail="This needs the admin role, or staff of this convention."
    )


def ensure(answer: Answer) -> Answer:
    """An answer a page can show; a refusal becomes the error page (a session that ended,
    the login)."""
    if answer.ok:
        return answer
    if answer.status == 401:
        raise LoginNeeded()
    raise HTTPException(status_code=answer.status, detail=answer.message)


def notice_of(request: Request[Any, Any, Any]) -> str | None:
    return DONE.get(str(request.query_params.get("done", "")))


def done(request: Request[Any, Any, Any], to: str, key: str, answer: Answer) -> Redirect:
    """After a write: its result, with its notice (or the pending one for a 202)."""
    joiner = "&" if "?" in to else "?"
    return redirect(request, f"{to}{joiner}done={'pending' if answer.status == 202 else key}")


async def posted(request: Request[Any, Any, Any]) -> tuple[Values, Api]:
    """The posted form, and the API on behalf of the visitor with the form's CSRF token."""
    form = await form_of(request)
    return form, api(request, text(form, "csrf_token"))


def form_key(form: Values) -> str | None:
    return text(form, "form_key") or None


# --- forms ---------------------------------------------------------------------------------


def values_of(form: Values) -> Values:
    """What the visitor typed, to show again in a refused form (never the CSRF token)."""
    return {
        name: value
        for name, value in form.items()
        if name not in ("csrf_token", "form_key", "token")
    }


def rows_of(form: Values, group: str, leaves: Sequence[str]) -> list[int]:
    """The numbers of the rows of a repeated group (`badge_types_code_0`, …) that are not
    left blank."""
    filled: list[int] = []
    row = 0
    while any(f"{group}_{leaf}_{row}" in form for leaf in leaves):
        if any(text(form, f"{group}_{leaf}_{row}") for leaf in leaves):
            filled.append(row)
        row += 1
    return filled


def row_count(values: Values, group: str, leaves: Sequence[str], held: int = 0) -> int:
    """How many rows a form shows: the rows posted, or those held plus blanks."""
    posted_rows = 0
    while any(f"{group}_{leaf}_{posted_rows}" in values for leaf in leaves):
        posted_rows += 1
    return max(posted_rows, held + BLANK_ROWS)


def compact(body: Mapping[str, Any]) -> Values:
    """A body without the fields left blank, so the API applies its defaults."""
    return {name: value for name, value in body.items() if value not in (None, "")}


def moment(raw: str) -> str | None:
    """A `datetime-local` field's value (`2027-03-01T09:30`) as UTC, as the form says; any
    other text is passed on as typed, for the API to name."""
    if not raw:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", raw):
        return f"{raw}:00Z"
    return raw


def local_moment(value: Any) -> str:
    """An API timestamp as a `datetime-local` field shows it (UTC)."""
    return str(value or "")[:16]


def form_errors(
    answer: Answer, fields: Collection[str], rows: Mapping[str, Sequence[int]] | None = None
) -> tuple[dict[str, str], str]:
    """The API's refusal as the form shows it: a message per form field, and what belongs
    to no field. A field error in a list (`badge_types.1.quota`) goes to the form row the
    item came from (`badge_types_quota_<row>`); an error about the whole body goes to the
    first field it names."""
    errors: dict[str, str] = {}
    loose: list[str] = []
    for item in answer.problem.get("errors") or ():
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid")).removeprefix("Value error, ")
        name = _form_name(str(item.get("field", "")), rows or {})
        if name not in fields:
            name = _named_in(message, fields)
        if name:
            errors.setdefault(name, message)
        else:
            loose.append(message)
    if answer.kind == "validation-error":
        return errors, " ".join(loose) or ("" if errors else answer.message)
    field = REASON_FIELDS.get(str(answer.problem.get("reason", "")))
    if not errors and field in fields:
        return {str(field): answer.message}, ""
    return errors, answer.message


def _form_name(path: str, rows: Mapping[str, Sequence[int]]) -> str:
    parts = [p for p in re.split(r"[.\[\]]+", path.removeprefix("$.")) if p]
    if parts and parts[0] == "body":
        parts = parts[1:]
    for at, part in enumerate(parts):
        if part.isdigit() and at > 0:
            group, index = parts[at - 1], int(part)
            numbers = rows.get(group, ())
            row = numbers[index] if index < len(numbers) else index
            return f"{group}_{parts[at + 1]}_{row}" if at + 1 < len(parts) else group
    return parts[-1] if parts else ""


def _named_in(message: str, fields: Collection[str]) -> str:
    found = [
        (match.start(), name)
        for name in fields
        if (match := re.search(rf"\b{re.escape(name)}\b", message)) is not None
    ]
    return min(found)[1] if found else ""


def refused_status(answer: Answer) -> int:
    if answer.status == 401:
        raise LoginNeeded()
    return answer.status if answer.status >= 400 else 422


# --- the conventions -----------------------------------------------------------------------


async def convention_of(
    request: Request[Any, Any, Any], who: Viewer, convention_id: uuid.UUID
) -> dict[str, Any]:
    """The convention as the viewer may see it: every one for admins and staff, the
    public view (open and closed ones) for analysts."""
    path = (
        f"/api/v1/admin/conventions/{convention_id}"
        if who.staff_of(convention_id)
        else f"/api/v1/conventions/{convention_id}"
    )
    body: dict[str, Any] = ensure(await api(request).get(path)).body
    return body


async def every_convention(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """Every convention, drafts included (admins), for choosing one."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(20):
        answer = ensure(
            await api(request).get("/api/v1/admin/conventions", limit=LIST_LIMIT, cursor=cursor)
        )
        items.extend(answer.item("items", []))
        cursor = answer.item("next")
        if not cursor:
            break
    return items


def totals(convention: Mapping[str, Any]) -> dict[str, int]:
    badges = convention.get("badge_types", [])
    return {
        "sold": sum(int(b["sold"]) for b in badges),
        "quota": sum(int(b["quota"]) for b in badges),
        "options": len(convention.get("options", [])),
    }


@get("/", name="admin-home")
async def home(request: Request[Any, Any, Any]) -> Template:
    who = await staff_viewer(request)
    cursor = request.query_params.get("cursor")
    next_cursor = None
    if who.is_admin or who.is_analyst:
        path = "/api/v1/admin/conventions" if who.is_admin else "/api/v1/conventions"
        answer = ensure(await api(request).get(path, limit=LIST_LIMIT, cursor=cursor))
        conventions = answer.item("items", [])
        next_cursor = answer.item("next")
    else:
        conventions = [
            ensure(await api(request).get(f"/api/v1/admin/conventions/{scope}")).body
            for scope in who.staff_conventions
        ]
    return await render(
        request,
        "admin/index.html",
        conventions=[{**c, "totals": totals(c)} for c in conventions],
        next_cursor=next_cursor,
        notice=notice_of(request),
    )


# --- the first admin -------------------------------------------------------------------------


@get("/bootstrap", name="admin-bootstrap")
async def bootstrap_form(request: Request[Any, Any, Any]) -> Template:
    await signed_in(request)
    return await render(request, "admin/bootstrap.html", errors={}, message="", notice=None)


@post("/bootstrap", name="admin-bootstrap-post")
async def bootstrap(request: Request[Any, Any, Any]) -> Page:
    """Grant the visitor's own account the admin role with the admin token, which is sent
    to the API as a bearer token and kept nowhere."""
    who = await signed_in(request)
    form = await form_of(request)
    token = text(form, "token")
    if not token:
        return await _bootstrap_refused(request, "Enter the admin token.")
    if not (token.isascii() and token.isprintable()):
        return await _bootstrap_refused(request, "This is not the admin token.")
    assert who.account is not None
    answer = await Api(request, extra_headers={"Authorization": f"Bearer {token}"}).post(
        f"/api/v1/admin/accounts/{who.account['account_id']}/roles", {"role": "admin"}
    )
    if answer.status in (401, 403):
        return await _bootstrap_refused(request, "This is not the admin token.")
    if not answer.ok:
        return await _bootstrap_refused(request, answer.message, refused_status(answer))
    roles = {(r.get("role"), r.get("convention_id")) for r in answer.item("roles", [])}
    if ("admin", None) not in roles:
        return await render(
            request, "admin/bootstrap.html", errors={}, message="", notice=DONE["pending"]
        )
    return redirect(request, "/admin?done=bootstrapped")


async def _bootstrap_refused(
    request: Request[Any, Any, Any], message: str, status: int = 422
) -> Template:
    return await render(
        request,
        "admin/bootstrap.html",
        status=status,
        errors={"token": message},
        message="",
        notice=None,
    )


# --- creating a convention -------------------------------------------------------------------

BADGE_LEAVES = ("code", "name", "price_cents", "quota")
CONVENTION_FIELDS = (
    "name",
    "starts_on",
    "ends_on",
    "allow_guests",
    "currency",
    "hold_minutes",
    "badge_types",
)


@get("/conventions/new", name="admin-convention-new")
async def new_convention_form(request: Request[Any, Any, Any]) -> Template:
    await admin_viewer(request)
    values = {"allow_guests": "on", "currency": "EUR", "hold_minutes": "15"}
    return await _convention_form(request, values, {}, "")


async def _convention_form(
    request: Request[Any, Any, Any],
    values: Values,
    errors: dict[str, str],
    message: str,
    status: int = 200,
    more_rows: int = 0,
) -> Template:
    return await render(
        request,
        "admin/convention_new.html",
        status=status,
        values=values,
        errors=errors,
        message=message,
        badge_rows=min(row_count(values, "badge_types", BADGE_LEAVES) + more_rows, MAX_ROWS),
        form_key=new_form_key(),
    )


@post("/conventions", name="admin-convention-create")
async def create_convention(request: Request[Any, Any, Any]) -> Page:
    await admin_viewer(request)
    form, client = await posted(request)
    if "more_rows" in form:
        return await _convention_form(request, values_of(form), {}, "", more_rows=BLANK_ROWS)
    rows = rows_of(form, "badge_types", BADGE_LEAVES)
    body = {
        "name": text(form, "name"),
        "starts_on": text(form, "starts_on"),
        "ends_on": text(form, "ends_on"),
        "allow_guests": "allow_guests" in form,
        "policy": compact(
            {"currency": text(form, "currency"), "hold_minutes": number(form, "hold_minutes")}
        ),
        "badge_types": [
            {
                "code": text(form, f"badge_types_code_{row}"),
                "name": text(form, f"badge_types_name_{row}"),
                "price_cents": cents(form, f"badge_types_price_cents_{row}"),
                "quota": number(form, f"badge_types_quota_{row}"),
            }
            for row in rows
        ],
    }
    answer = await client.post("/api/v1/admin/conventions", body, idempotency_key=form_key(form))
    if answer.ok:
        return done(
            request, f"/admin/conventions/{answer.item('convention_id')}", "created", answer
        )
    fields = [*CONVENTION_FIELDS, *_row_fields(form, "badge_types", BADGE_LEAVES)]
    errors, message = form_errors(answer, fields, {"badge_types": rows})
    return await _convention_form(request, values_of(form), errors, message, refused_status(answer))


def _row_fields(values: Values, group: str, leaves: Sequence[str]) -> list[str]:
    count = row_count(values, group, leaves)
    return [f"{group}_{leaf}_{row}" for row in range(count) for leaf in leaves]


# --- a convention: overview, opening and closing ----------------------------------------------


@get("/conventions/{convention_id:uuid}", name="admin-convention")
async def overview(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    who = await convention_viewer(request, convention_id)
    convention = await convention_of(request, who, convention_id)
    return await render(
        request,
        "admin/convention.html",
        convention=convention,
        totals=totals(convention),
        may_manage=who.staff_of(convention_id),
        notice=notice_of(request),
    )


TRANSITIONS = {
    "open": ("Open registration", "opened"),
    "close": ("Close registration", "closed"),
}


@get("/conventions/{convention_id:uuid}/open", name="admin-convention-open-confirm")
async def confirm_open(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    return await _confirm(request, convention_id, "open")


@get("/conventions/{convention_id:uuid}/close", name="admin-convention-close-confirm")
async def confirm_close(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    return await _confirm(request, convention_id, "close")


@post("/conventions/{convention_id:uuid}/open", name="admin-convention-open")
async def open_convention(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    return await _transition(request, convention_id, "open")


@post("/conventions/{convention_id:uuid}/close", name="admin-convention-close")
async def close_convention(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    return await _transition(request, convention_id, "close")


async def _confirm(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, action: str
) -> Template:
    """Opening and closing are asked twice: the overview's button leads here."""
    who = await convention_viewer(request, convention_id, manage=True)
    convention = await convention_of(request, who, convention_id)
    return await _confirm_page(request, convention, action, "")


async def _confirm_page(
    request: Request[Any, Any, Any],
    convention: dict[str, Any],
    action: str,
    message: str,
    status: int = 200,
) -> Template:
    return await render(
        request,
        "admin/confirm.html",
        status=status,
        convention=convention,
        action=action,
        label=TRANSITIONS[action][0],
        message=message,
        form_key=new_form_key(),
    )


async def _transition(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, action: str
) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    answer = await client.post(
        f"/api/v1/admin/conventions/{convention_id}/{action}", idempotency_key=form_key(form)
    )
    if answer.ok:
        return done(request, f"/admin/conventions/{convention_id}", TRANSITIONS[action][1], answer)
    status = refused_status(answer)
    convention = await convention_of(request, who, convention_id)
    return await _confirm_page(request, convention, action, answer.message, status)


# --- the catalogue ---------------------------------------------------------------------------

POLICY_FIELDS = ("currency", "hold_minutes", "offer_minutes", "refund_percent")


@get("/conventions/{convention_id:uuid}/catalogue", name="admin-catalogue")
async def catalogue(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    who = await convention_viewer(request, convention_id)
    return await _catalogue_page(request, who, convention_id, None, {}, "")


async def _catalogue_page(
    request: Request[Any, Any, Any],
    who: Viewer,
    convention_id: uuid.UUID,
    values: Values | None,
    errors: dict[str, str],
    message: str,
    status: int = 200,
) -> Template:
    convention = await convention_of(request, who, convention_id)
    promo_codes: list[dict[str, Any]] = []
    policy: dict[str, Any] = {"currency": convention.get("currency", "EUR")}
    if who.staff_of(convention_id):
        base = f"/api/v1/admin/conventions/{convention_id}"
        promo_codes = ensure(await api(request).get(f"{base}/promo-codes")).item("items", [])
        policy = ensure(await api(request).get(f"{base}/order-policy")).body
    return await render(
        request,
        "admin/catalogue.html",
        status=status,
        convention=convention,
        promo_codes=promo_codes,
        policy=policy,
        values=values if values is not None else {k: policy.get(k, "") for k in POLICY_FIELDS},
        errors=errors,
        message=message,
        may_manage=who.staff_of(convention_id),
        notice=notice_of(request),
        form_key=new_form_key(),
    )


@post("/conventions/{convention_id:uuid}/order-policy", name="admin-policy")
async def set_policy(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    body = {
        "currency": text(form, "currency"),
        "hold_minutes": number(form, "hold_minutes"),
        "offer_minutes": number(form, "offer_minutes"),
        "refund_percent": number(form, "refund_percent"),
    }
    answer = await client.put(
        f"/api/v1/admin/conventions/{convention_id}/order-policy",
        body,
        idempotency_key=form_key(form),
    )
    if answer.ok:
        return done(request, f"/admin/conventions/{convention_id}/catalogue", "policy", answer)
    errors, message = form_errors(answer, POLICY_FIELDS)
    return await _catalogue_page(
        request, who, convention_id, values_of(form), errors, message, refused_status(answer)
    )


# --- a badge type: quota and price tiers ------------------------------------------------------

TIER_LEAVES = ("name", "price_cents", "until", "size")


def _badge_type(convention: Mapping[str, Any], code: str) -> dict[str, Any]:
    found: dict[str, Any] | None = next(
        (b for b in convention.get("badge_types", []) if b["code"].casefold() == code.casefold()),
        None,
    )
    if found is None:
        raise HTTPException(status_code=404)
    return found


def _tier_values(badge: Mapping[str, Any]) -> Values:
    values: Values = {"quota": str(badge["quota"])}
    for row, tier in enumerate(badge.get("tiers", [])):
        values[f"tiers_name_{row}"] = tier["name"]
        values[f"tiers_price_cents_{row}"] = _amount(tier["price_cents"])
        values[f"tiers_until_{row}"] = local_moment(tier.get("until"))
        values[f"tiers_size_{row}"] = "" if tier.get("size") is None else str(tier["size"])
    return values


def _amount(cents_value: Any) -> str:
    """Minor units as a form shows them for editing: `45.00`."""
    value = int(cents_value)
    return f"{value // 100}.{value % 100:02d}"


@get("/conventions/{convention_id:uuid}/badge-types/{code:str}", name="admin-badge-type")
async def badge_type_page(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, code: str
) -> Template:
    who = await convention_viewer(request, convention_id, manage=True)
    convention = await convention_of(request, who, convention_id)
    badge = _badge_type(convention, code)
    return await _badge_type_form(request, convention, badge, _tier_values(badge), {}, "")


async def _badge_type_form(
    request: Request[Any, Any, Any],
    convention: dict[str, Any],
    badge: dict[str, Any],
    values: Values,
    errors: dict[str, str],
    message: str,
    status: int = 200,
) -> Template:
    return await render(
        request,
        "admin/badge_type.html",
        status=status,
        convention=convention,
        badge=badge,
        values=values,
        errors=errors,
        message=message,
        tier_rows=row_count(values, "tiers", TIER_LEAVES, len(badge.get("tiers", []))),
        form_key=new_form_key(),
    )


@post("/conventions/{convention_id:uuid}/badge-types/{code:str}/quota", name="admin-quota")
async def set_quota(request: Request[Any, Any, Any], convention_id: uuid.UUID, code: str) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    answer = await client.put(
        f"/api/v1/admin/conventions/{convention_id}/badge-types/{quote(code, safe='')}/quota",
        {"quota": number(form, "quota")},
        idempotency_key=form_key(form),
    )
    if answer.ok:
        return done(request, f"/admin/conventions/{convention_id}/catalogue", "quota", answer)
    convention = await convention_of(request, who, convention_id)
    badge = _badge_type(convention, code)
    errors, message = form_errors(answer, ("quota",))
    values = {**_tier_values(badge), **values_of(form)}
    return await _badge_type_form(
        request, convention, badge, values, errors, message, refused_status(answer)
    )


@post("/conventions/{convention_id:uuid}/badge-types/{code:str}/tiers", name="admin-tiers")
async def set_tiers(request: Request[Any, Any, Any], convention_id: uuid.UUID, code: str) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    rows = rows_of(form, "tiers", TIER_LEAVES)
    tiers = [
        compact(
            {
                "name": text(form, f"tiers_name_{row}"),
                "price_cents": cents(form, f"tiers_price_cents_{row}"),
                "until": moment(text(form, f"tiers_until_{row}")),
                "size": number(form, f"tiers_size_{row}"),
            }
        )
        for row in rows
    ]
    answer = await client.put(
        f"/api/v1/admin/conventions/{convention_id}/badge-types/{quote(code, safe='')}/tiers",
        {"tiers": tiers},
        idempotency_key=form_key(form),
    )
    if answer.ok:
        return done(request, f"/admin/conventions/{convention_id}/catalogue", "tiers", answer)
    convention = await convention_of(request, who, convention_id)
    badge = _badge_type(convention, code)
    fields = ["tiers", *_row_fields(form, "tiers", TIER_LEAVES)]
    errors, message = form_errors(answer, fields, {"tiers": rows})
    values = {"quota": str(badge["quota"]), **values_of(form)}
    return await _badge_type_form(
        request, convention, badge, values, errors, message, refused_status(answer)
    )


# --- options ---------------------------------------------------------------------------------

VARIANT_LEAVES = ("code", "name", "quota")
OPTION_FIELDS = ("code", "name", "price_cents", "quota", "max_per_registration", "badge_types")


def _option(convention: Mapping[str, Any], code: str) -> dict[str, Any]:
    found: dict[str, Any] | None = next(
        (o for o in convention.get("options", []) if o["code"].casefold() == code.casefold()),
        None,
    )
    if found is None:
        raise HTTPException(status_code=404)
    return found


def _option_values(option: Mapping[str, Any]) -> Values:
    values: Values = {
        "code": option["code"],
        "name": option["name"],
        "price_cents": _amount(option["price_cents"]),
        "quota": "" if option.get("quota") is None else str(option["quota"]),
        "max_per_registration": str(option["max_per_registration"]),
        "badge_types": list(option.get("badge_types", [])),
    }
    for row, variant in enumerate(option.get("variants", [])):
        values[f"variants_code_{row}"] = variant["code"]
        values[f"variants_name_{row}"] = variant["name"]
        quota = variant.get("quota")
        values[f"variants_quota_{row}"] = "" if quota is None else str(quota)
    return values


async def _option_form(
    request: Request[Any, Any, Any],
    convention: dict[str, Any],
    option: dict[str, Any] | None,
    values: Values,
    errors: dict[str, str],
    message: str,
    status: int = 200,
) -> Template:
    held = len(option.get("variants", [])) if option else 0
    return await render(
        request,
        "admin/option.html",
        status=status,
        convention=convention,
        option=option,
        held_variants=held,
        values=values,
        errors=errors,
        message=message,
        variant_rows=row_count(values, "variants", VARIANT_LEAVES, held),
        form_key=new_form_key(),
    )


def _option_body(form: Values, rows: Sequence[int]) -> Values:
    return compact(
        {
            "name": text(form, "name"),
            "price_cents": cents(form, "price_cents"),
            "quota": number(form, "quota"),
            "max_per_registration": number(form, "max_per_registration"),
            "badge_types": many(form, "badge_types"),
            "variants": [
                compact(
                    {
                        "code": text(form, f"variants_code_{row}"),
                        "name": text(form, f"variants_name_{row}"),
                        "quota": number(form, f"variants_quota_{row}"),
                    }
                )
                for row in rows
            ],
        }
    )


@get("/conventions/{convention_id:uuid}/options/new", name="admin-option-new")
async def new_option_form(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    who = await convention_viewer(request, convention_id, manage=True)
    convention = await convention_of(request, who, convention_id)
    return await _option_form(request, convention, None, {"max_per_registration": "1"}, {}, "")


@post("/conventions/{convention_id:uuid}/options", name="admin-option-create")
async def create_option(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    rows = rows_of(form, "variants", VARIANT_LEAVES)
    body = {"code": text(form, "code"), **_option_body(form, rows)}
    answer = await client.post(
        f"/api/v1/admin/conventions/{convention_id}/options",
        body,
        idempotency_key=form_key(form),
    )
    if answer.ok:
        return done(
            request, f"/admin/conventions/{convention_id}/catalogue", "option-added", answer
        )
    convention = await convention_of(request, who, convention_id)
    fields = [*OPTION_FIELDS, "variants", *_row_fields(form, "variants", VARIANT_LEAVES)]
    errors, message = form_errors(answer, fields, {"variants": rows})
    return await _option_form(
        request, convention, None, values_of(form), errors, message, refused_status(answer)
    )


@get("/conventions/{convention_id:uuid}/options/{code:str}/edit", name="admin-option")
async def option_form(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, code: str
) -> Template:
    who = await convention_viewer(request, convention_id, manage=True)
    convention = await convention_of(request, who, convention_id)
    option = _option(convention, code)
    return await _option_form(request, convention, option, _option_values(option), {}, "")


@post("/conventions/{convention_id:uuid}/options/{code:str}/edit", name="admin-option-change")
async def change_option(
    request: Request[Any, Any, Any], convention_id: uuid.UUID, code: str
) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    rows = rows_of(form, "variants", VARIANT_LEAVES)
    answer = await client.put(
        f"/api/v1/admin/conventions/{convention_id}/options/{quote(code, safe='')}",
        _option_body(form, rows),
        idempotency_key=form_key(form),
    )
    if answer.ok:
        return done(
            request, f"/admin/conventions/{convention_id}/catalogue", "option-changed", answer
        )
    convention = await convention_of(request, who, convention_id)
    option = _option(convention, code)
    fields = [*OPTION_FIELDS, "variants", *_row_fields(form, "variants", VARIANT_LEAVES)]
    errors, message = form_errors(answer, fields, {"variants": rows})
    values = {**values_of(form), "code": option["code"]}
    return await _option_form(
        request, convention, option, values, errors, message, refused_status(answer)
    )


# --- promo codes -----------------------------------------------------------------------------

PROMO_FIELDS = (
    "code",
    "percent_off",
    "amount_off_cents",
    "max_uses",
    "valid_from",
    "valid_until",
    "badge_types",
    "options",
)


async def _promo_form(
    request: Request[Any, Any, Any],
    convention: dict[str, Any],
    values: Values,
    errors: dict[str, str],
    message: str,
    status: int = 200,
) -> Template:
    return await render(
        request,
        "admin/promo_code.html",
        status=status,
        convention=convention,
        values=values,
        errors=errors,
        message=message,
        form_key=new_form_key(),
    )


@get("/conventions/{convention_id:uuid}/promo-codes/new", name="admin-promo-new")
async def new_promo_form(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    who = await convention_viewer(request, convention_id, manage=True)
    convention = await convention_of(request, who, convention_id)
    return await _promo_form(request, convention, {}, {}, "")


@post("/conventions/{convention_id:uuid}/promo-codes", name="admin-promo-create")
async def create_promo(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Page:
    who = await convention_viewer(request, convention_id, manage=True)
    form, client = await posted(request)
    body = compact(
        {
            "code": text(form, "code"),
            "percent_off": number(form, "percent_off"),
            "amount_off_cents": cents(form, "amount_off_cents"),
            "max_uses": number(form, "max_uses"),
            "valid_from": moment(text(form, "valid_from")),
            "valid_until": moment(text(form, "valid_until")),
            "badge_types": many(form, "badge_types"),
            "options": many(form, "options"),
        }
    )
    answer = await client.post(
        f"/api/v1/admin/conventions/{convention_id}/promo-codes",
        body,
        idempotency_key=form_key(form),
    )
    if answer.ok:
        return done(
            request, f"/admin/conventions/{convention_id}/catalogue", "promo-created", answer
        )
    convention = await convention_of(request, who, convention_id)
    errors, message = form_errors(answer, PROMO_FIELDS)
    return await _promo_form(
        request, convention, values_of(form), errors, message, refused_status(answer)
    )


# --- registrations ---------------------------------------------------------------------------

FILTERS = ("status", "badge_type", "email", "name")


@get("/conventions/{convention_id:uuid}/registrations", name="admin-registrations")
async def registrations(request: Request[Any, Any, Any], convention_id: uuid.UUID) -> Template:
    who = await convention_viewer(request, convention_id)
    convention = await convention_of(request, who, convention_id)
    filters = {name: str(request.query_params.get(name, "")).strip() for name in FILTERS}
    chosen = {name: value for name, value in filters.items() if value}
    answer = await api(request).get(
        f"/api/v1/admin/conventions/{convention_id}/registrations",
        limit=PAGE_SIZE,
        cursor=request.query_params.get("cursor"),
        **chosen,
    )
    errors: dict[str, str] = {}
    message = ""
    if not answer.ok and answer.status in (400, 422):
        errors, message = form_errors(answer, FILTERS)
    else:
        ensure(answer)
    query = urlencode(chosen)
    next_cursor = answer.item("next")
    return await render(
        request,
        "admin/registrations.html",
        status=200 if answer.ok else answer.status,
        convention=convention,
        items=answer.item("items", []),
        values=filters,
        status_choices=[("", "Any status"), *((s, s) for s in STATUSES)],
        badge_choices=[
            ("", "Any badge type"),
            *((b["code"], f"{b['name']} ({b['code']})") for b in convention["badge_types"]),
        ],
        errors=errors,
        message=message,
        query=query,
        first_page=bool(request.query_params.get("cursor")),
        next_page=None if not next_cursor else "?" + urlencode({**chosen, "cursor": next_cursor}),
        csv_url=f"/api/v1/admin/conventions/{convention_id}/registrations.csv"
        + (f"?{query}" if query else ""),
    )


@get("/registrations/{registration_id:uuid}", name="admin-registration")
async def registration(request: Request[Any, Any, Any], registration_id: uuid.UUID) -> Template:
    """A registration with its orders and every event about it."""
    who = await staff_viewer(request)
    found = ensure(await api(request).get(f"/api/v1/registrations/{registration_id}")).body
    convention_id = uuid.UUID(str(found["convention_id"]))
    if not who.staff_of(convention_id):
        raise HTTPException(
            status_code=403, detail="This needs the admin role, or staff of its convention."
        )
    convention = await convention_of(request, who, convention_id)
    history = await api(request).get(f"/api/v1/admin/registrations/{registration_id}/history")
    events = [
        {**event, "payload_text": json.dumps(event["payload"], indent=2, ensure_ascii=False)}
        for event in (history.item("events", []) if history.ok else [])
    ]
    return await render(
        request,
        "admin/registration.html",
        convention=convention,
        registration=found,
        events=events,
        history_error="" if history.ok else history.message,
    )


# --- accounts and roles ----------------------------------------------------------------------


@get("/accounts", name="admin-accounts")
async def accounts(request: Request[Any, Any, Any]) -> Page:
    await admin_viewer(request)
    email = str(request.query_params.get("email", "")).strip()
    errors: dict[str, str] = {}
    status = 200
    if email:
        answer = await api(request).get("/api/v1/admin/accounts", email=email)
        if answer.ok:
            return redirect(request, f"/admin/accounts/{answer.item('account_id')}")
        status = refused_status(answer)
        errors = {
            "email": "No account has this e-mail address."
            if answer.status == 404
            else answer.message
        }
    return await render(
        request, "admin/accounts.html", status=status, values={"email": email}, errors=errors
    )


@get("/accounts/{account_id:uuid}", name="admin-account")
async def account(request: Request[Any, Any, Any], account_id: uuid.UUID) -> Template:
    await admin_viewer(request)
    return await _account_page(request, account_id, {}, {}, "")


async def _account_page(
    request: Request[Any, Any, Any],
    account_id: uuid.UUID,
    values: Values,
    errors: dict[str, str],
    message: str,
    status: int = 200,
) -> Template:
    found = ensure(await api(request).get(f"/api/v1/admin/accounts/{account_id}")).body
    conventions = await every_convention(request)
    names = {str(c["convention_id"]): c["name"] for c in conventions}
    return await render(
        request,
        "admin/account.html",
        status=status,
        account=found,
        names=names,
        roles=ROLES,
        convention_choices=[("", "No convention (admin, analyst)")]
        + [(str(c["convention_id"]), c["name"]) for c in conventions],
        values=values,
        errors=errors,
        message=message,
        notice=notice_of(request),
    )


@post("/accounts/{account_id:uuid}/roles", name="admin-role-grant")
async def grant_role(request: Request[Any, Any, Any], account_id: uuid.UUID) -> Page:
    return await _change_role(request, account_id, "")


@post("/accounts/{account_id:uuid}/roles/revoke", name="admin-role-revoke")
async def revoke_role(request: Request[Any, Any, Any], account_id: uuid.UUID) -> Page:
    return await _change_role(request, account_id, "/revoke")


async def _change_role(request: Request[Any, Any, Any], account_id: uuid.UUID, suffix: str) -> Page:
    await admin_viewer(request)
    form, client = await posted(request)
    body = compact({"role": text(form, "role"), "convention_id": text(form, "convention_id")})
    answer = await client.post(f"/api/v1/admin/accounts/{account_id}/roles{suffix}", body)
    if answer.ok:
        return redirect(
            request, f"/admin/accounts/{account_id}?done={'revoked' if suffix else 'granted'}"
        )
    errors, message = form_errors(answer, ("role", "convention_id"))
    return await _account_page(
        request, account_id, values_of(form), errors, message, refused_status(answer)
    )


# --- dead letters ----------------------------------------------------------------------------


@get("/dead-letters", name="admin-dead-letters")
async def dead_letters(request: Request[Any, Any, Any]) -> Template:
    await admin_viewer(request)
    return await _dead_letters_page(request, "")


async def _dead_letters_page(
    request: Request[Any, Any, Any], message: str, status: int = 200
) -> Template:
    answer = ensure(await api(request).get("/api/v1/admin/dead-letters", limit=LIST_LIMIT))
    return await render(
        request,
        "admin/dead_letters.html",
        status=status,
        items=answer.item("items", []),
        total=answer.item("total", 0),
        topic=answer.item("topic", ""),
        message=message,
        notice=notice_of(request),
    )


@post("/dead-letters/{dead_letter_id:str}/retry", name="admin-dead-letter-retry")
async def retry_dead_letter(request: Request[Any, Any, Any], dead_letter_id: str) -> Page:
    await admin_viewer(request)
    _, client = await posted(request)
    answer = await client.post(f"/api/v1/admin/dead-letters/{quote(dead_letter_id)}/retry")
    if answer.ok:
        return redirect(request, "/admin/dead-letters?done=retried")
    return await _dead_letters_page(request, answer.message, refused_status(answer))


admin_router = Router(
    path="/admin",
    route_handlers=[
        home,
        bootstrap_form,
        bootstrap,
        new_convention_form,
        create_convention,
        overview,
        confirm_open,
        confirm_close,
        open_convention,
        close_convention,
        catalogue,
        set_policy,
        badge_type_page,
        set_quota,
        set_tiers,
        new_option_form,
        create_option,
        option_form,
        change_option,
        new_promo_form,
        create_promo,
        registrations,
        registration,
        accounts,
        account,
        grant_role,
        revoke_role,
        dead_letters,
        retry_dead_letter,
    ],
    exception_handlers={**PAGE_EXCEPTION_HANDLERS, LoginNeeded: _to_login},
    include_in_schema=False,
)
