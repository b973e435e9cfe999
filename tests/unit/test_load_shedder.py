"""The gateway's load shedder: the hard limit, and the limit that follows write latency."""

from __future__ import annotations

from gateway.middleware import LoadShedder


def test_past_the_hard_limit_everything_is_refused() -> None:
    shedder = LoadShedder(limit=3, latency_target=1.0, floor=10)
    shedder.in_flight = 3
    assert not shedder.admit()
    shedder.in_flight = 2
    assert shedder.admit()


def test_slow_writes_refuse_new_requests_only_past_the_floor() -> None:
    shedder = LoadShedder(limit=1000, latency_target=0.2, floor=4, smoothing=1.0)
    shedder.answered_write(0.9)
    shedder.in_flight = 4
    assert shedder.admit(), "at the floor a request is taken however slow writes are"
    shedder.in_flight = 5
    assert not shedder.admit()


def test_shedding_stops_once_writes_are_answered_in_time_again() -> None:
    shedder = LoadShedder(limit=1000, latency_target=0.2, floor=4, smoothing=0.5)
    shedder.in_flight = 50
    shedder.answered_write(1.0)
    assert not shedder.admit()
    for _ in range(10):
        shedder.answered_write(0.05)
    assert shedder.write_latency < 0.2
    assert shedder.admit()
