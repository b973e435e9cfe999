"""The account decider: pure rules, no I/O, no clock (the command's time is passed in).

`decide(state, command, at)` returns the events a command leads to; `apply(state, command,
events, at)` then changes the state: the command is needed there too, because what an event
must not carry (a password hash, a mailed token's hash) comes from the command.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.accounts import (
    TOKEN_SECONDS,
    AccountCommand,
    AccountCommandRejected,
    AccountCreated,
    AccountEvent,
    AccountRejection,
    ChangePassword,
    EmailVerified,
    GrantRole,
    PasswordChanged,
    PasswordResetMailed,
    RequestPasswordReset,
    ResendVerification,
    ResetPassword,
    RevokeRole,
    Role,
    RoleGranted,
    RoleRevoked,
    SignUp,
    VerificationMailed,
    VerifyEmail,
)
from schemas.identity import email_key


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Account:
    account_id: uuid.UUID
    email_key: str
    email: str
    name: str
    password_hash: str
    verified: bool
    created_at: datetime
    password_changed_at: datetime


@dataclass
class MailedToken:
    account_id: uuid.UUID
    purpose: str
    expires_at: datetime
    used_at: datetime | None = None


RoleKey = tuple[uuid.UUID, str, str]
"""(account, role, scope: a convention id or '')"""


@dataclass
class AccountState:
    accounts: dict[uuid.UUID, Account] = field(default_factory=dict)
    by_email_key: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, MailedToken] = field(default_factory=dict)
    """By token hash: the tokens the batch's commands name, and those it mails."""
    roles: set[RoleKey] = field(default_factory=set)
    changed_accounts: set[uuid.UUID] = field(default_factory=set)
    changed_tokens: set[str] = field(default_factory=set)
    superseded: set[tuple[uuid.UUID, str]] = field(default_factory=set)
    """(account, purpose) whose earlier tokens a newer one replaces."""
    granted: dict[RoleKey, datetime] = field(default_factory=dict)
    revoked: set[RoleKey] = field(default_factory=set)

    def add(self, account: Account) -> None:
        self.accounts[account.account_id] = account
        self.by_email_key[account.email_key] = account.account_id


def scope_of(convention_id: uuid.UUID | None) -> str:
    return "" if convention_id is None else str(convention_id)


def scope_fits(role: Role, convention_id: uuid.UUID | None) -> bool:
    """Staff is staff of one convention; admin and analyst are not scoped."""
    return (convention_id is not None) == (role is Role.STAFF)


def decide(state: AccountState, command: AccountCommand, at: datetime) -> list[AccountEvent]:
    account = state.accounts.get(command.account_id)

    def rejected(reason: AccountRejection) -> list[AccountEvent]:
        return [
            AccountCommandRejected(
                account_id=command.account_id,
                command=command.message_type,
                reason=reason,
            )
        ]

    if isinstance(command, SignUp):
        key = email_key(command.email)
        holder = state.by_email_key.get(key)
        if holder == command.account_id:
            return []
        if holder is not None:
            return rejected(AccountRejection.EMAIL_TAKEN)
        return [
            AccountCreated(
                account_id=command.account_id, email=command.email, email_key=key, name=command.name
            ),
            VerificationMailed(account_id=command.account_id),
        ]
    if account is None:
        return rejected(AccountRejection.UNKNOWN_ACCOUNT)
    if isinstance(command, VerifyEmail):
        if account.verified:
            # Only a code this account was mailed says so: any other code is just invalid,
            # so an account id tells nobody whether the account is verified.
            mailed = state.tokens.get(token_hash(command.token))
            if mailed is None or mailed.account_id != account.account_id:
                return rejected(AccountRejection.INVALID_TOKEN)
            return rejected(AccountRejection.ALREADY_VERIFIED)
        problem = _token_problem(state, command.token, account, "verify", at)
        if problem is not None:
            return rejected(problem)
        return [EmailVerified(account_id=account.account_id, email_key=account.email_key)]
    if isinstance(command, ResendVerification):
        if account.verified:
            return rejected(AccountRejection.ALREADY_VERIFIED)
        return [VerificationMailed(account_id=account.account_id)]
    if isinstance(command, ChangePassword):
        return [PasswordChanged(account_id=account.account_id)]
    if isinstance(command, RequestPasswordReset):
        return [PasswordResetMailed(account_id=account.account_id)]
    if isinstance(command, ResetPassword):
        problem = _token_problem(state, command.token, account, "reset", at)
        if problem is not None:
            return rejected(problem)
        events: list[AccountEvent] = [PasswordChanged(account_id=account.account_id, reset=True)]
        if not account.verified:
            events.append(EmailVerified(account_id=account.account_id, email_key=account.email_key))
        return events
    if isinstance(command, GrantRole | RevokeRole):
        if not scope_fits(command.role, command.convention_id):
            return rejected(AccountRejection.SCOPE_REQUIRED)
        held = (account.account_id, command.role.value, scope_of(command.convention_id)) in (
            state.roles
        )
        if isinstance(command, GrantRole):
            if held:
                return []
            return [
                RoleGranted(
                    account_id=account.account_id,
                    role=command.role,
                    convention_id=command.convention_id,
                )
            ]
        if not held:
            return []
        return [
            RoleRevoked(
                account_id=account.account_id,
                role=command.role,
                convention_id=command.convention_id,
            )
        ]
    raise TypeError(f"{type(command).__name__} is not an account command")


