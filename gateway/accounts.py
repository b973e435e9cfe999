"""Accounts over HTTP: sign up, verify, log in and out, passwords, who am I, roles.

Account facts change only through account commands (decided by the account decider, keyed
by the e-mail identity); a write here publishes one and waits a few seconds for its outcome
in the accounts read model. Sessions are not facts: they live in Redis (`gateway.sessions`),
shared by every gateway, so a login on one gateway works on all and a logout on one ends it
on all. A session made before the account's last password change is over, whichever gateway
made it.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from gateway.account_desk import AccountDesk
from gateway.account_reads import AccountView
from gateway.account_reads import Outcome as AccountOutcome
from gateway.auth import (
    SESSION_COOKIE,
    Caller,
    clear_session_cookies,
    identify,
    set_session_cookies,
)
from gateway.credentials import MAX_PASSWORD, MIN_PASSWORD
from gateway.deps import Gateway, IdempotencyKey, command_id_for, correlation_id
from gateway.problems import Problem
from gateway.sessions import NewSession
from gateway.views import Body, RegistrationView
from projections.website import tables as website
from schemas.accounts import (
    AccountCommand,
    ChangePassword,
    GrantRole,
    RequestPasswordReset,
    ResendVerification,
    ResetPassword,
    RevokeRole,
    Role,
    SignUp,
    VerifyEmail,
    account_envelope,
)
from schemas.identity import email_key
from schemas.registration import Email, Text

Password = str
OUTCOME_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Principal:
    """The caller with what the read models say of them."""

    caller: Caller
    account: AccountView | None
    roles: frozenset[tuple[str, uuid.UUID | None]]

    @property
    def signed_in(self) -> bool:
        return self.account is not None

    @property
    def is_admin(self) -> bool:
        return self.caller.via == "admin_token" or (Role.ADMIN.value, None) in self.roles

    @property
    def is_analyst(self) -> bool:
        return self.is_admin or (Role.ANALYST.value, None) in self.roles

    def staff_of(self, convention_id: uuid.UUID) -> bool:
        return self.is_admin or (Role.STAFF.value, convention_id) in self.roles

    def owns(self, view: RegistrationView, guest_key: str | None) -> bool:
        """A registration made by this account, or a guest one of its verified e-mail."""
        if self.account is None:
            return False
        if view.account_id is not None:
            return view.account_id == self.account.account_id
        return self.account.verified and guest_key == self.account.email_key


ANONYMOUS_PRINCIPAL = Principal(Caller(None, "anonymous", None, None), None, frozenset())


def desk_of(gateway: Gateway) -> AccountDesk:
    if gateway.accounts is None:
        raise Problem(503, "unavailable", "Accounts unavailable", "Accounts are not set up here.")
    return gateway.accounts


async def principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Who is calling: anonymous, the admin token, or an account (with its roles). A
    session older than the account's last password change is over."""
    gateway: Gateway = connection.app.state.gateway
    if gateway.accounts is None:
        return ANONYMOUS_PRINCIPAL
    desk = gateway.accounts
    caller = await identify(connection, desk.sessions, gateway.admin_token)
    if caller.account_id is None:
        return Principal(caller, None, frozenset())
    account = await desk.reads.account(caller.account_id)
    if account is None or _ended(caller, account):
        if caller.session_token is not None:
            await desk.sessions.delete(caller.session_token)
        if caller.via == "bearer":
            raise _unauthorized("The session has ended: log in again.")
        return Principal(
            Caller(None, "anonymous", None, None, stale_cookie=True), None, frozenset()
        )
    roles = frozenset(
        (role, None if scope is None else scope)
        for role, scope in await desk.reads.roles(caller.account_id)
    )
    return Principal(caller, account, roles)


def _ended(caller: Caller, account: AccountView) -> bool:
    after = account.sessions_valid_after
    created = caller.session_created_at
    if after is None or created is None:
        return False
    created = created.astimezone(UTC).replace(tzinfo=None) if created.tzinfo else created
    return created <= after


