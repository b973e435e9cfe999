"""What the account routes need, built once per gateway process (`infra.bootstrap`)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.account_reads import AccountReads
from gateway.credentials import Credentials
from gateway.sessions import LoginLimiter, SessionStore


@dataclass
class AccountDesk:
    """Everything the account routes need, built once per gateway process."""

    sessions: SessionStore
    limiter: LoginLimiter
    credentials: Credentials
    reads: AccountReads
    redis: Redis
    secure_cookies: bool = False

    async def close(self) -> None:
        await self.redis.aclose()
        await self.credentials.close()
