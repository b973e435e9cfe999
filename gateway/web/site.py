"""The website for attendees: conventions, accounts, registering, paying, lodging, waitlists.

Each handler reads its form, calls the JSON API (`gateway.web.api`) and either redirects to
the result (303) or renders the form again with the API's refusal next to its fields (422).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Router, get, post
from litestar.response import Redirect, Template

from gateway.web.pages import (
    PAGE_EXCEPTION_HANDLERS,
    api,
    form_of,
    keep_cookies,
    redirect,
    render,
    text,
)

Page = Template | Redirect


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


@get("/", name="home", sync_to_thread=False)
def home() -> Redirect:
    return Redirect(path="/conventions", status_code=303)


@get("/conventions", name="conventions")
async def conventions(request: Request[Any, Any, Any]) -> Template:
    answer = await api(request).get(
        "/api/v1/conventions", cursor=request.query_params.get("cursor")
    )
    if not answer.ok:
        return await render(
            request,
            "error.html",
            status=answer.status,
            title="Conventions unavailable",
            detail=answer.message,
            status_code=answer.status,
        )
    return await render(
        request,
        "site/conventions.html",
        conventions=answer.item("items", []),
        next_cursor=answer.item("next"),
    )


@get("/login", name="login")
async def login_form(request: Request[Any, Any, Any]) -> Template:
    return await render(
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
    return await render(
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


site_router = Router(
    path="/",
    route_handlers=[home, conventions, login_form, login, logout],
    exception_handlers=PAGE_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