def credentials_sent(request: Request[Any, Any, Any]) -> bool:
    """Whether the request says who it is: anonymous requests (the rush) skip the lookup."""
    return "authorization" in request.headers or SESSION_COOKIE in request.cookies


async def may_see(
    request: Request[Any, Any, Any], gateway: Gateway, view: RegistrationView
) -> bool:
    """A registration an account made is its own: another caller is told it does not
    exist (404, so ids leak nothing), unless staff of its convention or an admin. A guest
    registration stays reachable by its id, as before accounts, and is its verified
    e-mail's account's too."""
    if view.account_id is None:
        return True
    who = await caller_of(request)
    if who.staff_of(view.convention_id):
        return True
    return who.owns(view, await gateway.reads.owner_key(view.registration_id))


async def caller_of(request: Request[Any, Any, Any]) -> Principal:
    """The caller; a request that sends no credentials (the rush) is anonymous without a
    lookup."""
    return await principal(request) if credentials_sent(request) else ANONYMOUS_PRINCIPAL


async def signed_in(request: Request[Any, Any, Any]) -> Principal:
    who = await principal(request)
    if who.account is None:
        raise _unauthorized("Log in first: POST /api/v1/sessions.")
    return who


async def admin_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    who = await principal(connection)
    if not who.is_admin:
        raise refuse(who, "This needs the admin role.")
    return who


