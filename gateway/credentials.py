"""Checking a password: the one place the gateway reads the deciders' database.

A password hash is the account decider's secret (no event carries it), so the read models
cannot hold it: a login reads `accounts.password_hash` of the write database, by e-mail
identity, and nothing else there. Hashing and verifying run in a worker thread: argon2 is
made to be slow, and the event loop must keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.accounts import tables as t

MIN_PASSWORD = 10
MAX_PASSWORD = 200


@dataclass(frozen=True)
class Credential:
    account_id: uuid.UUID
    password_hash: str


class Credentials:
    def __init__(self, engine: AsyncEngine, hasher: PasswordHasher | None = None) -> None:
        self._engine = engine
        self._hasher = hasher or PasswordHasher()
        self._decoy = self._hasher.hash("a password nobody has")
        """Verified against when the e-mail is unknown, so an unknown address takes as long
        to refuse as a wrong password."""

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def of(self, email_key: str) -> Credential | None:
        a = t.accounts.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(a.account_id, a.password_hash).where(a.email_key == email_key)
                )
            ).one_or_none()
        return None if row is None else Credential(uuid.UUID(row.account_id), row.password_hash)

    async def check(self, email_key: str, password: str) -> uuid.UUID | None:
        """The account whose password this is, or None; the same work either way."""
        found = await self.of(email_key)
        stored = self._decoy if found is None else found.password_hash
        matches = await asyncio.to_thread(self._verify, stored, password)
        return found.account_id if found is not None and matches else None

    async def matches(self, account_id: uuid.UUID, password: str) -> bool:
        a = t.accounts.c
        async with self._engine.connect() as conn:
            stored = (
                await conn.execute(select(a.password_hash).where(a.account_id == str(account_id)))
            ).scalar_one_or_none()
        matches = await asyncio.to_thread(self._verify, stored or self._decoy, password)
        return stored is not None and matches

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def close(self) -> None:
        await self._engine.dispose()
