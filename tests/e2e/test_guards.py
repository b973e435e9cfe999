"""Every guard, tested: for each admin and staff route and method, each caller that must not
pass is refused, and each caller that may pass is let through; the owner-guarded
registration, ticket and room-request routes answer 404 to anyone but the owner, staff of
the convention and admins; the account routes want a login; a write made with the session
cookie wants its CSRF token.

The admin and staff routes are the app's own: its OpenAPI document lists every path under
`/api/v1/admin/` and `/api/v1/staff/` (check-in at the door) with each of its methods.
Test ids must exist before any stack runs, so the matrix is built at collection from the
OpenAPI document of `create_app` (the same code the stack serves), and
`test_the_matrix_is_every_admin_route_the_stack_serves` fetches `/schema/openapi.json` from
the running stack and fails if the two differ, or if the app routes anything under those
prefixes that its OpenAPI document leaves out. A new admin or staff route therefore gets its
rows in the matrix by itself, or fails that test.

Callers: anonymous, a wrong bearer token, an attendee (no roles), an analyst, staff of
convention C, an admin account, the admin token, an admin account's ended session, and an
account whose admin role was revoked. Expectations:

- anonymous, wrong bearer token, ended session: 401 on every admin route;
- attendee, revoked admin: 403 on every admin route; analyst: 403 on every admin route but
  the reports (`/reports/` in the path) and the check-in summary, which analysts read for
  every convention;
- staff of C: 403 on every admin route that names no convention, and on every route naming
  convention D; on routes naming C the guard lets them through (anything but 401/403, and
  never a 5xx: the handler answers for the content). A route naming a registration
  (`registration_id`, the history) names its convention: it is tried with a registration in C
  and one in D, like the routes naming C and D;
- admin account, admin token: never 401/403, never 5xx.

Order of checks: `convention_guard` (conventions, registrations, lodging) runs before
Litestar parses the query and the body, but the admin account routes check the caller in
the handler, after Litestar has validated the query (`email`) and the body (`RoleBody`). So
every matrix request carries a valid body and the required query parameters (below); with
those, a refusal must be exactly 401 or 403. The refused-caller-with-a-bad-request test sends
the same requests without body and query: the answer must still be a 4xx (it is a 400
`validation-error` on the admin account routes, 401/403 everywhere else).

The owner-guarded routes use a convention E of their own (with its own staff member), out of
reach of the matrix, which closes C and D. A registration made logged in belongs to the
account only when it is for the account's own e-mail, and an e-mail registers once per
convention, so the registration the DELETE cases cancel belongs to a second owner.

Path parameters: `convention_id` is C or D (real conventions made here), `registration_id` a
guest registration in C or D; every other id is a random uuid (an unknown sync,
reconciliation, room request or account; a malformed dead-letter id, a 400 for admins):
guards run before the handler looks anything up, and an admin's write on a random account id
is a 404, never a grant.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar

from gateway.app import create_app
from gateway.deps import Gateway
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import (
    bearer,
    fresh_email,
    problem_type,
    session_token,
    verified_account,
)
from tests.e2e.test_registration_http import create_open_convention
from tests.support import eventually

pytestmark = pytest.mark.e2e

ADMIN_PREFIX = "/api/v1/admin/"
GUARDED_PREFIXES = (ADMIN_PREFIX, "/api/v1/staff/")
"""The routes of the matrix: administration, and the staff's check-in at the door."""
METHODS = ("get", "post", "put", "patch", "delete")
CONVENTION = "convention_id"
REGISTRATION = "registration_id"
CSRF_HEADER = "X-CSRF-Token"

