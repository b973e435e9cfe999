"""Phases 1 to 4: waiting mode (Butterfly, then the rival under the same load), the async
burst, and the overload. Every registration is a fresh e-mail, the quota above any demand."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass

from tests.perf.common import (
    ACCEPTED,
    POLL_INTERVAL,
    errors,
    latency_summary,
    line,
    mismatch,
    ms,
    percentile,
    section,
)
from tests.perf.loadgen import ClientJob, LoadResult, Shot, load_result, run_clients, split
from tests.perf.stack import CpuMeter, cpu_report
from tests.perf.targets import ReadModel, Target
from tests.perf.wrk import run_wrk

QUOTA = 10_000_000
"""Above any demand: phases 1 to 4 measure throughput, not the sold-out rule."""
SETTLE_TIMEOUT = 60.0
"""How long the bench waits for accepted registrations to be decided before it calls them lost."""


@dataclass(frozen=True)
class ClosedLoad:
    """How the closed-loop load is sent: by wrk when it could be had, else by rawhttp."""

    wrk: str | None
    connections: int
    warmup: float
    clients: int
    """rawhttp client processes, when wrk is missing."""

    @property
    def driver(self) -> str:
        return "wrk" if self.wrk else "rawhttp"


@dataclass(frozen=True)
class WaitFigures:
    decided_per_s: float
    p99: float
    cpu_ms: float
    """CPU milliseconds per decided registration, over the server's processes."""


@dataclass(frozen=True)
class AsyncFigures:
    intake_per_s: float
    p99: float
    settled_after: float | None
    """Seconds from the burst's end until every accepted registration read as decided; None
    when that did not happen within SETTLE_TIMEOUT."""
    cpu_ms: float


@dataclass(frozen=True)
class OverloadFigures:
    rate: float
    shed_share: float
    without_retry_after: int
    accepted_p99: float
    lost: int


async def closed_load(
    target: Target,
    load: ClosedLoad,
    path: str,
    seconds: float,
    nonce: str,
    abort: threading.Event,
    *,
    respond_async: bool = False,
) -> LoadResult:
    if load.wrk:
        return await asyncio.to_thread(
            run_wrk,
            load.wrk,
            target.base_url + path,
            load.connections,
            seconds,
            nonce,
            respond_async=respond_async,
        )
    headers = (("Prefer", "respond-async"),) if respond_async else ()
    jobs = [
        ClientJob(
            target.base_url,
            path,
            (),
            load.connections // load.clients + (1 if w < load.connections % load.clients else 0),
            0.0,
            seconds,
            f"w-{nonce}-{w}",
            headers,
        )
        for w in range(load.clients)
    ]
    return load_result(await asyncio.to_thread(run_clients, jobs, abort))


def answers_line(result: LoadResult) -> None:
    s = result.statuses
    other = sum(n for status, n in s.items() if status not in (0, 201, 202, 409) and status < 500)
    line(
        "answers",
        f"201 confirmed {s[201]}, 409 rejected {s[409]}, 202 pending {s[202]}, "
        f"5xx {result.server_errors} (503 {s[503]}), no answer {s[0]}, other {other}",
    )
    if result.server_errors or s[0] or other:
        errors(f"{result.server_errors + s[0] + other} requests not answered 201/202/409")


def latency_line(result: LoadResult) -> None:
    p = result.latency
    line(
        "POST latency",
        f"p50 {ms(p['p50'])}  p90 {ms(p['p90'])}  p99 {ms(p['p99'])}  max {ms(p['max'])}",
    )


async def wait_phase(
    target: Target, load: ClosedLoad, seconds: float, abort: threading.Event, about: str = ""
) -> WaitFigures:
    section(
        f"Waiting mode, {target.name}: closed loop, {load.connections} connections, "
        f"{seconds:g} s after a {load.warmup:g} s warm-up, every POST waits for its decision "
        f"({load.driver})"
    )
    if about:
        line("server", about)
    nonce = secrets.token_hex(4)
    convention_id = await target.create(f"Wait {nonce}", QUOTA)
    path = f"/api/v1/conventions/{convention_id}/registrations"
    if load.warmup > 0:
        warm = await closed_load(target, load, path, load.warmup, f"{nonce}w", abort)
        line("warm-up", f"{warm.requests} requests = {warm.requests / warm.seconds:.0f} req/s")
    meter = CpuMeter.start(target.processes())
    result = await closed_load(target, load, path, seconds, nonce, abort)
    spent = meter.spent()
    decided = result.count(201, 409)
    rate = decided / result.seconds
    line(
        "decided",
        f"{decided} registrations in {result.seconds:.2f} s = {rate:.0f} decided/s "
        f"({result.requests / result.seconds:.0f} answers/s)",
    )
    answers_line(result)
    latency_line(result)
    cpu = cpu_report(spent, (result.driver, result.cpu), decided)
    return WaitFigures(rate, result.latency["p99"], cpu)


