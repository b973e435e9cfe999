"""What every part of the bench shares: its error, printing, percentiles, polling, the summary."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
BADGE = "STD"
REGISTRATION_PREFIX = "/api/v1/registrations/"
DECIDED = (201, 409)
ACCEPTED = (201, 202, 409)
"""Answers after which the registration must be decided in the end."""
POLL_INTERVAL = 0.05

T = TypeVar("T")


class BenchError(RuntimeError):
    """The bench cannot go on; the message says why."""


def section(title: str) -> None:
    print(f"\n{title}", flush=True)


def line(label: str, text: str) -> None:
    print(f"  {label:<14}{text}", flush=True)


def mismatch(text: str) -> None:
    print(f"  !!! MISMATCH: {text}", flush=True)


def errors(text: str) -> None:
    print(f"  !!! ERRORS: {text}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_summary(values: Sequence[float]) -> str:
    if not values:
        return "no answers"
    ordered = sorted(values)
    return "  ".join(
        [f"p{p} {ms(percentile(ordered, p))}" for p in (50, 90, 99)] + [f"max {ms(ordered[-1])}"]
    )


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], *, within: float, what: str
) -> T:
    """Poll `probe` until `until(value)` holds; BenchError with the last value at the deadline."""
    deadline = time.perf_counter() + within
    value = await probe()
    while not until(value):
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {within:g} s waiting for {what}; last: {value!r}")
        await asyncio.sleep(POLL_INTERVAL)
        value = await probe()
    return value


@dataclass(frozen=True)
class Figure:
    name: str
    target: str
    measured: str
    met: bool | None
    """None: a figure shown for information, with no target."""


@dataclass
class Summary:
    """The speed figures, each against its target, printed as a table at the end."""

    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, target: str, measured: str, met: bool | None = None) -> None:
        self.figures.append(Figure(name, target, measured, met))

    def print(self) -> None:
        section("Summary")
        if not self.figures:
            line("", "no figures (no phase ran to its end)")
            return
        widths = [
            max(len(row[i]) for row in [("figure", "target", "measured"), *self._rows()])
            for i in range(3)
        ]
        header = ("figure", "target", "measured", "")
        for name, target, measured, verdict in [header, *self._verdicts()]:
            print(
                f"  {name:<{widths[0]}}  {target:<{widths[1]}}  {measured:<{widths[2]}}  {verdict}",
                flush=True,
            )
        missed = [f.name for f in self.figures if f.met is False]
        met = sum(1 for f in self.figures if f.met)
        line(
            "verdict",
            f"{met} met, {len(missed)} not met" + (f": {', '.join(missed)}" if missed else ""),
        )

    def _rows(self) -> list[tuple[str, str, str]]:
        return [(f.name, f.target, f.measured) for f in self.figures]

    def _verdicts(self) -> list[tuple[str, str, str, str]]:
        verdict = {True: "met", False: "NOT MET", None: ""}
        return [(f.name, f.target, f.measured, verdict[f.met]) for f in self.figures]
