"""The partner circuit breaker on a fake clock: when it opens, when it lets a probe through,
and who waits in `ready()` meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from consumers.lodging.circuit import CircuitBreaker, CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def state(circuit: CircuitBreaker) -> CircuitState:
    """The state now (a call, so mypy does not carry an earlier check over)."""
    return circuit.state


def breaker(clock: FakeClock, threshold: int = 3, open_seconds: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, open_seconds=open_seconds, clock=clock)


async def opened(clock: FakeClock, **kwargs: float) -> CircuitBreaker:
    circuit = breaker(clock, threshold=1, **kwargs)
    await circuit.ready()
    circuit.record_failure()
    assert state(circuit) is CircuitState.OPEN
    return circuit


async def still_waiting(waiter: asyncio.Task[None], seconds: float = 0.05) -> bool:
    await asyncio.sleep(seconds)
    return not waiter.done()


async def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = FakeClock()
    circuit = breaker(clock, threshold=3)

    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure()
    circuit.record_failure()
    assert state(circuit) is CircuitState.CLOSED, "a success starts the count again"

    circuit.record_failure()
    assert state(circuit) is CircuitState.OPEN


async def test_it_half_opens_once_the_open_time_has_passed() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)

    clock.advance(29.9)
    assert state(circuit) is CircuitState.OPEN
    clock.advance(0.1)
    assert state(circuit) is CircuitState.HALF_OPEN


async def test_a_successful_probe_closes_it() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)
    clock.advance(30)

    await asyncio.wait_for(circuit.ready(), 1)
    circuit.record_success()

    assert state(circuit) is CircuitState.CLOSED
    await asyncio.wait_for(circuit.ready(), 1)


async def test_a_failed_probe_opens_it_again_for_the_whole_open_time() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)
    clock.advance(30)

    await asyncio.wait_for(circuit.ready(), 1)
    circuit.record_failure()

    assert state(circuit) is CircuitState.OPEN
    clock.advance(29)
    assert state(circuit) is CircuitState.OPEN
    clock.advance(1)
    assert state(circuit) is CircuitState.HALF_OPEN


async def test_no_call_goes_while_it_is_open() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)

    waiter = asyncio.create_task(circuit.ready())
    assert await still_waiting(waiter)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_waiter_goes_when_the_open_time_has_passed_on_the_clock() -> None:
    """The waiter sleeps until the reopen time the clock gives, then asks the clock again:
    with the fake clock standing still it keeps waiting; once moved on, it goes."""
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=0.02)

    waiter = asyncio.create_task(circuit.ready())
    assert await still_waiting(waiter, 0.1), "the clock has not moved: still open"

    clock.advance(0.02)
    await asyncio.wait_for(waiter, 1)
    assert state(circuit) is CircuitState.HALF_OPEN


async def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)
    clock.advance(30)

    probe = asyncio.create_task(circuit.ready())
    others = [asyncio.create_task(circuit.ready()) for _ in range(3)]
    await asyncio.wait_for(probe, 1)
    assert all([await still_waiting(other) for other in others])

    circuit.record_success()
    await asyncio.wait_for(asyncio.gather(*others), 1)
    assert state(circuit) is CircuitState.CLOSED


async def test_callers_waiting_on_a_failed_probe_wait_for_the_next_open_time() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)
    clock.advance(30)
    await circuit.ready()
    other = asyncio.create_task(circuit.ready())
    assert await still_waiting(other)

    circuit.record_failure()

    assert await still_waiting(other), "open again: nobody goes"
    assert state(circuit) is CircuitState.OPEN
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other


async def test_an_abandoned_probe_lets_the_next_caller_probe() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)
    clock.advance(30)
    await circuit.ready()
    next_probe = asyncio.create_task(circuit.ready())
    assert await still_waiting(next_probe)

    circuit.abandon()

    await asyncio.wait_for(next_probe, 1)
    assert state(circuit) is CircuitState.HALF_OPEN


async def test_failures_of_calls_sent_before_it_opened_do_not_extend_the_open_time() -> None:
    clock = FakeClock()
    circuit = await opened(clock, open_seconds=30)

    clock.advance(20)
    circuit.record_failure()
    clock.advance(10)

    assert state(circuit) is CircuitState.HALF_OPEN


def test_it_refuses_a_threshold_below_one() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0, open_seconds=1)
