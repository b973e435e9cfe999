"""ASGI middleware: correlation ids on every request, and shedding load past a limit."""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from gateway.correlation import CORRELATION_HEADER, correlation_from
from gateway.problems import PROBLEM_BASE, PROBLEM_JSON

log = structlog.get_logger(__name__)


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    """Takes the caller's X-Correlation-ID (or makes one), binds it to every log line of the
    request, and sends it back on the response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode(), b"")
        value = correlation_from(raw.decode("latin-1"))
        scope.setdefault("state", {})["correlation_id"] = value
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=str(value))

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.lower().encode(), str(value).encode()))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_header)

    return middleware


def shed_load_middleware(limit: int) -> Callable[[ASGIApp], ASGIApp]:
    """Past `limit` requests in flight in this process, answer 503 with Retry-After at once
    instead of queueing: under a rush a quick "try again" beats an answer that comes too late.

    Litestar builds a middleware once per route handler, so the count lives here, shared by
    every route the returned factory wraps: the limit is one per gateway process."""
    in_flight = 0

    def build(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal in_flight
            if scope["type"] != ScopeType.HTTP or scope["path"].startswith("/health"):
                await app(scope, receive, send)
                return
            if in_flight >= limit:
                log.warning("shedding_load", in_flight=in_flight, path=scope["path"])
                await _overloaded(scope, send)
                return
            in_flight += 1
            try:
                await app(scope, receive, send)
            finally:
                in_flight -= 1

        return middleware

    return build


async def _overloaded(scope: Scope, send: Send) -> None:
    body = json.dumps(
        {
            "type": PROBLEM_BASE + "overloaded",
            "title": "Too busy right now",
            "status": 503,
            "detail": "Nothing was applied. Try again in a moment with the same Idempotency-Key.",
            "instance": scope["path"],
        }
    ).encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
