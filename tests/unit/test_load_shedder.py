"""The gateway's load shedder: a hard limit, and a limit that follows the answer rate."""

from __future__ import annotations

from gateway.middleware import LoadShedder


def test_past_the_hard_limit_everything_is_refused() -> None:
    shedder = LoadShedder(limit=3, latency_target=1.0, floor=10)
    shedder.in_flight = 3
    assert not shedder.admit()
    shedder.in_flight = 2
    assert shedder.admit()


def test_before_any_rate_is_known_the_floor_is_let_in() -> None:
    shedder = LoadShedder(limit=1000, latency_target=0.25, floor=4)
    shedder.in_flight = 3
    assert shedder.admit()
    shedder.in_flight = 4
    assert not shedder.admit()


def test_the_limit_is_what_the_process_answers_within_the_target() -> None:
    shedder = LoadShedder(limit=1000, latency_target=0.25, floor=4, window=1.0)
    start = shedder._window_start
    for i in range(800):
        shedder.answered(start + (i + 1) / 800)
    assert shedder.rate == 800
    assert shedder.allowed == int(shedder.rate * 0.25)
    shedder.in_flight = shedder.allowed - 1
    assert shedder.admit()
    shedder.in_flight = shedder.allowed
    assert not shedder.admit()