async def async_phase(
    target: Target,
    read_model: ReadModel,
    load: ClosedLoad,
    seconds: float,
    abort: threading.Event,
) -> AsyncFigures:
    section(
        f"Async mode, {target.name}: a {seconds:g} s burst of POSTs with Prefer: respond-async "
        f"from {load.connections} connections ({load.driver}), then the time until every "
        "accepted registration reads as decided in the read database"
    )
    nonce = secrets.token_hex(4)
    convention_id = await target.create(f"Async {nonce}", QUOTA)
    path = f"/api/v1/conventions/{convention_id}/registrations"
    meter = CpuMeter.start(target.processes())
    result = await closed_load(target, load, path, seconds, nonce, abort, respond_async=True)
    burst_end = time.perf_counter()
    accepted = result.count(*ACCEPTED)
    intake = accepted / result.seconds
    line("intake", f"{accepted} accepted in {result.seconds:.2f} s = {intake:.0f} req/s")
    answers_line(result)
    latency_line(result)
    settled_after, counts = await _settle(read_model, convention_id, accepted, burst_end)
    spent = meter.spent()
    listed = sum(counts.values())
    if settled_after is None:
        mismatch(
            f"{SETTLE_TIMEOUT:g} s after the burst: {listed - counts['pending']} decided and "
            f"{counts['pending']} pending of {accepted} accepted"
        )
    else:
        line(
            "decided",
            f"every accepted registration readable as decided {settled_after:.2f} s after the "
            f"burst's end ({listed} in the read model: {accepted} accepted + "
            f"{listed - accepted} in flight as the load stopped)",
        )
    cpu = cpu_report(spent, (result.driver, result.cpu), accepted)
    return AsyncFigures(intake, result.latency["p99"], settled_after, cpu)


async def _settle(
    read_model: ReadModel, convention_id: str, accepted: int, since: float
) -> tuple[float | None, Counter[str]]:
    """Seconds from `since` until the read model holds at least `accepted` registrations of
    the convention and none pending (None past SETTLE_TIMEOUT), and its last counts."""
    while True:
        counts = await read_model.statuses(convention_id)
        now = time.perf_counter()
        if counts["pending"] == 0 and sum(counts.values()) >= accepted:
            return now - since, counts
        if now - since > SETTLE_TIMEOUT:
            return None, counts
        await asyncio.sleep(POLL_INTERVAL)


async def overload_phase(
    target: Target,
    read_model: ReadModel,
    rate: float,
    seconds: float,
    connections: int,
    clients: int,
    abort: threading.Event,
) -> OverloadFigures:
    total = round(rate * seconds)
    section(
        f"Overload, {target.name}: open loop at {rate:.0f} req/s for {seconds:g} s ({total} "
        f"waiting POSTs on a fixed timetable, up to {connections} connections, rawhttp in "
        f"{clients} process(es))"
    )
    nonce = secrets.token_hex(4)
    convention_id = await target.create(f"Overload {nonce}", QUOTA)
    path = f"/api/v1/conventions/{convention_id}/registrations"
    shots = [
        Shot(i, f"over-{nonce}-{i}@bench.example", "Bench User", f"over-{nonce}-{i}")
        for i in range(total)
    ]
    run = await asyncio.to_thread(
        run_clients, split(target.base_url, path, shots, clients, connections, rate), abort
    )
    answers = run.answers
    t0 = min(a.scheduled for a in answers)
    statuses = Counter(a.status for a in answers)
    send_lag = sorted(a.sent - a.scheduled for a in answers)
    last_sent = max(a.sent for a in answers)
    line(
        "sent",
        f"{total} in {last_sent - t0:.2f} s = {total / max(last_sent - t0, 1e-9):.0f} req/s "
        f"(the client's lag behind the timetable: p99 {ms(percentile(send_lag, 99))}, "
        f"max {ms(send_lag[-1])})",
    )
    line("answers", ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(statuses.items())))
    shed = statuses[503]
    without = sum(1 for a in answers if a.status == 503 and not a.detail)
    line(
        "shed",
        f"{shed / total:.1%} answered 503, "
        + ("each with Retry-After" if not without else f"{without} of them WITHOUT Retry-After"),
    )
    if without:
        mismatch(f"{without} answers 503 without Retry-After")
    accepted = [a for a in answers if a.status in ACCEPTED]
    line(
        "accepted",
        latency_summary([a.answered - a.scheduled for a in accepted])
        + "  (201/202/409, from the scheduled send time)",
    )
    if shed:
        line("503", latency_summary([a.answered - a.scheduled for a in answers if a.status == 503]))
    for text, count in Counter(
        f"{a.status} {a.detail}" for a in answers if a.status not in (*ACCEPTED, 503)
    ).most_common(5):
        errors(f"{count} x {text}")
    lost = await _lost(
        read_model, convention_id, {a.registration_id for a in accepted}, statuses[0]
    )
    ordered = sorted(a.answered - a.scheduled for a in accepted)
    return OverloadFigures(
        rate,
        shed / total,
        without,
        percentile(ordered, 99) if ordered else 0.0,
        lost,
    )


async def _lost(
    read_model: ReadModel, convention_id: str, accepted: set[str], unanswered: int
) -> int:
    """How many accepted registrations are not decided in the read model once it settles.
    Checks too that no request answered 503 was applied: past the accepted ones, the read
    model may only hold requests that got no answer."""
    started = time.perf_counter()
    settled_after, counts = await _settle(read_model, convention_id, len(accepted), started)
    decided = await read_model.decided(convention_id)
    lost = accepted - decided
    listed = sum(counts.values())
    if lost:
        mismatch(
            f"{len(lost)} of {len(accepted)} accepted registrations not decided in the read "
            f"model {SETTLE_TIMEOUT:g} s after the load (e.g. {sorted(lost)[:3]})"
        )
    else:
        line(
            "check",
            f"all {len(accepted)} accepted registrations decided in the read model "
            f"{settled_after or 0:.2f} s after the load (ok)",
        )
    if listed - len(accepted) > unanswered:
        mismatch(
            f"the read model lists {listed} registrations: {len(accepted)} accepted, "
            f"{unanswered} without an answer, so answers 503 were applied"
        )
    return len(lost)