async def admin_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Admins only, checked before the request is parsed: a refused caller learns nothing
    from a validation error."""
    await admin_principal(connection)


def refuse(who: Principal, detail: str) -> Problem:
    """403 for a logged-in account without the power, 401 for anyone not logged in."""
    if who.signed_in:
        return Problem(403, "forbidden", "Not allowed", detail)
    return _unauthorized("Send the admin token, or log in with an account that may do this.")


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", "Not logged in", detail, headers={"WWW-Authenticate": "Bearer"}
    )


# --- bodies and answers ---------------------------------------------------------------------


class NewAccount(Body):
    email: Email
    password: Password = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)
    name: Text


class TokenBody(Body):
    token: str = Field(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")


class Login(Body):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class ResetRequest(Body):
    email: str = Field(min_length=1, max_length=254)


class NewPasswordByToken(TokenBody):
    password: Password = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class PasswordChange(Body):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: Password = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class RoleBody(Body):
    role: Role
    convention_id: uuid.UUID | None = Field(
        default=None, description="The convention of a staff grant; none for admin and analyst."
    )


class AccountAnswer(BaseModel):
    account_id: uuid.UUID
    email: str
    name: str
    verified: bool
    created_at: datetime
    roles: list[dict[str, Any]] = []


class SessionAnswer(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>` (API clients).")
    csrf_token: str = Field(description="Echo in `X-CSRF-Token` on writes made with the cookie.")
    account_id: uuid.UUID
    expires_in: int = Field(description="Seconds of idleness after which the session ends.")


def _account_answer(view: AccountView, roles: Any = ()) -> AccountAnswer:
    return AccountAnswer(
        account_id=view.account_id,
        email=view.email,
        name=view.name,
        verified=view.verified,
        created_at=view.created_at.replace(tzinfo=UTC),
        roles=[
            {"role": role, "convention_id": None if scope is None else str(scope)}
            for role, scope in sorted(roles, key=str)
        ],
    )


# --- publishing and waiting -----------------------------------------------------------------


async def _send(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    command: AccountCommand,
    command_id: uuid.UUID,
    key: str,
    actor: str,
) -> AccountOutcome | None:
    """Publish an account command and wait for its outcome (None if not decided in time)."""
    envelope = account_envelope(
        command,
        message_id=command_id,
        occurred_at=datetime.now(UTC),
        correlation_id=correlation_id(request),
        causation_id=None,
        email_key=key,
        actor=actor,
    )
    await gateway.publisher.publish(gateway.topics.account_commands, envelope)
    reads = desk_of(gateway).reads
    deadline = time.monotonic() + gateway.decision_wait_seconds
    delay = OUTCOME_POLL_SECONDS
    while time.monotonic() < deadline:
        outcome = await reads.outcome(command_id)
        if outcome is not None:
            return outcome
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    return None


def _pending(command_id: uuid.UUID) -> Response[Any]:
    return Response(
        {"status": "pending", "command_id": str(command_id)},
        status_code=HTTP_202_ACCEPTED,
    )


def _token(account_id: uuid.UUID) -> str:
    """A mailed code: it names its account (so it is routed to the account's partition)
    and 256 random bits."""
    return f"{account_id}.{secrets.token_urlsafe(32)}"


def _token_account(token: str) -> uuid.UUID | None:
    head, _, _ = token.partition(".")
    try:
        return uuid.UUID(head)
    except ValueError:
        return None


def _rejected(outcome: AccountOutcome) -> Problem:
    reason = outcome.reason or "rejected"
    status, title = {
        "email_taken": (409, "E-mail already has an account"),
        "invalid_token": (422, "Invalid or used code"),
        "token_expired": (422, "Code expired"),
        "already_verified": (409, "Already verified"),
        "scope_required": (422, "Staff needs a convention; admin and analyst none"),
        "unknown_account": (404, "Account not found"),
    }.get(reason, (422, "Refused"))
    return Problem(status, reason.replace("_", "-"), title, None, reason=reason)


def _invalid_token() -> Problem:
    return Problem(422, "invalid-token", "Invalid or used code", None, reason="invalid_token")


def _client_address(request: Request[Any, Any, Any]) -> str:
    client = request.client
    return client.host if client is not None else "unknown"


# --- routes ---------------------------------------------------------------------------------


class AccountController(Controller):
    tags = ["accounts"]

    @post(
        "/api/v1/accounts",
        operation_id="signUp",
        status_code=HTTP_201_CREATED,
        summary="Create an account",
        description="The e-mail gets a verification code (dev: a file in the mail folder). "
        "409 `email-taken` when the e-mail identity already has an account; 202 if not "
        "decided within a few seconds.",
    )
    async def sign_up(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        data: NewAccount,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        desk = desk_of(gateway)
        key = email_key(data.email)
        account_id = command_id_for(f"account:{key}", idempotency_key)
        made = await desk.reads.account(account_id)
        if made is not None:
            return Response(
                _account_answer(made),
                status_code=HTTP_201_CREATED,
                headers={"Location": "/api/v1/me"},
            )
        command = SignUp(
            account_id=account_id,
            email=data.email,
            name=data.name,
            password_hash=await desk.credentials.hash(data.password),
            verification_token=_token(account_id),
        )
        outcome = await _send(request, gateway, command, account_id, key, "anonymous")
        if outcome is None:
            return _pending(account_id)
        if outcome.rejected:
            raise _rejected(outcome)
        view = await desk.reads.account(account_id)
        if view is None:
            return _pending(account_id)
        return Response(
            _account_answer(view),
            status_code=HTTP_201_CREATED,
            headers={"Location": "/api/v1/me"},
        )

    @post(
        "/api/v1/accounts/verify",
        operation_id="verifyEmail",
        status_code=HTTP_200_OK,
        summary="Confirm the e-mail address with the mailed code",
    )
    async def verify(
        self, request: Request[Any, Any, Any], gateway: Gateway, data: TokenBody
    ) -> Response[Any]:
        desk = desk_of(gateway)
        account_id = _token_account(data.token)
        view = None if account_id is None else await desk.reads.account(account_id)
        if view is None:
            raise Problem(
                422, "invalid-token", "Invalid or used code", None, reason="invalid_token"
            )
        command_id = uuid.uuid4()
        command = VerifyEmail(account_id=view.account_id, token=data.token)
        outcome = await _send(request, gateway, command, command_id, view.email_key, "anonymous")
        if outcome is None:
            return _pending(command_id)
        if outcome.rejected and outcome.reason != "already_verified":
            raise _rejected(outcome)
        return Response({"account_id": str(view.account_id), "verified": True})

    @post(
        "/api/v1/accounts/verify/resend",
        operation_id="resendVerification",
        status_code=HTTP_202_ACCEPTED,
        summary="Mail a new verification code (the older ones stop working)",
    )
    async def resend(self, request: Request[Any, Any, Any], gateway: Gateway) -> Response[Any]:
        who = await signed_in(request)
        assert who.account is not None
        if who.account.verified:
            raise Problem(409, "already-verified", "Already verified", None)
        command_id = uuid.uuid4()
        command = ResendVerification(
            account_id=who.account.account_id, verification_token=_token(who.account.account_id)
        )
        await _send(request, gateway, command, command_id, who.account.email_key, "self")
        return Response({"status": "mailed"}, status_code=HTTP_202_ACCEPTED)

    @post(
        "/api/v1/accounts/password-reset",
        operation_id="requestPasswordReset",
        status_code=HTTP_202_ACCEPTED,
        summary="Mail a password reset code",
        description="Always 202, whether the e-mail has an account or not.",
    )
    async def request_reset(
        self, request: Request[Any, Any, Any], gateway: Gateway, data: ResetRequest
    ) -> Response[Any]:
        desk = desk_of(gateway)
        try:
            key = email_key(data.email)
        except ValueError:
            key = None
        view = None if key is None else await desk.reads.by_email_key(key)
        if view is not None:
            command = RequestPasswordReset(
                account_id=view.account_id, reset_token=_token(view.account_id)
            )
            envelope = account_envelope(
                command,
                message_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC),
                correlation_id=correlation_id(request),
                causation_id=None,
                email_key=view.email_key,
                actor="anonymous",
            )
            await gateway.publisher.publish(gateway.topics.account_commands, envelope)
        return Response(
            {"status": "if the address has an account, a code is on its way"},
            status_code=HTTP_202_ACCEPTED,
        )

    @post(
        "/api/v1/accounts/password-reset/confirm",
        operation_id="resetPassword",
        status_code=HTTP_200_OK,
        summary="Set a new password with the mailed code; every session ends",
    )
    async def reset(
        self, request: Request[Any, Any, Any], gateway: Gateway, data: NewPasswordByToken
    ) -> Response[Any]:
        desk = desk_of(gateway)
        account_id = _token_account(data.token)
        view = None if account_id is None else await desk.reads.account(account_id)
        if view is None:
            raise Problem(
                422, "invalid-token", "Invalid or used code", None, reason="invalid_token"
            )
        command_id = uuid.uuid4()
        command = ResetPassword(
            account_id=view.account_id,
            token=data.token,
            password_hash=await desk.credentials.hash(data.password),
        )
        outcome = await _send(request, gateway, command, command_id, view.email_key, "anonymous")
        if outcome is None:
            return _pending(command_id)
        if outcome.rejected:
            raise _rejected(outcome)
        await desk.sessions.delete_all(view.account_id)
        return Response({"account_id": str(view.account_id), "password": "changed"})

    @post(
        "/api/v1/sessions",
        operation_id="logIn",
        status_code=HTTP_201_CREATED,
        summary="Log in: a session cookie for browsers and a bearer token for API clients",
        description="401 `invalid-credentials` for a wrong password and an unknown e-mail "
        "alike; 429 with Retry-After after too many failures for the account or from the "
        "client address.",
    )
    async def log_in(
        self, request: Request[Any, Any, Any], gateway: Gateway, data: Login
    ) -> Response[Any]:
        desk = desk_of(gateway)
        try:
            key = email_key(data.email)
        except ValueError:
            key = f"invalid:{data.email.casefold()}"
        address = _client_address(request)
        wait = await desk.limiter.check(key, address)
        if wait is not None:
            raise Problem(
                429,
                "too-many-attempts",
                "Too many failed logins",
                "Wait before trying again.",
                headers={"Retry-After": str(max(math.ceil(wait), 1))},
            )
        account_id = await desk.credentials.check(key, data.password)
        if account_id is None:
            await desk.limiter.failed(key, address)
            raise Problem(
                401,
                "invalid-credentials",
                "Wrong e-mail or password",
                None,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await desk.limiter.succeeded(key)
        new = await desk.sessions.create(account_id)
        return _session_response(desk, account_id, new, HTTP_201_CREATED)

    @delete(
        "/api/v1/sessions/current",
        operation_id="logOut",
        status_code=HTTP_200_OK,
        summary="Log out this session",
    )
    async def log_out(self, request: Request[Any, Any, Any], gateway: Gateway) -> Response[Any]:
        who = await signed_in(request)
        if who.caller.session_token is not None:
            await desk_of(gateway).sessions.delete(who.caller.session_token)
        response: Response[Any] = Response({"status": "logged out"})
        clear_session_cookies(response)
        return response

    @delete(
        "/api/v1/sessions",
        operation_id="logOutEverywhere",
        status_code=HTTP_200_OK,
        summary="Log out every session of the account, on every device",
    )
    async def log_out_everywhere(
        self, request: Request[Any, Any, Any], gateway: Gateway
    ) -> Response[Any]:
        who = await signed_in(request)
        assert who.account is not None
        ended = await desk_of(gateway).sessions.delete_all(who.account.account_id)
        response: Response[Any] = Response({"status": "logged out", "sessions_ended": ended})
        clear_session_cookies(response)
        return response

    @get("/api/v1/me", operation_id="me", summary="The logged-in account and its roles")
    async def me(self, request: Request[Any, Any, Any]) -> AccountAnswer:
        who = await signed_in(request)
        assert who.account is not None
        return _account_answer(who.account, who.roles)

    @post(
        "/api/v1/me/password",
        operation_id="changePassword",
        status_code=HTTP_200_OK,
        summary="Change the password; every other session ends",
        description="Answers a new session (token and cookies) for the caller: the one it "
        "used ends with the others.",
    )
    async def change_password(
        self, request: Request[Any, Any, Any], gateway: Gateway, data: PasswordChange
    ) -> Response[Any]:
        who = await signed_in(request)
        assert who.account is not None
        desk = desk_of(gateway)
        account = who.account
        if not await desk.credentials.matches(account.account_id, data.current_password):
            raise Problem(403, "wrong-password", "The current password is wrong", None)
        command_id = uuid.uuid4()
        command = ChangePassword(
            account_id=account.account_id,
            password_hash=await desk.credentials.hash(data.new_password),
        )
        outcome = await _send(request, gateway, command, command_id, account.email_key, "self")
        if outcome is None:
            return _pending(command_id)
        if outcome.rejected:
            raise _rejected(outcome)
        await desk.sessions.delete_all(account.account_id)
        new = await desk.sessions.create(account.account_id)
        return _session_response(desk, account.account_id, new, HTTP_200_OK)

    @get(
        "/api/v1/me/registrations",
        operation_id="myRegistrations",
        summary="The caller's registrations",
        description="Those made while logged in, and the guest registrations of the "
        "account's e-mail once it is verified; `transferred_away`: those it handed on.",
    )
    async def my_registrations(
        self, request: Request[Any, Any, Any], gateway: Gateway
    ) -> dict[str, Any]:
        who = await signed_in(request)
        assert who.account is not None
        key = who.account.email_key if who.account.verified else None
        items = await gateway.reads.registrations_of(who.account.account_id, key)
        return {
            "items": [item.model_dump(mode="json") for item in items],
            "transferred_away": await transferred_away(gateway, who.account.account_id, key),
        }


async def transferred_away(
    gateway: Gateway, account_id: uuid.UUID, verified_email_key: str | None
) -> list[dict[str, Any]]:
    """The registrations an account (or, as a guest, its verified e-mail) held and handed on."""
    r = website.registration_transfers.c
    held: Any = r.from_account_id == str(account_id)
    if verified_email_key is not None:
        guest = r.from_account_id.is_(None) & (r.from_email_key == verified_email_key)
        held = or_(held, guest)
    async with gateway.read_engine.connect() as conn:
        rows = (
            await conn.execute(
                select(website.registration_transfers).where(held).order_by(r.transferred_at.desc())
            )
        ).all()
    return [
        {
            "registration_id": row.registration_id,
            "convention_id": row.convention_id,
            "to_account_id": row.to_account_id,
            "transferred_at": row.transferred_at.isoformat() + "Z",
        }
        for row in rows
    ]


def _session_response(
    desk: AccountDesk, account_id: uuid.UUID, new: NewSession, status: int
) -> Response[Any]:
    response: Response[Any] = Response(
        SessionAnswer(
            token=new.token,
            csrf_token=new.csrf_token,
            account_id=account_id,
            expires_in=int(new.idle_seconds),
        ),
        status_code=status,
    )
    set_session_cookies(response, new, secure=desk.secure_cookies)
    return response


class AdminAccountController(Controller):
    path = "/api/v1/admin/accounts"
    tags = ["admin"]
    guards = [admin_guard]

    @get(
        "/",
        operation_id="adminFindAccount",
        summary="Find an account by e-mail",
    )
    async def find(
        self, request: Request[Any, Any, Any], gateway: Gateway, email: str
    ) -> AccountAnswer:
        await admin_principal(request)
        reads = desk_of(gateway).reads
        try:
            view = await reads.by_email_key(email_key(email))
        except ValueError:
            view = None
        if view is None:
            raise Problem(404, "not-found", "Account not found", None)
        return _account_answer(view, await reads.roles(view.account_id))

    @get(
        "/{account_id:uuid}",
        operation_id="adminGetAccount",
        summary="An account, its roles and the history of its roles (who granted what, when)",
    )
    async def get_account(
        self, request: Request[Any, Any, Any], gateway: Gateway, account_id: uuid.UUID
    ) -> dict[str, Any]:
        await admin_principal(request)
        reads = desk_of(gateway).reads
        view = await reads.account(account_id)
        if view is None:
            raise Problem(404, "not-found", "Account not found", None)
        answer = _account_answer(view, await reads.roles(account_id)).model_dump(mode="json")
        answer["role_history"] = [
            {
                "role": change.role,
                "convention_id": None
                if change.convention_id is None
                else str(change.convention_id),
                "granted": change.granted,
                "by": change.actor,
                "at": change.at.replace(tzinfo=UTC).isoformat(),
            }
            for change in await reads.role_changes(account_id)
        ]
        return answer

    @post(
        "/{account_id:uuid}/roles",
        operation_id="adminGrantRole",
        status_code=HTTP_200_OK,
        summary="Grant a role: admin, analyst, or staff of one convention",
    )
    async def grant(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        account_id: uuid.UUID,
        data: RoleBody,
    ) -> Response[Any]:
        return await _change_role(request, gateway, account_id, data, grant=True)

    @post(
        "/{account_id:uuid}/roles/revoke",
        operation_id="adminRevokeRole",
        status_code=HTTP_200_OK,
        summary="Revoke a role",
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        account_id: uuid.UUID,
        data: RoleBody,
    ) -> Response[Any]:
        return await _change_role(request, gateway, account_id, data, grant=False)


async def _change_role(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    account_id: uuid.UUID,
    data: RoleBody,
    *,
    grant: bool,
) -> Response[Any]:
    who = await admin_principal(request)
    reads = desk_of(gateway).reads
    view = await reads.account(account_id)
    if view is None:
        raise Problem(404, "not-found", "Account not found", None)
    held = (data.role.value, data.convention_id) in set(await reads.roles(account_id))
    if held == grant:
        return Response(_account_answer(view, await reads.roles(account_id)))
    cls = GrantRole if grant else RevokeRole
    command = cls(account_id=account_id, role=data.role, convention_id=data.convention_id)
    actor = "admin-token" if who.account is None else f"account:{who.account.account_id}"
    command_id = uuid.uuid4()
    outcome = await _send(request, gateway, command, command_id, view.email_key, actor)
    if outcome is not None and outcome.rejected:
        raise _rejected(outcome)
    roles = await reads.roles(account_id)
    return Response(_account_answer(view, roles))
