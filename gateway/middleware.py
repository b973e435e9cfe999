"""ASGI middleware: correlation ids on every request, and shedding load the pipeline cannot
take in time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
from gateway.metrics import METRICS_PATH
from gateway.problems import PROBLEM_BASE, PROBLEM_JSON
from infra.metrics import HTTP_SHED, route_label

log = structlog.get_logger(__name__)

UNSHED = ("/health", METRICS_PATH)
"""Paths answered whatever the load: a process under load is when they matter most."""


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

    Requests in flight = throughput x latency (Little's law). So that the requests taken are
    answered within about `latency_target`, at most `throughput x latency_target` of them
    are let in at once, the throughput being the rate this process answered requests at over
    the last second; never fewer than `floor` (a rush that starts from idle is let in while
    the rate is measured), never more than the hard `limit`. Past capacity the excess gets a
    quick "try again" instead of a queue that makes every answer late."""

    limit: int
    latency_target: float
    floor: int = 200
    window: float = 1.0
    in_flight: int = 0
    rate: float = 0.0
    """Requests answered per second over the last window."""
    _answered: int = 0
    _window_start: float = field(default_factory=time.monotonic)
    _shed: int = 0
    _next_report: float = 0.0

    @property
    def allowed(self) -> int:
        return max(self.floor, min(self.limit, int(self.rate * self.latency_target)))

    def admit(self) -> bool:
        if self.in_flight < min(self.limit, self.allowed):
            return True
        self._shed += 1
        now = time.monotonic()
        if now >= self._next_report:
            self._next_report = now + 1.0
            log.warning(
                "shedding_load", shed=self._shed, in_flight=self.in_flight, rate=round(self.rate)
            )
            self._shed = 0
        return False

    def answered(self, now: float) -> None:
        self._answered += 1
        elapsed = now - self._window_start
        if elapsed >= self.window:
            self.rate = self._answered / elapsed
            self._answered = 0
            self._window_start = now


def shed_load_middleware(
    limit: int, latency_target: float = 0.2, floor: int = 200
) -> Callable[[ASGIApp], ASGIApp]:
    """Answers 503 with Retry-After when a `LoadShedder` with these limits says so; /health
    and /metrics are always answered.

    Litestar builds a middleware once per route handler, so the shedder lives here, shared
    by every route the returned factory wraps: its limits are per gateway process."""
    shedder = LoadShedder(limit, latency_target, floor)

    def build(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["path"].startswith(UNSHED):
                await app(scope, receive, send)
                return
            if not shedder.admit():
                HTTP_SHED.labels(route_label(scope.get("path_template"))).inc()
                await _overloaded(scope, send)
                return
            shedder.in_flight += 1
            try:
                await app(scope, receive, send)
            finally:
                shedder.in_flight -= 1
                shedder.answered(time.monotonic())

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