NEW_CONVENTION = {
    "name": "Guard Con",
    "starts_on": "2027-06-01",
    "ends_on": "2027-06-03",
    "badge_types": [{"code": "STD", "name": "Standard", "price_cents": 0, "quota": 10}],
}
BODIES: dict[str, dict[str, Any]] = {
    "NewConvention": NEW_CONVENTION,
    "LotteryRun": {"seed": 7},
    "RoleBody": {"role": "analyst"},
    "CheckInBody": {"token": "not-a-ticket", "station": "guard-gate"},
    "CheckInSync": {"scans": []},
}
"""A valid body per request schema (by its OpenAPI component name); any other is `{}`."""
QUERY_VALUES: dict[str, str] = {"email": "nobody.at.all@example.org"}
"""A valid value per required query parameter; any other gets one by its schema type."""
ROOM = {
    "hotels": ["GUARDINN"],
    "room_type": "KING",
    "check_in": "2027-06-01",
    "check_out": "2027-06-03",
    "guests": ["Ada Lovelace"],
}


# --- the matrix, from the app's OpenAPI document ------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """As OpenAPI spells it: `/api/v1/admin/conventions/{convention_id}/open`."""
    path_params: tuple[str, ...]
    query: tuple[tuple[str, str], ...]
    """The required query parameters, with a valid value each."""
    body: dict[str, Any] | None

    @property
    def names_convention(self) -> bool:
        """Names C or D: itself, or by a registration in it."""
        return CONVENTION in self.path_params or REGISTRATION in self.path_params


def _query_value(name: str, schema: dict[str, Any]) -> str:
    if name in QUERY_VALUES:
        return QUERY_VALUES[name]
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if "enum" in schema:
        return str(schema["enum"][0])
    return {"integer": "1", "number": "1", "boolean": "true"}.get(str(schema.get("type")), "x")


def _body(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return None
    ref = str(content.get("application/json", {}).get("schema", {}).get("$ref", ""))
    return BODIES.get(ref.rsplit("/", 1)[-1], {})


def admin_operations(openapi: dict[str, Any]) -> list[Operation]:
    """Every (method, path) under /api/v1/admin/ and /api/v1/staff/ in an OpenAPI document."""
    found = []
    for path, item in sorted(openapi["paths"].items()):
        if not path.startswith(GUARDED_PREFIXES):
            continue
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            params = [*item.get("parameters", []), *operation.get("parameters", [])]
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                    query=tuple(
                        (p["name"], _query_value(p["name"], p.get("schema", {})))
                        for p in params
                        if p["in"] == "query" and p.get("required")
                    ),
                    body=_body(operation),
                )
            )
    return found


@functools.cache
def _app() -> Litestar:
    """The app the stack serves, built here only to be read: building it touches no gateway
    (the handlers get it at run time). Litestar's deprecation warnings about the handlers'
    signatures are the gateway's business, not this test's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = create_app(cast(Gateway, None))
        app.openapi_schema  # noqa: B018 (built now, under the filter)
    return app


def _app_openapi() -> dict[str, Any]:
    return dict(_app().openapi_schema.to_schema())


def _app_admin_routes() -> set[tuple[str, str]]:
    """What the app routes under /api/v1/admin/ and /api/v1/staff/, in the schema or not,
    with OpenAPI's path spelling (`{name}` without the `:type`)."""
    routes = set()
    for route in _app().routes:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        if not path.startswith(GUARDED_PREFIXES):
            continue
        for method in getattr(route, "methods", ()):
            if method.lower() in METHODS:
                routes.add((method.upper(), path))
    return routes


OPERATIONS = admin_operations(_app_openapi())

ANONYMOUS = "anonymous"
WRONG_BEARER = "wrong-bearer"
ENDED_SESSION = "ended-admin-session"
ATTENDEE = "attendee"
ANALYST = "analyst"
REVOKED_ADMIN = "revoked-admin"
STAFF = "staff-of-C"
ADMIN_ACCOUNT = "admin-account"
ADMIN_TOKEN = "admin-token"
CALLERS = (
    ANONYMOUS,
    WRONG_BEARER,
    ENDED_SESSION,
    ATTENDEE,
    ANALYST,
    REVOKED_ADMIN,
    STAFF,
    ADMIN_ACCOUNT,
    ADMIN_TOKEN,
)
PASS = 0
"""The expectation of a caller the guard must let through: not 401/403, not 5xx."""


