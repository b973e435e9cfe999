"""Queries against the account read models (`projections.accounts.tables`): who an account
is, which roles it holds, how an account command ended, and who changed its roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.accounts import tables as t


@dataclass(frozen=True)
class AccountView:
    account_id: uuid.UUID
    email: str
    email_key: str
    name: str
    verified: bool
    sessions_valid_after: datetime | None
    """Naive UTC: a session made before it is over (null: none is)."""
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    """How an account command ended: accepted, or rejected with a machine-readable reason."""

    command_id: uuid.UUID
    account_id: uuid.UUID
    command: str
    outcome: str
    reason: str | None
    recorded_at: datetime

    @property
    def rejected(self) -> bool:
        return self.outcome == "rejected"


@dataclass(frozen=True)
class RoleChange:
    event_id: uuid.UUID
    role: str
    convention_id: uuid.UUID | None
    granted: bool
    """False: revoked."""
    actor: str
    at: datetime


def _scope(scope: str) -> uuid.UUID | None:
    return uuid.UUID(scope) if scope else None


def _account(row: Any) -> AccountView:
    return AccountView(
        account_id=uuid.UUID(row.account_id),
        email=row.email,
        email_key=row.email_key,
        name=row.name,
        verified=bool(row.verified),
        sessions_valid_after=row.sessions_valid_after,
        created_at=row.created_at,
    )


class AccountReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _all(self, query: Any) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def _first(self, query: Any) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def account(self, account_id: uuid.UUID) -> AccountView | None:
        row = await self._first(
            select(t.accounts).where(t.accounts.c.account_id == str(account_id))
        )
        return None if row is None else _account(row)

    async def by_email_key(self, email_key: str) -> AccountView | None:
        """The account of an identity (`schemas.identity.email_key`), compared byte for byte."""
        row = await self._first(select(t.accounts).where(t.accounts.c.email_key == email_key))
        return None if row is None else _account(row)

    async def roles(self, account_id: uuid.UUID) -> list[tuple[str, uuid.UUID | None]]:
        """The roles the account holds now, each with the convention it is scoped to."""
        r = t.roles.c
        rows = await self._all(
            select(r.role, r.scope).where(r.account_id == str(account_id)).order_by(r.role, r.scope)
        )
        return [(row.role, _scope(row.scope)) for row in rows]

    async def outcome(self, command_id: uuid.UUID) -> Outcome | None:
        """How the command ended, or None while it is not decided (or not projected) yet."""
        row = await self._first(
            select(t.command_outcomes).where(t.command_outcomes.c.command_id == str(command_id))
        )
        if row is None:
            return None
        return Outcome(
            command_id=uuid.UUID(row.command_id),
            account_id=uuid.UUID(row.account_id),
            command=row.command,
            outcome=row.outcome,
            reason=row.reason,
            recorded_at=row.recorded_at,
        )

    async def role_changes(self, account_id: uuid.UUID) -> list[RoleChange]:
        """Every grant and revocation of the account's roles, oldest first."""
        c = t.role_changes.c
        rows = await self._all(
            select(t.role_changes).where(c.account_id == str(account_id)).order_by(c.at, c.event_id)
        )
        return [
            RoleChange(
                event_id=uuid.UUID(row.event_id),
                role=row.role,
                convention_id=_scope(row.scope),
                granted=bool(row.granted),
                actor=row.actor,
                at=row.at,
            )
            for row in rows
        ]
