"""A circuit breaker in front of the lodging partner.

When the partner is down, every room request due would otherwise keep calling it, each with
its own backoff: hundreds of calls a second that only add to its trouble and fill our logs.
After `failure_threshold` consecutive failures the circuit opens and no call goes out; after
`open_seconds` one probe call is let through (half-open). The probe's answer closes the
circuit again, or keeps it open for another `open_seconds`.

Callers wait in `ready()` rather than failing fast: a process manager's steps have nothing
better to do than wait for the partner, and waiting here keeps their retries from spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from enum import StrEnum

import structlog

from infra.metrics import PARTNER_CIRCUIT_STATE

log = structlog.get_logger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


GAUGE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
"""The state as the circuit gauge reports it: the higher, the less gets through."""

_TRANSITION_EVENTS = {
    CircuitState.HALF_OPEN: "partner_circuit_half_open",
    CircuitState.CLOSED: "partner_circuit_closed",
}


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures; open → half-open once
    `open_seconds` have passed; half-open lets exactly one probe through, whose success
    closes the circuit and whose failure opens it again.

    Every caller that passed `ready()` must report its call with `record_success()` or
    `record_failure()`, or with `abandon()` when it gave up without an answer (cancelled),
    so a probe that never finished does not keep the circuit half-open for ever.

    Its state is the `butterfly_lodging_partner_circuit_state` gauge (one breaker per
    process: the lodging role's)."""

    def __init__(
        self,
        failure_threshold: int,
        open_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if open_seconds < 0:
            raise ValueError("open_seconds must not be negative")
        self._threshold = failure_threshold
        self._open_seconds = open_seconds
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._changed = asyncio.Event()
        PARTNER_CIRCUIT_STATE.set(GAUGE_VALUES[self._state])

    @property
    def state(self) -> CircuitState:
        self._half_open_if_due()
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed."""
        return self._failures

    async def ready(self) -> None:
        """Wait until a call may go out. In half-open state only the first caller returns
        (it is the probe); the others wait for the probe's outcome."""
        while True:
            self._half_open_if_due()
            if self._state is CircuitState.CLOSED:
                return
            if self._state is CircuitState.HALF_OPEN and not self._probing:
                self._probing = True
                return
            changed = self._changed
            wait = self._reopens_in() if self._state is CircuitState.OPEN else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=wait)

    def record_success(self) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            self._enter(CircuitState.CLOSED)
        self._failures = 0

    def record_failure(self) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            self._open()
            return
        if self._state is CircuitState.OPEN:
            return  # a call that went out before the circuit opened
        self._failures += 1
        if self._failures >= self._threshold:
            self._open()

    def abandon(self) -> None:
        """A call that passed `ready()` ended without an answer either way: if it was the
        probe, the next caller probes instead."""
        if self._state is CircuitState.HALF_OPEN and self._probing:
            self._probing = False
            self._notify()

    def _reopens_in(self) -> float:
        return max(0.0, self._opened_at + self._open_seconds - self._clock())

    def _half_open_if_due(self) -> None:
        if self._state is CircuitState.OPEN and self._reopens_in() <= 0:
            self._probing = False
            self._enter(CircuitState.HALF_OPEN)

    def _open(self) -> None:
        self._opened_at = self._clock()
        failures, self._failures = self._failures, 0
        self._enter(CircuitState.OPEN, failures=failures, open_seconds=self._open_seconds)

    def _enter(self, state: CircuitState, **details: object) -> None:
        if state is self._state:
            return
        self._state = state
        PARTNER_CIRCUIT_STATE.set(GAUGE_VALUES[state])
        if state is CircuitState.OPEN:
            log.warning("partner_circuit_opened", **details)
        else:
            log.info(_TRANSITION_EVENTS[state], **details)
        self._notify()

    def _notify(self) -> None:
        """Wake every waiter; later waiters wait on a fresh event."""
        self._changed.set()
        self._changed = asyncio.Event()