def expected(caller: str, operation: Operation, target: str | None) -> int:
    if caller in (ANONYMOUS, WRONG_BEARER, ENDED_SESSION):
        return 401
    if caller == ANALYST and (
        "/reports/" in operation.path or operation.path.endswith("/check-ins/summary")
    ):
        return PASS
    if caller in (ATTENDEE, ANALYST, REVOKED_ADMIN):
        return 403
    if caller == STAFF:
        return PASS if operation.names_convention and target == "C" else 403
    return PASS


KNOWN_LEAKS: dict[tuple[str, str, str | None, str], str] = {}
"""(method, path, target, caller) the product lets through although it must not: each is an
xfail (strict) with the reason. None known."""


def _matrix() -> Iterator[Any]:
    for operation in OPERATIONS:
        targets: tuple[str | None, ...] = ("C", "D") if operation.names_convention else (None,)
        for target in targets:
            shown = operation.path.replace("{convention_id}", target or "").replace(
                "{registration_id}", f"in-{target}"
            )
            for caller in CALLERS:
                leak = KNOWN_LEAKS.get((operation.method, operation.path, target, caller))
                marks = [pytest.mark.xfail(reason=leak, strict=True)] if leak else []
                yield pytest.param(
                    operation,
                    target,
                    caller,
                    expected(caller, operation, target),
                    id=f"{caller}-{operation.method}-{shown}",
                    marks=marks,
                )


# --- the callers and what they call -----------------------------------------------------------


@dataclass
class World:
    c: str
    """A convention the staff member is staff of."""
    d: str
    """A convention they are not staff of."""
    e: str
    """The owner's convention (its own staff member), kept away from the matrix's writes:
    the matrix closes C and D."""
    in_c: str
    """A guest registration in C, for the routes naming a registration."""
    in_d: str
    """A guest registration in D."""
    headers: dict[str, dict[str, str]]
    """Each matrix caller's headers."""
    owner: dict[str, str]
    second_owner: dict[str, str]
    """Owner of `cancellable`: a registration made logged in is the account's only when it
    is for the account's own e-mail, and an e-mail registers once per convention."""
    stranger: dict[str, str]
    """Another account, no roles."""
    staff_of_e: dict[str, str]
    registration: str
    """The owner's registration in E (never cancelled here)."""
    cancellable: str
    """The second owner's registration in E, for the DELETE cases."""
    room_request: str
    """The owner's room request, for `registration`."""
    cookie_user: tuple[str, str]
    """A plain account's cookie session: (session token, CSRF token)."""
    cookie_admin: tuple[str, str]
    """An admin account's cookie session."""
    cookie_user_registration: str


async def _grant(stack: Stack, account_id: str, role: str, convention_id: str | None) -> None:
    body: dict[str, Any] = {"role": role}
    if convention_id is not None:
        body["convention_id"] = convention_id
    async with stack.client() as client:
        granted = await client.post(
            f"/api/v1/admin/accounts/{account_id}/roles", headers=stack.admin, json=body
        )
    assert granted.status_code == 200, granted.text
    assert {"role": role, "convention_id": convention_id} in granted.json()["roles"]


async def _account(
    stack: Stack, tag: str, role: str | None = None, convention_id: str | None = None
) -> tuple[str, str, str]:
    """A verified account, with `role` if any, and a session: (account id, e-mail, token)."""
    email = fresh_email(tag)
    account_id = await verified_account(stack, email)
    if role is not None:
        await _grant(stack, account_id, role, convention_id)
    return account_id, email, await session_token(stack, email)


async def _cookie_session(stack: Stack, email: str) -> tuple[str, str]:
    async with stack.client() as client:
        answer = await client.post(
            "/api/v1/sessions", json={"email": email, "password": "correct horse battery"}
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"]), str(answer.json()["csrf_token"])


async def _register(stack: Stack, convention_id: str, token: str, email: str) -> str:
    async with stack.client() as client:
        made = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers=bearer(token),
            json={"email": email, "name": "Ada Lovelace", "badge_type": "STD"},
        )
    assert made.status_code == 201, made.text
    assert made.json()["account_id"] is not None, made.text
    return str(made.json()["registration_id"])


