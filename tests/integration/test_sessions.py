"""Sessions and login limits on a real Redis, as every gateway process shares them: each
test has a key namespace of its own, and "two gateways" are two stores on two clients."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.sessions import LoginLimiter, SessionStore, make_redis
from infra.services import (
    LocalRedis,
    ServiceUnavailable,
    ensure_redis,
    free_port,
    redis_answers,
    redis_server_binary,
)
from infra.settings import Settings
from tests.conftest import delete_namespace

pytestmark = pytest.mark.integration

IDLE_SECONDS = 60.0
EMAIL = "ada.lovelace@example.org"
ADDRESS = "203.0.113.7"


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    name = f"bfy_test_{secrets.token_hex(4)}"
    yield name
    await delete_namespace(redis_url, name)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = make_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: Redis, namespace: str) -> SessionStore:
    return SessionStore(redis, namespace, IDLE_SECONDS)


def limiter(redis: Redis, namespace: str, window_seconds: float = 60.0) -> LoginLimiter:
    return LoginLimiter(
        redis, namespace, per_account=3, per_address=5, window_seconds=window_seconds
    )


async def keys_of(redis: Redis, namespace: str) -> list[str]:
    return sorted(k.decode() for k in await redis.keys(f"{namespace}:*"))


async def test_a_session_is_made_found_and_ended(store: SessionStore) -> None:
    account = uuid.uuid4()

    new = await store.create(account)
    found = await store.get(new.token)
    await store.delete(new.token)

    assert found is not None
    assert (found.account_id, found.csrf_token, found.created_at) == (
        account,
        new.csrf_token,
        new.created_at,
    )
    assert await store.get(new.token) is None
    assert await store.get("never-issued") is None
    await store.delete(new.token)


async def test_use_slides_the_expiry(redis: Redis, namespace: str) -> None:
    store = SessionStore(redis, namespace, idle_seconds=1.0)
    new = await store.create(uuid.uuid4())

    for _ in range(4):
        await asyncio.sleep(0.4)
        assert await store.get(new.token) is not None
    await asyncio.sleep(1.3)

    assert await store.get(new.token) is None


async def test_ending_every_session_can_keep_the_current_one(store: SessionStore) -> None:
    account, other_account = uuid.uuid4(), uuid.uuid4()
    current, *others = [await store.create(account) for _ in range(3)]
    bystander = await store.create(other_account)

    ended = await store.delete_all(account, keep=current.token)

    assert ended == 2
    assert await store.get(current.token) is not None
    assert [await store.get(s.token) for s in others] == [None, None]
    assert await store.get(bystander.token) is not None
    assert await store.delete_all(account) == 1
    assert await store.get(current.token) is None
    assert await store.delete_all(account) == 0


async def test_two_gateways_share_sessions(redis_url: str, namespace: str) -> None:
    one, two = make_redis(redis_url), make_redis(redis_url)
    try:
        gateway_one = SessionStore(one, namespace, IDLE_SECONDS)
        gateway_two = SessionStore(two, namespace, IDLE_SECONDS)
        account = uuid.uuid4()

        first = await gateway_one.create(account)
        second = await gateway_two.create(account)
        seen = await gateway_two.get(first.token)
        await gateway_two.delete(first.token)
        gone_on_one = await gateway_one.get(first.token)
        ended = await gateway_one.delete_all(account)
        second_on_two = await gateway_two.get(second.token)
    finally:
        await one.aclose()
        await two.aclose()

    assert seen is not None
    assert seen.account_id == account
    assert gone_on_one is None
    assert ended == 1
    assert second_on_two is None


async def test_the_limiter_makes_an_account_wait_and_forgets_on_success(
    redis: Redis, namespace: str
) -> None:
    limits = limiter(redis, namespace, window_seconds=30)

    for _ in range(3):
        assert await limits.check(EMAIL, ADDRESS) is None
        await limits.failed(EMAIL, ADDRESS)
    wait = await limits.check(EMAIL, ADDRESS)
    from_elsewhere = await limits.check(EMAIL, "198.51.100.1")
    other_account = await limits.check("someone@example.org", ADDRESS)
    await limits.succeeded(EMAIL)

    assert wait is not None
    assert 0 < wait <= 30
    assert from_elsewhere is not None
    assert other_account is None
    assert await limits.check(EMAIL, ADDRESS) is None


async def test_the_limiter_makes_an_address_wait_across_accounts(
    redis: Redis, namespace: str
) -> None:
    limits = limiter(redis, namespace, window_seconds=30)

    for n in range(5):
        await limits.failed(f"user{n}@example.org", ADDRESS)
    wait = await limits.check("fresh@example.org", ADDRESS)
    await limits.succeeded("fresh@example.org")

    assert wait is not None
    assert 0 < wait <= 30
    assert await limits.check("fresh@example.org", ADDRESS) is not None
    assert await limits.check("fresh@example.org", "198.51.100.1") is None


async def test_a_window_ends(redis: Redis, namespace: str) -> None:
    limits = limiter(redis, namespace, window_seconds=0.5)

    for _ in range(3):
        await limits.failed(EMAIL, ADDRESS)
    assert await limits.check(EMAIL, ADDRESS) is not None
    await asyncio.sleep(0.7)

    assert await limits.check(EMAIL, ADDRESS) is None


async def test_failures_counted_at_once_on_many_gateways_all_count(
    redis_url: str, namespace: str
) -> None:
    clients = [make_redis(redis_url) for _ in range(4)]
    try:
        limiters = [limiter(client, namespace) for client in clients]
        await asyncio.gather(*(lim.failed(EMAIL, f"10.0.0.{n}") for n, lim in enumerate(limiters)))
        wait = await limiters[0].check(EMAIL, "10.0.0.99")
    finally:
        for client in clients:
            await client.aclose()

    assert wait is not None


async def test_no_email_address_or_token_sits_in_redis_in_clear(
    redis: Redis, store: SessionStore, namespace: str
) -> None:
    account = uuid.uuid4()
    new = await store.create(account)
    await limiter(redis, namespace).failed(EMAIL, ADDRESS)

    keys = await keys_of(redis, namespace)
    values = [
        str(await redis.hgetall(key)) if (await redis.type(key)) == b"hash" else key for key in keys
    ]
    stored = " ".join(keys + values)

    assert keys
    assert all(key.startswith(f"{namespace}:") for key in keys)
    for secret in (new.token, EMAIL, "lovelace", ADDRESS):
        assert secret not in stored


async def test_a_configured_redis_that_does_not_answer_is_refused(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(_env_file=None, REDIS_URL=url)

    with pytest.raises(ServiceUnavailable, match=r"REDIS_URL=.* does not answer PING"):
        await ensure_redis(settings, tmp_path)


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
async def test_a_local_redis_keeps_nothing_and_stops(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path, free_port())
    await server.start()
    try:
        client = make_redis(server.url)
        try:
            config = {
                **await client.config_get("save"),
                **await client.config_get("appendonly"),
            }
        finally:
            await client.aclose()
    finally:
        server.stop()

    assert config == {"save": "", "appendonly": "no"}
    assert not await redis_answers(server.url, timeout=1)
    assert not server.pid_file.exists()
