"""The gateway's ASGI middleware on its own: load shedding and correlation ids."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from gateway.correlation import CORRELATION_HEADER
from gateway.middleware import correlation_middleware, shed_load_middleware


def http_scope(path: str = "/api/v1/conventions", headers: list[Any] | None = None) -> Any:
    return {"type": "http", "path": path, "headers": headers or [], "method": "POST"}


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])


async def receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_past_the_limit_requests_get_503_at_once_and_health_still_answers() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = shed_load_middleware(1)(slow_app)
    first, second, health = Recorder(), Recorder(), Recorder()
    running = asyncio.create_task(app(http_scope(), receive, first))
    await asyncio.sleep(0)
    await asyncio.wait_for(app(http_scope(), receive, second), 5)
    assert second.status == 503
    assert (b"retry-after", b"1") in second.messages[0]["headers"]
    assert json.loads(second.messages[1]["body"])["type"].endswith("/overloaded")
    health_task = asyncio.create_task(app(http_scope("/health"), receive, health))
    release.set()
    await asyncio.wait_for(asyncio.gather(running, health_task), 5)
    assert first.status == 200
    assert health.status == 200
    third = Recorder()
    await app(http_scope(), receive, third)
    assert third.status == 200


async def test_the_correlation_id_is_taken_or_made_and_sent_back() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert isinstance(scope["state"]["correlation_id"], uuid.UUID)
        await send({"type": "http.response.start", "status": 204, "headers": []})

    given = str(uuid.uuid4())
    header = CORRELATION_HEADER.lower().encode()
    kept, made = Recorder(), Recorder()
    await correlation_middleware(app)(http_scope(headers=[(header, given.encode())]), receive, kept)
    await correlation_middleware(app)(http_scope(headers=[(header, b"junk")]), receive, made)
    assert (header, given.encode()) in kept.messages[0]["headers"]
    made_id = dict(made.messages[0]["headers"])[header].decode()
    assert uuid.UUID(made_id) != uuid.UUID(given)


async def test_the_limit_is_shared_by_every_route_the_factory_wraps() -> None:
    """Litestar builds route middleware once per route handler: the count must not be."""
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    factory = shed_load_middleware(1)
    register, listing = factory(slow_app), factory(slow_app)
    first, other = Recorder(), Recorder()
    held = asyncio.create_task(
        register(http_scope("/api/v1/conventions/x/registrations"), receive, first)
    )
    await asyncio.sleep(0)
    await listing(http_scope("/api/v1/conventions"), receive, other)
    assert other.status == 503
    release.set()
    await asyncio.wait_for(held, 5)
    assert first.status == 200
