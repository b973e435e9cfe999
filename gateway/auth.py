"""Who is calling: the admin token, a session token sent as a bearer token, a session cookie,
or nobody; and the CSRF check cookie clients pass on every write.

Browsers send cookies by themselves, even on requests another site starts, so a write made
with the session cookie must also carry the session's CSRF token in `X-CSRF-Token`, which
only a script of our own origin can read (from the CSRF cookie). Bearer and admin tokens are
never sent by a browser on its own, so they need no such proof.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from litestar import Response
from litestar.connection import ASGIConnection

from gateway.problems import Problem
from gateway.sessions import NewSession, SessionStore

SESSION_COOKIE = "butterfly_session"
CSRF_COOKIE = "butterfly_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FAILED = "csrf-failed"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Via = Literal["cookie", "bearer", "admin_token", "anonymous"]


@dataclass(frozen=True)
class Caller:
    account_id: uuid.UUID | None
    via: Via
    session_token: str | None
    session_created_at: datetime | None
    stale_cookie: bool = False
    """The request carried a session cookie that opens no session (ended or expired): the
    answer should clear it (`clear_session_cookies`)."""

    @property
    def signed_in(self) -> bool:
        return self.account_id is not None


ANONYMOUS = Caller(None, "anonymous", None, None)


def _same(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


def csrf_allows(method: str, via: Via, sent: str | None, expected: str | None) -> bool:
    """True if the request may go on: anything but a cookie-authenticated write passes; such
    a write needs `sent` (the header) equal to the session's token `expected`."""
    if via != "cookie" or method.upper() not in UNSAFE_METHODS:
        return True
    if not sent or not expected:
        return False
    return _same(sent, expected)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without the header.
    Any other scheme, or a bearer header with no token, is refused with a 401."""
    if authorization is None:
        return None
    scheme, _space, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Send Authorization: Bearer <token>.")
    return token


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Not signed in",
        detail,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _csrf_failed() -> Problem:
    return Problem(
        403,
        CSRF_FAILED,
        "CSRF check failed",
        f"A write made with the session cookie must send the {CSRF_COOKIE} cookie's value "
        "in the X-CSRF-Token header.",
    )


async def identify(
    connection: ASGIConnection[Any, Any, Any, Any], store: SessionStore, admin_token: str
) -> Caller:
    """The caller of this request. A bearer token is the admin token or a session token,
    and an unknown one is a 401 (the client said who it is and is wrong). Otherwise the
    session cookie; one that opens no session makes the caller anonymous with
    `stale_cookie` set. A cookie-authenticated write without the right CSRF token is a 403."""
    token = bearer_token(connection.headers.get("authorization"))
    if token is not None:
        return await _by_bearer(token, store, admin_token)
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        return ANONYMOUS
    session = await store.get(cookie)
    if session is None:
        return Caller(None, "anonymous", None, None, stale_cookie=True)
    method = str(connection.scope.get("method", "GET"))
    if not csrf_allows(method, "cookie", connection.headers.get(CSRF_HEADER), session.csrf_token):
        raise _csrf_failed()
    return Caller(session.account_id, "cookie", cookie, session.created_at)


async def _by_bearer(token: str, store: SessionStore, admin_token: str) -> Caller:
    if admin_token and _same(token, admin_token):
        return Caller(None, "admin_token", None, None)
    session = await store.get(token)
    if session is None:
        raise _unauthorized("The token opens no session: it was never issued, or it ended.")
    return Caller(session.account_id, "bearer", token, session.created_at)


def set_session_cookies(response: Response[Any], new: NewSession, *, secure: bool) -> None:
    """Hand a new session to a browser: the session cookie out of scripts' reach, the CSRF
    cookie readable by our scripts so they can echo it in `X-CSRF-Token`. SameSite=Lax keeps
    both off cross-site writes too."""
    max_age = max(int(new.idle_seconds), 1)
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE,
        new.csrf_token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="lax",
    )


def clear_session_cookies(response: Response[Any]) -> None:
    """Tell the browser to forget both cookies (logout, or a session that has ended)."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