async def _guest_registration(stack: Stack, convention_id: str) -> str:
    async with stack.client() as client:
        made = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": fresh_email("guest"), "name": "Ada Lovelace", "badge_type": "STD"},
        )
    assert made.status_code == 201, made.text
    return str(made.json()["registration_id"])


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    c, d, e = await asyncio.gather(*(create_open_convention(stack, 50) for _ in range(3)))
    (
        (_, _, attendee),
        (_, _, analyst),
        (_, _, staff),
        (_, admin_email, admin),
        (revoked_id, _, revoked),
        (_, owner_email, owner),
        (_, _, stranger),
        (_, _, staff_of_e),
        (_, cookie_email, cookie_token),
        (_, second_owner_email, second_owner),
    ) = await asyncio.gather(
        _account(stack, "attendee"),
        _account(stack, "analyst", "analyst"),
        _account(stack, "staff", "staff", c),
        _account(stack, "admin", "admin"),
        _account(stack, "revoked", "admin"),
        _account(stack, "owner"),
        _account(stack, "stranger"),
        _account(stack, "staff-e", "staff", e),
        _account(stack, "cookie"),
        _account(stack, "second-owner"),
    )
    async with stack.client() as client:
        taken = await client.post(
            f"/api/v1/admin/accounts/{revoked_id}/roles/revoke",
            headers=stack.admin,
            json={"role": "admin"},
        )
        assert taken.status_code == 200, taken.text
        assert taken.json()["roles"] == []
        ended = await session_token(stack, admin_email)
        out = await client.delete("/api/v1/sessions/current", headers=bearer(ended))
        assert out.status_code == 200, out.text

    registration, cancellable, cookie_user_registration, in_c, in_d = await asyncio.gather(
        _register(stack, e, owner, owner_email),
        _register(stack, e, second_owner, second_owner_email),
        _register(stack, e, cookie_token, cookie_email),
        _guest_registration(stack, c),
        _guest_registration(stack, d),
    )
    async with stack.client() as client:
        asked = await client.post(
            f"/api/v1/registrations/{registration}/lodging", headers=bearer(owner), json=ROOM
        )
        assert asked.status_code == 202, asked.text
        room_request = str(asked.json()["request_id"])

        async def owner_sees_room() -> int:
            answer = await client.get(f"/api/v1/lodging/{room_request}", headers=bearer(owner))
            return answer.status_code

        await eventually(owner_sees_room, lambda s: s == 200, what="the owner's room request")

    return World(
        c=c,
        d=d,
        e=e,
        in_c=in_c,
        in_d=in_d,
        headers={
            ANONYMOUS: {},
            WRONG_BEARER: bearer(f"not-a-session-{uuid.uuid4().hex}"),
            ENDED_SESSION: bearer(ended),
            ATTENDEE: bearer(attendee),
            ANALYST: bearer(analyst),
            REVOKED_ADMIN: bearer(revoked),
            STAFF: bearer(staff),
            ADMIN_ACCOUNT: bearer(admin),
            ADMIN_TOKEN: stack.admin,
        },
        owner=bearer(owner),
        second_owner=bearer(second_owner),
        stranger=bearer(stranger),
        staff_of_e=bearer(staff_of_e),
        registration=registration,
        cancellable=cancellable,
        room_request=room_request,
        cookie_user=await _cookie_session(stack, cookie_email),
        cookie_admin=await _cookie_session(stack, admin_email),
        cookie_user_registration=cookie_user_registration,
    )


