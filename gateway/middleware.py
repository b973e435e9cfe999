"""ASGI middleware: correlation ids on every request, and shedding load the pipeline cannot
take in time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass
class LoadShedder:
    """Decides, per request, whether this gateway process takes it or answers 503 at once.

    Two limits. A hard one: past `limit` requests in flight, every request is refused. And
    one that follows the pipeline: a write (a request that waits for its decision) that
    takes longer than `latency_target` on average means requests queue faster than they are
    decided, so past `floor` requests in flight new ones are refused until writes are
    answered within the target again. Under a rush the excess gets a quick "try again"
    instead of an answer that comes too late, and the requests taken keep their latency."""

    limit: int
    latency_target: float
    floor: int = 128
    smoothing: float = 0.05
    in_flight: int = 0
    write_latency: float = 0.0
    """Moving average of the seconds a write took to be answered."""
    shed: int = 0
    _next_report: float = 0.0

    def admit(self) -> bool:
        if self.in_flight >= self.limit or (
            self.in_flight > self.floor and self.write_latency > self.latency_target
        ):
            self.shed += 1
            now = time.monotonic()
            if now >= self._next_report:
                self._next_report = now + 1.0
                log.warning(
                    "shedding_load",
                    shed=self.shed,
                    in_flight=self.in_flight,
                    write_latency_ms=round(self.write_latency * 1000),
                )
                self.shed = 0
            return False
        return True

    def answered_write(self, seconds: float) -> None:
        self.write_latency += self.smoothing * (seconds - self.write_latency)


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def shed_load_middleware(limit: int, latency_target: float = 0.25) -> Callable[[ASGIApp], ASGIApp]:
    """Answers 503 with Retry-After when a `LoadShedder` with these limits says so; /health
    is always answered.

    Litestar builds a middleware once per route handler, so the shedder lives here, shared
    by every route the returned factory wraps: its limits are per gateway process."""
    shedder = LoadShedder(limit, latency_target)

    def build(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["path"].startswith("/health"):
                await app(scope, receive, send)
                return
            if not shedder.admit():
                await _overloaded(scope, send)
                return
            shedder.in_flight += 1
            started = time.monotonic()
            try:
                await app(scope, receive, send)
            finally:
                shedder.in_flight -= 1
                if scope["method"] in WRITES:
                    shedder.answered_write(time.monotonic() - started)

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