def _token_problem(
    state: AccountState, token: str, account: Account, purpose: str, at: datetime
) -> AccountRejection | None:
    mailed = state.tokens.get(token_hash(token))
    if (
        mailed is None
        or mailed.account_id != account.account_id
        or mailed.purpose != purpose
        or mailed.used_at is not None
    ):
        return AccountRejection.INVALID_TOKEN
    if at >= mailed.expires_at:
        return AccountRejection.TOKEN_EXPIRED
    return None


def mailed_token(command: AccountCommand) -> tuple[str, str] | None:
    """(token, purpose) a command mails, if it mails one."""
    if isinstance(command, SignUp | ResendVerification):
        return command.verification_token, "verify"
    if isinstance(command, RequestPasswordReset):
        return command.reset_token, "reset"
    return None


def apply(
    state: AccountState, command: AccountCommand, events: list[AccountEvent], at: datetime
) -> None:
    """The state after `command` was decided into `events`."""
    for event in events:
        account = state.accounts.get(event.account_id)
        if isinstance(event, AccountCreated) and isinstance(command, SignUp):
            state.add(
                Account(
                    account_id=event.account_id,
                    email_key=event.email_key,
                    email=event.email,
                    name=event.name,
                    password_hash=command.password_hash,
                    verified=False,
                    created_at=at,
                    password_changed_at=at,
                )
            )
            state.changed_accounts.add(event.account_id)
        elif isinstance(event, VerificationMailed | PasswordResetMailed):
            mailed = mailed_token(command)
            if mailed is not None:
                _remember_token(state, event.account_id, mailed[0], mailed[1], at)
        elif isinstance(event, EmailVerified) and account is not None:
            account.verified = True
            _use_token(state, command, at)
            state.changed_accounts.add(account.account_id)
        elif isinstance(event, PasswordChanged) and account is not None:
            if isinstance(command, ChangePassword | ResetPassword):
                account.password_hash = command.password_hash
            account.password_changed_at = at
            _use_token(state, command, at)
            state.changed_accounts.add(account.account_id)
        elif isinstance(event, RoleGranted):
            key = (event.account_id, event.role.value, scope_of(event.convention_id))
            state.roles.add(key)
            state.granted[key] = at
            state.revoked.discard(key)
        elif isinstance(event, RoleRevoked):
            key = (event.account_id, event.role.value, scope_of(event.convention_id))
            state.roles.discard(key)
            state.revoked.add(key)
            state.granted.pop(key, None)


def _remember_token(
    state: AccountState, account_id: uuid.UUID, token: str, purpose: str, at: datetime
) -> None:
    digest = token_hash(token)
    state.superseded.add((account_id, purpose))
    state.tokens[digest] = MailedToken(
        account_id, purpose, at + timedelta(seconds=TOKEN_SECONDS[purpose])
    )
    state.changed_tokens.add(digest)


def _use_token(state: AccountState, command: AccountCommand, at: datetime) -> None:
    if isinstance(command, VerifyEmail | ResetPassword):
        digest = token_hash(command.token)
        mailed = state.tokens.get(digest)
        if mailed is not None:
            mailed.used_at = at
            state.changed_tokens.add(digest)
