"""Accounts: logging in and out, signing up, confirming the e-mail address, resetting a password."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from gateway.web.pages import (
    api,
    form_of,
    keep_cookies,
    redirect,
    text,
    viewer,
)
from gateway.web.site.common import (
    ACCOUNT_LABELS,
    NOT_A_CODE,
    TOKEN_LABELS,
    Page,
    done,
    outright,
    page,
    placed,
    refused_status,
    safe_next,
)


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