@pytest.fixture(scope="module")
async def live_openapi(stack: Stack) -> dict[str, Any]:
    async with stack.client() as client:
        answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """One client for the module; it keeps no cookies (every caller says who it is)."""
    async with stack.client() as shared:
        yield shared


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    json: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> httpx.Response:
    """A request that sends exactly `headers` and `cookies`, none from an earlier answer."""
    client.cookies.clear()
    if cookies:
        headers = {**headers, "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    return await client.request(method, url, headers=headers, json=json, params=params)


def fill(operation: Operation, world: World, target: str | None) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == CONVENTION:
            return world.c if target == "C" else world.d
        if name == REGISTRATION:
            return world.in_c if target == "C" else world.in_d
        return str(uuid.uuid4())

    return re.sub(r"\{(\w+)\}", value, operation.path)


def describe(answer: httpx.Response) -> str:
    return f"{answer.request.method} {answer.request.url} -> {answer.status_code}: {answer.text}"


# --- 1. the admin routes ------------------------------------------------------------------


async def test_the_matrix_is_every_admin_route_the_stack_serves(
    live_openapi: dict[str, Any],
) -> None:
    live = {(o.method, o.path) for o in admin_operations(live_openapi)}
    matrix = {(o.method, o.path) for o in OPERATIONS}
    assert live, "the stack's OpenAPI document lists no admin route"
    assert live == matrix, {"served, not in the matrix": live - matrix, "gone": matrix - live}
    hidden = _app_admin_routes() - live
    assert not hidden, f"admin routes missing from the OpenAPI document: {hidden}"


@pytest.mark.parametrize(("operation", "target", "caller", "expect"), list(_matrix()))
async def test_admin_route_guard(
    client: httpx.AsyncClient,
    world: World,
    live_openapi: dict[str, Any],
    operation: Operation,
    target: str | None,
    caller: str,
    expect: int,
) -> None:
    assert (operation.method, operation.path) in {
        (o.method, o.path) for o in admin_operations(live_openapi)
    }
    answer = await call(
        client,
        operation.method,
        fill(operation, world, target),
        world.headers[caller],
        json=operation.body,
        params=dict(operation.query),
    )
    if expect == PASS:
        assert answer.status_code not in (401, 403), describe(answer)
        assert answer.status_code < 500, describe(answer)
    else:
        assert answer.status_code == expect, describe(answer)
        assert problem_type(answer) == ("unauthorized" if expect == 401 else "forbidden")


REFUSED_WITH_INPUT = [
    pytest.param(operation, caller, id=f"{caller}-{operation.method}-{operation.path}")
    for operation in OPERATIONS
    if operation.body is not None or operation.query
    for caller in (ANONYMOUS, ATTENDEE)
]


@pytest.mark.parametrize(("operation", "caller"), REFUSED_WITH_INPUT)
async def test_a_refused_caller_with_a_bad_request_gets_no_2xx(
    client: httpx.AsyncClient, world: World, operation: Operation, caller: str
) -> None:
    """Without its body and required query: where the product validates before it checks
    the caller (the admin account routes) the answer is a 400, never a 2xx nor a 5xx."""
    answer = await call(
        client, operation.method, fill(operation, world, "C"), world.headers[caller]
    )
    assert 400 <= answer.status_code < 500, describe(answer)


# --- 2. routes an owner holds -------------------------------------------------------------

OWNER = "owner"
STRANGER = "another-account"
STAFF_OF_E = "staff-of-the-convention"
OTHER_STAFF = "staff-of-another-convention"
OWNER_CALLERS = (
    (ANONYMOUS, 404),
    (STRANGER, 404),
    (ANALYST, 404),
    (OTHER_STAFF, 404),
    (STAFF_OF_E, 200),
    (ADMIN_ACCOUNT, 200),
    (ADMIN_TOKEN, 200),
    (OWNER, 200),
)
"""Refusals first: a DELETE wrongly let through would only cancel the registration, which the
later DELETEs answer 200 all the same."""
OWNED_ROUTES = (
    ("GET", "/api/v1/registrations/{registration}"),
    ("GET", "/api/v1/registrations/{registration}/ticket"),
    ("GET", "/api/v1/registrations/{registration}/ticket.svg"),
    ("GET", "/api/v1/registrations/{registration}/ticket.pdf"),
    ("DELETE", "/api/v1/registrations/{cancellable}"),
    ("GET", "/api/v1/lodging/{room_request}"),
    ("GET", "/api/v1/registrations/{registration}/lodging"),
)


def owner_headers(world: World, caller: str, path: str) -> dict[str, str]:
    return {
        OWNER: world.second_owner if "{cancellable}" in path else world.owner,
        STRANGER: world.stranger,
        STAFF_OF_E: world.staff_of_e,
        OTHER_STAFF: world.headers[STAFF],
    }.get(caller) or world.headers[caller]


@pytest.mark.parametrize(
    ("method", "path", "caller", "expect"),
    [
        pytest.param(method, path, caller, expect, id=f"{caller}-{method}-{path}")
        for method, path in OWNED_ROUTES
        for caller, expect in OWNER_CALLERS
    ],
)
async def test_owned_route_guard(
    client: httpx.AsyncClient, world: World, method: str, path: str, caller: str, expect: int
) -> None:
    url = path.format(
        registration=world.registration,
        cancellable=world.cancellable,
        room_request=world.room_request,
    )
    answer = await call(client, method, url, owner_headers(world, caller, path))
    assert answer.status_code == expect, describe(answer)
    if expect == 404:
        assert problem_type(answer).endswith("not-found"), describe(answer)


# --- 3. routes that want a login ----------------------------------------------------------

LOGIN_ROUTES = (
    ("GET", "/api/v1/me", None),
    ("GET", "/api/v1/me/registrations", None),
    ("DELETE", "/api/v1/sessions/current", None),
    ("DELETE", "/api/v1/sessions", None),
    (
        "POST",
        "/api/v1/me/password",
        {"current_password": "correct horse battery", "new_password": "another good password"},
    ),
    ("POST", "/api/v1/accounts/verify/resend", None),
)


@pytest.mark.parametrize(
    ("method", "path", "body", "caller"),
    [
        pytest.param(method, path, body, caller, id=f"{caller}-{method}-{path}")
        for method, path, body in LOGIN_ROUTES
        for caller in (ANONYMOUS, WRONG_BEARER, ENDED_SESSION)
    ],
)
async def test_account_routes_want_a_login(
    client: httpx.AsyncClient,
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    caller: str,
) -> None:
    answer = await call(client, method, path, world.headers[caller], json=body)
    assert answer.status_code == 401, describe(answer)


# --- 4. writes made with the session cookie want the CSRF token ------------------------------

CSRF_WRITES = (
    ("user", "DELETE", "/api/v1/sessions/current", None),
    ("user", "DELETE", "/api/v1/sessions", None),
    (
        "user",
        "POST",
        "/api/v1/me/password",
        {"current_password": "not the password", "new_password": "another good password"},
    ),
    ("user", "POST", "/api/v1/accounts/verify/resend", None),
    ("user", "DELETE", "/api/v1/registrations/{registration}", None),
    ("user", "POST", "/api/v1/registrations/{registration}/lodging", ROOM),
    (
        "user",
        "POST",
        "/api/v1/conventions/{e}/registrations",
        {"email": "cookie.second@example.org", "name": "Ada", "badge_type": "STD"},
    ),
    ("admin", "POST", "/api/v1/admin/conventions", NEW_CONVENTION),
    ("admin", "POST", "/api/v1/admin/conventions/{d}/close", None),
    ("admin", "POST", "/api/v1/admin/accounts/{random}/roles", {"role": "analyst"}),
)


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "sent"),
    [
        pytest.param(who, method, path, body, sent, id=f"{who}-{method}-{path}-{label}")
        for who, method, path, body in CSRF_WRITES
        for label, sent in (("no-header", None), ("wrong-header", "wrong"))
    ],
)
async def test_a_cookie_write_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient,
    world: World,
    who: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    sent: str | None,
) -> None:
    session, csrf = world.cookie_user if who == "user" else world.cookie_admin
    cookies = {"butterfly_session": session, "butterfly_csrf": csrf}
    url = path.format(
        registration=world.cookie_user_registration,
        e=world.e,
        d=world.d,
        random=uuid.uuid4(),
    )
    headers = {} if sent is None else {CSRF_HEADER: sent}
    answer = await call(client, method, url, headers, json=body, cookies=cookies)
    assert answer.status_code == 403, describe(answer)
    assert problem_type(answer) == "csrf-failed", describe(answer)

    still = await call(client, "GET", "/api/v1/me", {}, cookies=cookies)
    assert still.status_code == 200, f"the cookie session itself works: {describe(still)}"
