"""Who is calling, without Redis: the CSRF decision, the bearer header, `identify` over a
fake session store, and the cookies a new session is handed out in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from http.cookies import Morsel, SimpleCookie
from typing import Any

import pytest
from litestar import Request, Response
from litestar.testing import RequestFactory

from gateway.auth import (
    ANONYMOUS,
    CSRF_COOKIE,
    CSRF_FAILED,
    CSRF_HEADER,
    SESSION_COOKIE,
    Caller,
    Via,
    bearer_token,
    clear_session_cookies,
    csrf_allows,
    identify,
    set_session_cookies,
)
from gateway.problems import Problem
from gateway.sessions import NewSession, Session, SessionStore

IDLE_SECONDS = 3600.0


def new_session() -> NewSession:
    return NewSession(
        token="session-token",
        csrf_token="csrf-token",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        idle_seconds=IDLE_SECONDS,
    )


def cookies_set(response: Response[object]) -> dict[str, Morsel[str]]:
    """Each cookie the response sets, parsed back from the Set-Cookie header a browser gets."""
    jar: SimpleCookie = SimpleCookie()
    for cookie in response.cookies:
        _name, header = cookie.to_encoded_header()
        jar.load(header.decode())
    return dict(jar)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_a_cookie_write_needs_the_sessions_csrf_token(method: str) -> None:
    assert csrf_allows(method, "cookie", "csrf-token", "csrf-token")
    assert not csrf_allows(method, "cookie", None, "csrf-token")
    assert not csrf_allows(method, "cookie", "", "csrf-token")
    assert not csrf_allows(method, "cookie", "other-token", "csrf-token")
    assert not csrf_allows(method, "cookie", "csrf-token", "")


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_cookie_read_needs_no_csrf_token(method: str) -> None:
    assert csrf_allows(method, "cookie", None, "csrf-token")


@pytest.mark.parametrize("via", ["bearer", "admin_token", "anonymous"])
def test_callers_a_browser_cannot_impersonate_need_no_csrf_token(via: Via) -> None:
    assert csrf_allows("POST", via, None, None)


def test_a_bearer_header_gives_its_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    assert bearer_token(None) is None


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "abc"])
def test_an_authorization_header_we_cannot_use_is_a_401(header: str) -> None:
    with pytest.raises(Problem) as raised:
        bearer_token(header)

    assert raised.value.status_code == 401
    assert raised.value.headers is not None
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_session_cookie_is_out_of_scripts_reach_and_lives_as_long_as_the_session() -> None:
    response: Response[object] = Response(content=None)

    set_session_cookies(response, new_session(), secure=True)

    cookie = cookies_set(response)[SESSION_COOKIE]
    assert cookie.value == "session-token"
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(int(IDLE_SECONDS))
    assert cookie["secure"] is True


def test_the_csrf_cookie_is_readable_by_our_scripts() -> None:
    response: Response[object] = Response(content=None)

    set_session_cookies(response, new_session(), secure=False)

    cookie = cookies_set(response)[CSRF_COOKIE]
    assert cookie.value == "csrf-token"
    assert not cookie["httponly"]
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]


def test_clearing_expires_both_cookies() -> None:
    response: Response[object] = Response(content=None)

    clear_session_cookies(response)

    cookies = cookies_set(response)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        cookie = cookies[name]
        assert cookie.value == ""
        assert cookie["path"] == "/"
        assert cookie["max-age"] == "0"


class FakeSessionStore(SessionStore):
    """The real interface over a dict: `identify` only ever looks sessions up."""

    def __init__(self, sessions: dict[str, Session]) -> None:
        self.sessions = sessions

    async def get(self, token: str) -> Session | None:
        return self.sessions.get(token)


ACCOUNT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ADMIN_TOKEN = "admin-secret"
STORE = FakeSessionStore(
    {"session-token": Session(ACCOUNT, datetime(2025, 1, 1, tzinfo=UTC), "csrf-token")}
)


def request(
    method: str, headers: dict[str, str] | None = None, cookie: str | None = None
) -> Request[Any, Any, Any]:
    factory = RequestFactory()
    cookies = f"{SESSION_COOKIE}={cookie}" if cookie is not None else None
    if method == "GET":
        return factory.get("/api/v1/x", headers=headers, cookies=cookies)
    return factory.post("/api/v1/x", headers=headers, cookies=cookies)


async def test_the_admin_token_is_no_account() -> None:
    caller = await identify(
        request("POST", {"Authorization": f"Bearer {ADMIN_TOKEN}"}), STORE, ADMIN_TOKEN
    )

    assert caller == Caller(None, "admin_token", None, None)


async def test_a_session_token_as_bearer_needs_no_csrf_token() -> None:
    caller = await identify(
        request("POST", {"Authorization": "Bearer session-token"}), STORE, ADMIN_TOKEN
    )

    assert (caller.account_id, caller.via, caller.session_token) == (
        ACCOUNT,
        "bearer",
        "session-token",
    )


async def test_an_unknown_bearer_token_is_a_401_even_without_an_admin_token() -> None:
    with pytest.raises(Problem) as raised:
        await identify(request("GET", {"Authorization": "Bearer nope"}), STORE, "")

    assert raised.value.status_code == 401


async def test_the_session_cookie_identifies_a_read() -> None:
    caller = await identify(request("GET", cookie="session-token"), STORE, ADMIN_TOKEN)

    assert (caller.account_id, caller.via) == (ACCOUNT, "cookie")
    assert caller.signed_in


async def test_a_cookie_write_without_the_csrf_header_is_a_403() -> None:
    with pytest.raises(Problem) as raised:
        await identify(request("POST", cookie="session-token"), STORE, ADMIN_TOKEN)

    assert (raised.value.status_code, raised.value.kind) == (403, CSRF_FAILED)


async def test_a_cookie_write_with_the_csrf_header_goes_on() -> None:
    caller = await identify(
        request("POST", {CSRF_HEADER: "csrf-token"}, cookie="session-token"), STORE, ADMIN_TOKEN
    )

    assert caller.via == "cookie"


async def test_a_cookie_that_opens_no_session_is_anonymous_and_to_be_cleared() -> None:
    caller = await identify(request("POST", cookie="ended"), STORE, ADMIN_TOKEN)

    assert (caller.account_id, caller.via, caller.stale_cookie) == (None, "anonymous", True)


async def test_no_credentials_is_anonymous() -> None:
    caller = await identify(request("GET"), STORE, ADMIN_TOKEN)

    assert caller == ANONYMOUS
    assert not caller.signed_in
