"""Misbehaviour on demand: latency, errors, timeouts, outages, duplicated and reordered
events, set from settings at start and changed through the admin API.

Each kind of decision draws from its own generator seeded from `BUTTERFLY_PARTNER_SEED`, so
a test that sets the same faults sees the same sequence of misbehaviour.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Literal

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
from pydantic import BaseModel, ConfigDict, Field

from infra.settings import Settings


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=10.0, ge=0, le=300)
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    reorder_rate: float = Field(default=0.0, ge=0, le=1)
    reorder_delay_seconds: float = Field(default=1.0, ge=0, le=3600)


class FaultUpdate(BaseModel):
    """What `POST /partner/admin/faults` takes: any subset of the faults; `outage_seconds`
    starts an outage now (0 ends one); `seed` restarts the generators."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0, le=60_000)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_seconds: float | None = Field(default=None, ge=0, le=300)
    duplicate_rate: float | None = Field(default=None, ge=0, le=1)
    reorder_rate: float | None = Field(default=None, ge=0, le=1)
    reorder_delay_seconds: float | None = Field(default=None, ge=0, le=3600)
    outage_seconds: float | None = Field(default=None, ge=0, le=3600)
    seed: int | None = None


class Faults:
    """The faults in force, shared by the HTTP middleware and the event publisher."""

    def __init__(self, config: FaultConfig, *, seed: int, outage_seconds: float = 0.0) -> None:
        self.config = config
        self._seed(seed)
        self.outage_until = time.monotonic() + outage_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Faults:
        return cls(
            FaultConfig(
                latency_ms=settings.partner_latency_ms,
                error_rate=settings.partner_error_rate,
                timeout_rate=settings.partner_timeout_rate,
                timeout_seconds=settings.partner_timeout_seconds,
                duplicate_rate=settings.partner_duplicate_rate,
                reorder_rate=settings.partner_reorder_rate,
                reorder_delay_seconds=settings.partner_reorder_delay_seconds,
            ),
            seed=settings.partner_seed,
            outage_seconds=settings.partner_outage_seconds,
        )

    def _seed(self, seed: int) -> None:
        self.seed = seed
        self._requests = random.Random(f"{seed}:requests")
        self._events = random.Random(f"{seed}:events")

    def update(self, changes: FaultUpdate) -> None:
        given = changes.model_dump(exclude_none=True)
        outage = given.pop("outage_seconds", None)
        seed = given.pop("seed", None)
        self.config = self.config.model_copy(update=given)
        if outage is not None:
            self.outage_until = time.monotonic() + outage
        if seed is not None:
            self._seed(seed)

    def outage_left(self) -> float:
        return max(0.0, self.outage_until - time.monotonic())

    def as_json(self) -> dict[str, object]:
        return {
            **self.config.model_dump(),
            "outage_seconds_left": round(self.outage_left(), 3),
            "seed": self.seed,
        }

    def request_fate(self) -> Literal["error", "timeout"] | None:
        draw = self._requests.random()
        if draw < self.config.error_rate:
            return "error"
        if draw < self.config.error_rate + self.config.timeout_rate:
            return "timeout"
        return None

    def duplicate_event(self) -> bool:
        return self._events.random() < self.config.duplicate_rate

    def hold_event_back(self) -> bool:
        return self._events.random() < self.config.reorder_rate


class FaultInjection:
    """ASGI middleware over the partner API (never the admin API, which turns faults off).

    A timeout lets the request take effect and then withholds its answer: the caller cannot
    tell whether its hold happened, which is what its idempotency key is for.
    """

    def __init__(self, app: ASGIApp, faults: Callable[[], Faults]) -> None:
        """`faults` answers the process's one `Faults`: Litestar deep-copies a router's
        middleware arguments when it registers the router, so an object passed directly
        would be a copy the admin API never changes."""
        self.app = app
        self._faults = faults

    @property
    def faults(self) -> Faults:
        return self._faults()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        config = self.faults.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        outage = self.faults.outage_left()
        if outage > 0:
            await _answer(send, 503, "outage", "the bureau is down", retry_after=outage)
            return
        fate = self.faults.request_fate()
        if fate == "error":
            await _answer(send, 503, "unavailable", "the bureau could not answer, try again")
            return
        if fate == "timeout":

            async def withhold(message: Message) -> None:
                return None

            await self.app(scope, receive, withhold)
            await asyncio.sleep(config.timeout_seconds)
            await _answer(send, 504, "timeout", "the bureau did not answer in time")
            return
        await self.app(scope, receive, send)


async def _answer(
    send: Send, status: int, code: str, message: str, *, retry_after: float | None = None
) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
