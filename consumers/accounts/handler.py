"""The account decider's runtime: one batch of one partition of `accounts.commands`, decided
in one transaction with its state, its events in the outbox, the mails it sends in the mail
outbox, and its offsets; the events are published once the transaction has committed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy import select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.accounts import tables as t
from consumers.accounts.decider import (
    Account,
    AccountState,
    MailedToken,
    apply,
    decide,
    mailed_token,
    token_hash,
)
from infra.db import decided_among, upsert
from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from producers import outbox
from producers.kafka import OutgoingRecord, publish_all
from schemas.accounts import (
    AccountCommand,
    AccountEvent,
    PasswordResetMailed,
    ResetPassword,
    SignUp,
    VerificationMailed,
    VerifyEmail,
    account_envelope,
    decode_account_message,
)
from schemas.envelope import Envelope, UndecodableMessage, correlation_of
from schemas.identity import email_key
from schemas.registry import event_id
from schemas.topics import Topics

log = structlog.get_logger(__name__)

MAIL_NAMESPACE = uuid.UUID("0b7f4c4e-7a3a-4a7e-9a55-2f7c1d6b8e21")


class AccountDecider:
    def __init__(self, topics: Topics, engine: AsyncEngine, producer: AIOKafkaProducer) -> None:
        self._topics = topics
        self._engine = engine
        self._producer = producer
        self._unmarked: set[str] = set()

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        marking = tuple(self._unmarked)
        await outbox.mark_published(conn, t.outbox, marking)
        dead_letters: list[DeadLetter] = []
        incoming: list[tuple[Record, Envelope, AccountCommand]] = []
        for record in records:
            try:
                envelope, message = decode_account_message(record.value)
                if not isinstance(message, AccountCommand):
                    raise UndecodableMessage(f"{envelope.type} is not an account command")
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            incoming.append((record, envelope, message))
        seen = await decided_among(
            conn, t.decided_commands, {str(e.message_id) for _, e, _ in incoming}
        )
        fresh = []
        for item in incoming:
            command_id = str(item[1].message_id)
            if command_id not in seen:
                seen.add(command_id)
                fresh.append(item)

        state = await load_state(conn, [command for _, _, command in fresh])
        decided: list[Envelope] = []
        mails: list[dict[str, Any]] = []
        for record, envelope, command in fresh:
            at = envelope.occurred_at.replace(tzinfo=None)
            events = decide(state, command, at)
            apply(state, command, events, at)
            decided.extend(
                account_envelope(
                    event,
                    message_id=event_id(envelope.message_id, index),
                    occurred_at=envelope.occurred_at,
                    correlation_id=envelope.correlation_id,
                    causation_id=envelope.message_id,
                    email_key=envelope.key,
                    actor=envelope.actor,
                )
                for index, event in enumerate(events)
            )
            mails.extend(_mails(state, envelope, command, events, at))
            log.info(
                "account_decided",
                correlation_id=correlation_of(record.headers, envelope),
                command=envelope.type,
                command_id=str(envelope.message_id),
                events=[e.message_type for e in events],
            )

        await save_state(conn, state)
        if mails:
            await conn.execute(insert(t.mail_outbox).prefix_with("IGNORE"), mails)
        if fresh:
            now = outbox.utcnow()
            await conn.execute(
                insert(t.decided_commands).prefix_with("IGNORE"),
                [{"command_id": str(e.message_id), "decided_at": now} for _, e, _ in fresh],
            )
        staged = [
            (str(e.message_id), OutgoingRecord.of(self._topics.account_events, e)) for e in decided
        ]
        await outbox.stage(conn, t.outbox, staged, partition=tp.partition)

        async def after_commit() -> None:
            self._unmarked.difference_update(marking)
            if staged:
                await publish_all(self._producer, (record for _, record in staged))
                self._unmarked.update(event_id for event_id, _ in staged)

        return HandledBatch(dead_letters=dead_letters, after_commit=after_commit)

    async def idle(self) -> None:
        """Nothing came in: mark what was published since the last batch."""
        if self._unmarked:
            marking = tuple(self._unmarked)
            async with self._engine.begin() as conn:
                await outbox.mark_published(conn, t.outbox, marking)
            self._unmarked.difference_update(marking)


def _mails(
    state: AccountState,
    envelope: Envelope,
    command: AccountCommand,
    events: list[AccountEvent],
    at: Any,
) -> list[dict[str, Any]]:
    """The mail a decision sends: the token travels in the command, never in an event."""
    mailed = mailed_token(command)
    account = state.accounts.get(command.account_id)
    if mailed is None or account is None:
        return []
    if not any(isinstance(e, VerificationMailed | PasswordResetMailed) for e in events):
        return []
    token, purpose = mailed
    if purpose == "verify":
        subject = "Confirm your e-mail address for Butterfly"
        body = (
            f"Hello {account.name},\n\nconfirm this address with the code below:\n\n"
            f"    {token}\n\n"
            'POST /api/v1/accounts/verify {"token": "<the code>"}\n\n'
            "The code is good for 7 days. If you did not sign up, ignore this mail.\n"
        )
    else:
        subject = "Reset your Butterfly password"
        body = (
            f"Hello {account.name},\n\nreset your password with the code below:\n\n"
            f"    {token}\n\n"
            'POST /api/v1/accounts/password-reset/confirm {"token": "<the code>", '
            '"password": "<the new one>"}\n\n'
            "The code is good for one hour. If you did not ask for it, ignore this mail.\n"
        )
    return [
        {
            "mail_id": str(uuid.uuid5(MAIL_NAMESPACE, str(envelope.message_id))),
            "to_address": account.email,
            "subject": subject,
            "body": body,
            "created_at": at,
        }
    ]


# --- loading and saving ---------------------------------------------------------------------


async def load_state(conn: AsyncConnection, commands: Sequence[AccountCommand]) -> AccountState:
    state = AccountState()
    if not commands:
        return state
    ids = {str(c.account_id) for c in commands}
    keys = {email_key(c.email) for c in commands if isinstance(c, SignUp)}
    a = t.accounts.c
    condition: Any = a.account_id.in_(ids)
    if keys:
        condition = condition | a.email_key.in_(keys)
    for row in await conn.execute(select(t.accounts).where(condition)):
        state.add(
            Account(
                account_id=uuid.UUID(row.account_id),
                email_key=row.email_key,
                email=row.email,
                name=row.name,
                password_hash=row.password_hash,
                verified=bool(row.verified),
                created_at=row.created_at,
                password_changed_at=row.password_changed_at,
            )
        )
    hashes = {token_hash(c.token) for c in commands if isinstance(c, VerifyEmail | ResetPassword)}
    if hashes:
        k = t.account_tokens.c
        for row in await conn.execute(select(t.account_tokens).where(k.token_hash.in_(hashes))):
            state.tokens[row.token_hash] = MailedToken(
                uuid.UUID(row.account_id), row.purpose, row.expires_at, row.used_at
            )
    r = t.account_roles.c
    for row in await conn.execute(select(t.account_roles).where(r.account_id.in_(ids))):
        state.roles.add((uuid.UUID(row.account_id), row.role, row.scope))
    return state


async def save_state(conn: AsyncConnection, state: AccountState) -> None:
    await upsert(
        conn,
        t.accounts,
        [
            {
                "account_id": str(account.account_id),
                "email_key": account.email_key,
                "email": account.email,
                "name": account.name,
                "password_hash": account.password_hash,
                "verified": account.verified,
                "created_at": account.created_at,
                "password_changed_at": account.password_changed_at,
            }
            for account in (state.accounts[i] for i in sorted(state.changed_accounts, key=str))
        ],
    )
    k = t.account_tokens.c
    now = outbox.utcnow()
    for account_id, purpose in sorted(state.superseded, key=str):
        await conn.execute(
            update(t.account_tokens)
            .where(
                k.account_id == str(account_id),
                k.purpose == purpose,
                k.used_at.is_(None),
                k.token_hash.not_in(state.changed_tokens),
            )
            .values(used_at=now)
        )
    await upsert(
        conn,
        t.account_tokens,
        [
            {
                "token_hash": digest,
                "account_id": str(token.account_id),
                "purpose": token.purpose,
                "expires_at": token.expires_at,
                "used_at": token.used_at,
            }
            for digest, token in sorted(state.tokens.items())
            if digest in state.changed_tokens
        ],
    )
    await upsert(
        conn,
        t.account_roles,
        [
            {"account_id": str(a), "role": role, "scope": scope, "granted_at": at}
            for (a, role, scope), at in sorted(state.granted.items(), key=lambda i: str(i[0]))
        ],
    )
    r = t.account_roles.c
    for account_id, role, scope in sorted(state.revoked, key=str):
        await conn.execute(
            t.account_roles.delete().where(
                r.account_id == str(account_id), r.role == role, r.scope == scope
            )
        )
