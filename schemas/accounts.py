"""Commands and events of accounts and roles.

Everything about one account lands on the partition of its e-mail identity
(`schemas.identity.email_key`), so one decider owns each address and two sign-ups with one
address are decided one after the other.

Secrets never travel in an event: a password reaches the pipeline only as an argon2 hash
inside the command that sets it, and is kept in the account decider's own table; a mailed
token travels in its command (the mail needs it) and is kept only as a hash. Events carry
what a replay of the read models needs, so a rebuild from the events restores accounts,
verifications and roles, but not passwords: those live only where logins are checked.
"""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.envelope import (
    Envelope,
    UndecodableMessage,
    decode_envelope,
    describe_validation_error,
)
from schemas.registration import Email, Text

TOKEN_SECONDS = {"verify": 7 * 24 * 3600, "reset": 3600}
"""How long a mailed token stays good, by purpose."""

Token = Annotated[str, Field(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")]
PasswordHash = Annotated[str, Field(min_length=20, max_length=400, pattern=r"^\$argon2")]


class Role(StrEnum):
    """Every account is an attendee; these are the powers an admin grants on top."""

    ADMIN = "admin"
    STAFF = "staff"
    """Staff of one convention (the grant names it)."""
    ANALYST = "analyst"


class AccountRejection(StrEnum):
    EMAIL_TAKEN = "email_taken"
    UNKNOWN_ACCOUNT = "unknown_account"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 - a reason's name, not a secret
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - a reason's name, not a secret
    ALREADY_VERIFIED = "already_verified"
    SCOPE_REQUIRED = "scope_required"
    """Staff is granted for one convention; admin and analyst for none."""


class AccountMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    message_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    account_id: uuid.UUID


class AccountCommand(AccountMessage):
    pass


class AccountEvent(AccountMessage):
    pass


# --- commands -------------------------------------------------------------------------------


class SignUp(AccountCommand):
    message_type: ClassVar[str] = "SignUp"
    email: Email
    name: Text
    password_hash: PasswordHash
    verification_token: Token


class VerifyEmail(AccountCommand):
    message_type: ClassVar[str] = "VerifyEmail"
    token: Token


class ResendVerification(AccountCommand):
    message_type: ClassVar[str] = "ResendVerification"
    verification_token: Token


class ChangePassword(AccountCommand):
    message_type: ClassVar[str] = "ChangePassword"
    password_hash: PasswordHash


class RequestPasswordReset(AccountCommand):
    message_type: ClassVar[str] = "RequestPasswordReset"
    reset_token: Token


class ResetPassword(AccountCommand):
    message_type: ClassVar[str] = "ResetPassword"
    token: Token
    password_hash: PasswordHash


class GrantRole(AccountCommand):
    message_type: ClassVar[str] = "GrantRole"
    role: Role
    convention_id: uuid.UUID | None = None


class RevokeRole(AccountCommand):
    message_type: ClassVar[str] = "RevokeRole"
    role: Role
    convention_id: uuid.UUID | None = None


# --- events ---------------------------------------------------------------------------------


class AccountCreated(AccountEvent):
    message_type: ClassVar[str] = "AccountCreated"
    email: str
    email_key: str
    name: str


class VerificationMailed(AccountEvent):
    message_type: ClassVar[str] = "VerificationMailed"


class EmailVerified(AccountEvent):
    message_type: ClassVar[str] = "EmailVerified"
    email_key: str


class PasswordChanged(AccountEvent):
    """Every session made before this event ends (`reset`: through a mailed token)."""

    message_type: ClassVar[str] = "PasswordChanged"
    reset: bool = False


class PasswordResetMailed(AccountEvent):
    message_type: ClassVar[str] = "PasswordResetMailed"


class RoleGranted(AccountEvent):
    message_type: ClassVar[str] = "RoleGranted"
    role: Role
    convention_id: uuid.UUID | None = None


class RoleRevoked(AccountEvent):
    message_type: ClassVar[str] = "RoleRevoked"
    role: Role
    convention_id: uuid.UUID | None = None


class AccountCommandRejected(AccountEvent):
    message_type: ClassVar[str] = "AccountCommandRejected"
    command: Literal[
        "SignUp",
        "VerifyEmail",
        "ResendVerification",
        "ChangePassword",
        "RequestPasswordReset",
        "ResetPassword",
        "GrantRole",
        "RevokeRole",
    ]
    reason: AccountRejection


ACCOUNT_COMMANDS: tuple[type[AccountCommand], ...] = (
    SignUp,
    VerifyEmail,
    ResendVerification,
    ChangePassword,
    RequestPasswordReset,
    ResetPassword,
    GrantRole,
    RevokeRole,
)
ACCOUNT_EVENTS: tuple[type[AccountEvent], ...] = (
    AccountCreated,
    VerificationMailed,
    EmailVerified,
    PasswordChanged,
    PasswordResetMailed,
    RoleGranted,
    RoleRevoked,
    AccountCommandRejected,
)
ACCOUNT_TYPES: dict[str, type[AccountMessage]] = {
    cls.message_type: cls for cls in (*ACCOUNT_COMMANDS, *ACCOUNT_EVENTS)
}


def decode_account_message(value: bytes | None) -> tuple[Envelope, AccountMessage]:
    """The envelope and typed account message of a record; `UndecodableMessage` otherwise."""
    envelope = decode_envelope(value)
    cls = ACCOUNT_TYPES.get(envelope.type)
    if cls is None:
        raise UndecodableMessage(f"{envelope.type!r} is not an account message")
    if envelope.schema_version != cls.schema_version:
        raise UndecodableMessage(f"{envelope.type} v{envelope.schema_version} is not known")
    try:
        return envelope, cls.model_validate(envelope.payload)
    except ValidationError as exc:
        raise UndecodableMessage(
            f"invalid {envelope.type} payload: {describe_validation_error(exc)}"
        ) from exc


def account_envelope(
    message: AccountMessage,
    *,
    message_id: uuid.UUID,
    occurred_at: object,
    correlation_id: uuid.UUID,
    causation_id: uuid.UUID | None,
    email_key: str,
    actor: str,
) -> Envelope:
    """An account message in the envelope every message travels in, keyed by the e-mail
    identity it belongs to."""
    return Envelope.model_validate(
        {
            "message_id": message_id,
            "type": message.message_type,
            "schema_version": message.schema_version,
            "occurred_at": occurred_at,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "key": email_key,
            "actor": actor,
            "payload": json.loads(message.model_dump_json()),
        }
    )
