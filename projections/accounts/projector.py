"""The accounts projector: `accounts.events` into the account read models in `butterfly_read`.

Each event becomes statements queued in event order (`Writes`); consecutive statements of
one kind run as one executemany. Events already applied (a redelivery) are skipped by their
id, recorded in the same transaction as the rows they wrote. A record that is not an account
event, or whose text does not fit the read model, goes to the dead-letter topic and the
projector moves on; a conflict the database finds (an identity another account holds) fails
the batch, and the consumer runtime isolates and dead-letters the one record behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import TopicPartition
from sqlalchemy import String, Table, bindparam, delete, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from projections.accounts import tables as t
from schemas.accounts import (
    AccountCommandRejected,
    AccountCreated,
    AccountEvent,
    ChangePassword,
    EmailVerified,
    GrantRole,
    PasswordChanged,
    PasswordResetMailed,
    RequestPasswordReset,
    ResendVerification,
    ResetPassword,
    RevokeRole,
    RoleGranted,
    RoleRevoked,
    SignUp,
    VerificationMailed,
    VerifyEmail,
    decode_account_message,
)
from schemas.envelope import Envelope, UndecodableMessage

log = structlog.get_logger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"

DECIDED_BY: dict[type[AccountEvent], str] = {
    AccountCreated: SignUp.message_type,
    VerificationMailed: ResendVerification.message_type,
    EmailVerified: VerifyEmail.message_type,
    PasswordResetMailed: RequestPasswordReset.message_type,
    RoleGranted: GrantRole.message_type,
    RoleRevoked: RevokeRole.message_type,
}
"""The command an accepted command's first event comes from. A sign-up decides
`AccountCreated` before its `VerificationMailed`, so a verification mail that comes first
was asked for again."""


class UnprojectableEvent(ValueError):
    """A well-formed event the read model cannot hold (text longer than its column)."""


AccountRecord = tuple[Envelope, AccountEvent]


def naive_utc(moment: datetime) -> datetime:
    """Read models store UTC without a zone."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None)


def scope_of(convention_id: object) -> str:
    """A grant's scope as the roles table keys it: the convention id, or '' for none."""
    return "" if convention_id is None else str(convention_id)


def command_of(event: AccountEvent) -> str:
    """The command that decided `event`, as far as its first event tells."""
    if isinstance(event, AccountCommandRejected):
        return event.command
    if isinstance(event, PasswordChanged):
        return ResetPassword.message_type if event.reset else ChangePassword.message_type
    return DECIDED_BY.get(type(event), event.message_type)


def _text_limits(table: Table) -> dict[str, int]:
    return {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, String) and column.type.length
    }


_ACCOUNT_LIMITS = _text_limits(t.accounts)


def check_fits(event: AccountEvent) -> None:
    """Raise `UnprojectableEvent` if the event's text does not fit its columns (in
    characters, as utf8mb4 counts them). Commands are validated to fit; events carry what
    their decider copied, and a hostile one must not fail every batch after it."""
    if not isinstance(event, AccountCreated):
        return
    for name in ("email", "email_key", "name"):
        value: str = getattr(event, name)
        if len(value) > _ACCOUNT_LIMITS[name]:
            raise UnprojectableEvent(
                f"AccountCreated.{name} is {len(value)} characters; "
                f"account_views holds {_ACCOUNT_LIMITS[name]}"
            )


def decode_events(records: Sequence[Record]) -> tuple[list[AccountRecord], list[DeadLetter]]:
    """The account events among `records`, and the records to dead-letter: anything that is
    not an account event (a command published here by mistake included) or does not fit."""
    events: list[AccountRecord] = []
    dead_letters: list[DeadLetter] = []
    for record in records:
        try:
            envelope, message = decode_account_message(record.value)
            if not isinstance(message, AccountEvent):
                raise UndecodableMessage(f"{envelope.type} is a command, not an account event")
            check_fits(message)
        except (UndecodableMessage, UnprojectableEvent) as exc:
            dead_letters.append(DeadLetter(record, exc))
            continue
        events.append((envelope, message))
    return events, dead_letters


@dataclass
class Writes:
    """Statements in the order their events came, each with its rows; a statement following
    itself is merged into one executemany."""

    steps: list[tuple[Executable, list[dict[str, Any]]]] = field(default_factory=list)

    def add(self, statement: Executable, *rows: dict[str, Any]) -> None:
        if self.steps and self.steps[-1][0] is statement:
            self.steps[-1][1].extend(rows)
        else:
            self.steps.append((statement, list(rows)))

    async def run(self, conn: AsyncConnection) -> None:
        for statement, rows in self.steps:
            if rows:
                await conn.execute(statement, rows)


class AccountsProjector:
    """Projects `accounts.events`: accounts, verification, the end of old sessions, roles
    with their audit trail, and how each command ended."""

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        events, dead_letters = decode_events(records)
        fresh = await _unapplied(conn, events)
        writes = Writes()
        for envelope, event in fresh:
            project_event(writes, envelope, event)
        await writes.run(conn)
        log.debug(
            "accounts_batch_projected",
            partition=f"{tp.topic}[{tp.partition}]",
            records=len(records),
            events=len(fresh),
            dead_letters=len(dead_letters),
        )
        return HandledBatch(dead_letters=dead_letters)


