"""Sessions and login rate limits, kept in the Redis every gateway process shares.

They are not domain facts (DESIGN.md, "Shared stores"): losing them logs people out or
forgets a few failed logins, nothing more. Litestar's `Store` offers get/set/delete on one
key, but ending every session of an account from any gateway needs a per-account index and
counters need atomic increments, so this module speaks to Redis directly.

Nothing a client could replay sits in Redis in clear: a session is filed under the SHA-256 of
its token, and rate-limit counters under the SHA-256 of the e-mail identity and the address.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

SOCKET_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_INTERVAL_SECONDS = 15
TOKEN_BYTES = 32

# Reads a session and slides its expiry, and that of its account's index, in one round trip.
# The index key comes from the session's own fields, so it cannot be declared in KEYS: fine on
# one Redis server (or a primary with replicas), not on Redis Cluster.
_TOUCH_SCRIPT = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return fields
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local account = redis.call('HGET', KEYS[1], 'account_id')
redis.call('PEXPIRE', ARGV[2] .. account, ARGV[1])
return fields
"""


def make_redis(url: str) -> Redis:
    """A client for the shared store. Short timeouts: a gateway answers 503 quickly when
    Redis is away rather than holding requests; health checks find dead pooled connections
    before a request does."""
    client: Redis = Redis.from_url(
        url,
        decode_responses=False,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return client


def _text(value: bytes | str) -> str:
    """A reply as text: the client is built with `decode_responses=False`, so bytes."""
    return value.decode() if isinstance(value, bytes) else value


def digest(value: str) -> str:
    """The hex SHA-256 under which `value` is filed, so the value itself never is."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    """A session just made: `token` goes to the client (cookie or bearer) and is never
    stored; `csrf_token` is what a cookie client must echo in `X-CSRF-Token`."""

    token: str
    csrf_token: str
    created_at: datetime
    idle_seconds: float
    """How long the session lives unused: the cookies' Max-Age."""


@dataclass(frozen=True)
class Session:
    account_id: uuid.UUID
    created_at: datetime
    csrf_token: str


class SessionStore:
    """Sessions every gateway sees at once: one made, used or ended on one gateway is made,
    used or ended on all. A session ends after `idle_seconds` without use."""

    def __init__(self, redis: Redis, namespace: str, idle_seconds: float) -> None:
        self._redis = redis
        self._namespace = namespace
        self._idle_ms = max(int(idle_seconds * 1000), 1)
        self._idle_seconds = idle_seconds
        self._touch = redis.register_script(_TOUCH_SCRIPT)

    def _session_key(self, token_digest: str) -> str:
        return f"{self._namespace}:session:{token_digest}"

    def _index_prefix(self) -> str:
        return f"{self._namespace}:account-sessions:"

    def _index_key(self, account_id: uuid.UUID | str) -> str:
        return f"{self._index_prefix()}{account_id}"

    async def create(self, account_id: uuid.UUID) -> NewSession:
        new = NewSession(
            token=secrets.token_urlsafe(TOKEN_BYTES),
            csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
            created_at=datetime.now(UTC),
            idle_seconds=self._idle_seconds,
        )
        token_digest = digest(new.token)
        key, index = self._session_key(token_digest), self._index_key(account_id)
        await self._prune(index)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "account_id": str(account_id),
                    "created_at": new.created_at.isoformat(),
                    "csrf_token": new.csrf_token,
                },
            )
            pipe.pexpire(key, self._idle_ms)
            pipe.sadd(index, token_digest)
            pipe.pexpire(index, self._idle_ms)
            await pipe.execute()
        return new

    async def get(self, token: str) -> Session | None:
        """The live session `token` opens, its idle time started again; None if there is none
        (never made, ended, or idle too long)."""
        raw: list[bytes | str] = await self._touch(
            keys=[self._session_key(digest(token))],
            args=[self._idle_ms, self._index_prefix()],
        )
        if not raw:
            return None
        fields = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)}
        return Session(
            account_id=uuid.UUID(fields["account_id"]),
            created_at=datetime.fromisoformat(fields["created_at"]),
            csrf_token=fields["csrf_token"],
        )

    async def delete(self, token: str) -> None:
        """End one session (log out); ending one that is already gone is not an error."""
        token_digest = digest(token)
        key = self._session_key(token_digest)
        account = await self._redis.hget(key, "account_id")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.unlink(key)
            if account is not None:
                pipe.srem(self._index_key(_text(account)), token_digest)
            await pipe.execute()

    async def delete_all(self, account_id: uuid.UUID, keep: str | None = None) -> int:
        """End every session of the account ("log out everywhere", a password change), all
        but the one `keep` opens if given; the number ended.

        A session made while this runs may survive it, as one made just after would."""
        index = self._index_key(account_id)
        kept = digest(keep) if keep is not None else None
        members = {_text(m) for m in await self._redis.smembers(index)}
        doomed = sorted(members - {kept} if kept is not None else members)
        if not doomed:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.unlink(*(self._session_key(d) for d in doomed))
            pipe.srem(index, *doomed)
            ended, _removed = await pipe.execute()
        return int(ended)

    async def _prune(self, index: str) -> None:
        """Drop index entries whose sessions have expired, so an account's index stays as
        small as its live sessions."""
        members = sorted(_text(m) for m in await self._redis.smembers(index))
        if not members:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(self._session_key(member))
            alive: list[int] = await pipe.execute()
        dead = [m for m, exists in zip(members, alive, strict=True) if not exists]
        if dead:
            await self._redis.srem(index, *dead)


class LoginLimiter:
    """Failed logins counted per account and per client address in fixed windows, across
    every gateway: past either limit, logins wait until that window ends.

    The account key is the normalised e-mail identity; it is stored only as a digest."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        per_account: int,
        per_address: int,
        window_seconds: float,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._per_account = per_account
        self._per_address = per_address
        self._window_ms = max(int(window_seconds * 1000), 1)

    def _account_key(self, account_key: str) -> str:
        return f"{self._namespace}:login-fails:account:{digest(account_key)}"

    def _address_key(self, address: str) -> str:
        return f"{self._namespace}:login-fails:address:{digest(address)}"

    async def check(self, account_key: str, address: str) -> float | None:
        """Seconds to wait (for `Retry-After`) if the account or the address has used up its
        failed logins for this window; None if a login may be tried now."""
        keys = (self._account_key(account_key), self._address_key(address))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            account_count, account_ttl, address_count, address_ttl = await pipe.execute()
        waits = [
            self._wait(ttl)
            for count, ttl, limit in (
                (account_count, account_ttl, self._per_account),
                (address_count, address_ttl, self._per_address),
            )
            if count is not None and int(count) >= limit
        ]
        return max(waits) if waits else None

    def _wait(self, ttl_ms: int) -> float:
        """A counter with no expiry (-1) cannot happen through `failed`; treat it as a whole
        window rather than forever."""
        return (ttl_ms if ttl_ms > 0 else self._window_ms) / 1000

    async def failed(self, account_key: str, address: str) -> None:
        """Count a failed login against both the account and the address. The first failure
        of a window opens it; SET NX + INCR in one transaction keep that atomic."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in (self._account_key(account_key), self._address_key(address)):
                pipe.set(key, 0, px=self._window_ms, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, account_key: str) -> None:
        """A good password clears the account's count; the address's stays, so one caller
        cannot reset its budget by logging into an account of its own between guesses."""
        await self._redis.unlink(self._account_key(account_key))