async def _unapplied(conn: AsyncConnection, events: list[AccountRecord]) -> list[AccountRecord]:
    """The events not applied before (a redelivery), each once."""
    if not events:
        return []
    ids = list({str(envelope.message_id) for envelope, _ in events})
    applied = set((await conn.execute(_APPLIED, {"ids": ids})).scalars())
    fresh = []
    for envelope, event in events:
        event_id = str(envelope.message_id)
        if event_id not in applied:
            applied.add(event_id)
            fresh.append((envelope, event))
    return fresh


def project_event(w: Writes, envelope: Envelope, event: AccountEvent) -> None:
    """Queue what one event does to the read models (pure: nothing runs until `w.run`)."""
    at = naive_utc(envelope.occurred_at)
    account_id = str(event.account_id)
    w.add(_INSERT_APPLIED, {"event_id": str(envelope.message_id), "applied_at": at})
    match event:
        case AccountCreated():
            w.add(_INSERT_ACCOUNT, _account_row(event, at))
        case VerificationMailed() | PasswordResetMailed():
            w.add(_MAILED, {"b_id": account_id, "b_at": at})
        case EmailVerified():
            w.add(_VERIFY, {"b_id": account_id})
        case PasswordChanged():
            w.add(_END_SESSIONS, {"b_id": account_id, "b_at": at})
        case RoleGranted():
            w.add(_GRANT, _role_row(event) | {"granted_at": at})
            w.add(_AUDIT, _audit_row(envelope, event, at, granted=True))
        case RoleRevoked():
            w.add(_REVOKE, {f"b_{k}": v for k, v in _role_row(event).items()})
            w.add(_AUDIT, _audit_row(envelope, event, at, granted=False))
        case _:
            pass
    _record_outcome(w, envelope, event, at)


def _account_row(event: AccountCreated, at: datetime) -> dict[str, Any]:
    return {
        "account_id": str(event.account_id),
        "email": event.email,
        "email_key": event.email_key,
        "name": event.name,
        "verified": False,
        "sessions_valid_after": None,
        "last_mailed_at": None,
        "created_at": at,
    }


def _role_row(event: RoleGranted | RoleRevoked) -> dict[str, Any]:
    return {
        "account_id": str(event.account_id),
        "role": event.role.value,
        "scope": scope_of(event.convention_id),
    }


def _audit_row(
    envelope: Envelope, event: RoleGranted | RoleRevoked, at: datetime, *, granted: bool
) -> dict[str, Any]:
    return _role_row(event) | {
        "event_id": str(envelope.message_id),
        "granted": granted,
        "actor": envelope.actor,
        "at": at,
    }


def _record_outcome(w: Writes, envelope: Envelope, event: AccountEvent, at: datetime) -> None:
    """Every account event answers the command that caused it; one without a cause has
    no command waiting on it."""
    if envelope.causation_id is None:
        return
    row = {
        "command_id": str(envelope.causation_id),
        "account_id": str(event.account_id),
        "command": command_of(event),
        "outcome": ACCEPTED,
        "reason": None,
        "recorded_at": at,
    }
    if isinstance(event, AccountCommandRejected):
        w.add(_UPSERT_REJECTED, row | {"outcome": REJECTED, "reason": event.reason.value})
    else:
        w.add(_INSERT_ACCEPTED, row)


# Statements built once, run as executemany. Bound names differ from column names: an
# UPDATE may not bind a name its SET clause uses.
_APPLIED = select(t.applied_events.c.event_id).where(
    t.applied_events.c.event_id.in_(bindparam("ids", expanding=True))
)
_INSERT_APPLIED = insert(t.applied_events)
_INSERT_ACCOUNT = insert(t.accounts)
_a = t.accounts.c
_MAILED = (
    update(t.accounts)
    .where(_a.account_id == bindparam("b_id"))
    .values(last_mailed_at=bindparam("b_at"))
)
_VERIFY = update(t.accounts).where(_a.account_id == bindparam("b_id")).values(verified=True)
_END_SESSIONS = (
    update(t.accounts)
    .where(_a.account_id == bindparam("b_id"))
    .values(sessions_valid_after=bindparam("b_at"))
)
_role = insert(t.roles)
_GRANT = _role.on_duplicate_key_update(granted_at=t.roles.c.granted_at)
"""A grant of a role held already keeps when it was first granted."""
_r = t.roles.c
_REVOKE = delete(t.roles).where(
    _r.account_id == bindparam("b_account_id"),
    _r.role == bindparam("b_role"),
    _r.scope == bindparam("b_scope"),
)
_AUDIT = insert(t.role_changes)
_outcome = insert(t.command_outcomes)
_INSERT_ACCEPTED = _outcome.on_duplicate_key_update(command_id=t.command_outcomes.c.command_id)
"""The first event of a command records it; a later event of the same command leaves that."""
_UPSERT_REJECTED = _outcome.on_duplicate_key_update(
    {
        name: _outcome.inserted[name]
        for name in ("account_id", "command", "outcome", "reason", "recorded_at")
    }
)
