"""The gates phase of `make bench`: the second rush of a convention's life, at the door
(docs/CHECKIN.md).

N free confirmed registrations each have a ticket (fetched, not timed). Then the rush: four
stations, each its own HTTP client with a bounded number of scans in flight, scan every
ticket once, and a tenth of the tickets a second time at another station, all shuffled.
Figures: scans per second, the latency of each scan (until its station knows the outcome: a
202 is polled at its `Location`), the answers by status, the CPU each process spent per scan,
and checks that exactly N registrations are checked in and that every ticket scanned twice
was answered once 201 and once 409. Then one station's offline queue: already checked-in
tickets, half of them scanned (offline) before their first scan, sent with `…/check-ins/sync`
in batches: how long the sync takes, and a check that exactly the earlier half superseded
the first scans (the summary's `conflicts`).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.perf.common import BADGE, BenchError, eventually, latency_summary, line, ms
from tests.perf.stack import CpuMeter, Stack, cpu_report, stack_processes
from tests.perf.targets import create_open_convention

STATIONS = ("gate-1", "gate-2", "gate-3", "gate-4")
IN_FLIGHT_PER_STATION = 16
DUPLICATE_SHARE = 0.10
OFFLINE_SCANS = 200
SYNC_BATCH = 100
SETUP_CONCURRENCY = 64
TICKET_CONCURRENCY = 32
POLL_SECONDS = 0.05
DECIDE_TIMEOUT = 60.0
READ_MODEL_TIMEOUT = 60.0


def staff_url(convention_id: str, tail: str = "") -> str:
    return f"/api/v1/staff/conventions/{convention_id}{tail}"


@dataclass
class Scan:
    """One scan sent, and what it was finally answered."""

    ticket: int
    station: str
    scan_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: int | None = None
    first_status: int | None = None
    scanned_at: datetime | None = None
    latency: float | None = None


@dataclass(frozen=True)
class GatesFigures:
    registrations: int
    scans: int
    duplicates: int
    elapsed: float
    scans_per_s: float
    latencies: list[float]
    statuses: Counter[str]
    polled: int
    crossed: int
    cpu_ms: float
    offline: int
    offline_earlier: int
    sync_seconds: float
    sync_statuses: Counter[str]


async def gates_phase(
    stack: Stack, admin: httpx.AsyncClient, count: int, seed: int | None = None
) -> GatesFigures:
    rng = random.Random(seed)
    convention_id = await create_open_convention(admin, "Gates bench", count)
    registrations = await _register(admin, convention_id, count)
    tokens = await _tickets(admin, registrations)
    scans = [Scan(n, rng.choice(STATIONS)) for n in range(count)]
    twice = rng.sample(range(count), round(count * DUPLICATE_SHARE))
    for n in twice:
        first = scans[n].station
        scans.append(Scan(n, rng.choice([s for s in STATIONS if s != first])))
    rng.shuffle(scans)
    line(
        "gates",
        f"{count} confirmed registrations with their tickets; {len(STATIONS)} stations, "
        f"{IN_FLIGHT_PER_STATION} scans in flight each: {len(scans)} scans "
        f"({len(twice)} tickets scanned again at another station), shuffled",
    )

    meter = CpuMeter.start(stack_processes(stack))
    own_cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _station(
                stack, convention_id, station, [s for s in scans if s.station == station], tokens
            )
            for station in STATIONS
        )
    )
    elapsed = time.perf_counter() - started
    spent = meter.spent()
    loadgen = ("httpx, the bench's process", time.process_time() - own_cpu)
    cpu_ms = cpu_report(spent, loadgen, len(scans), unit="scan")

    statuses = Counter(_status_name(s.status) for s in scans)
    polled = sum(1 for s in scans if s.first_status == 202)
    latencies = sorted(s.latency for s in scans if s.latency is not None)
    line("scans", f"{len(scans)} in {elapsed:.2f} s: {len(scans) / elapsed:,.0f} scans/s")
    line("latency", latency_summary(latencies) + " (until the station knows the outcome)")
    line(
        "answers",
        ", ".join(f"{name} {statuses[name]}" for name in ("201", "409", "422", "other"))
        + (f" ({polled} first answered 202, then polled)" if polled else ""),
    )
    crossed = await _check_rush(admin, convention_id, registrations, scans)
    offline, earlier, sync_seconds, sync_statuses = await _offline_sync(
        admin, convention_id, scans, tokens, crossed, rng
    )
    return GatesFigures(
        registrations=count,
        scans=len(scans),
        duplicates=len(twice),
        elapsed=elapsed,
        scans_per_s=len(scans) / elapsed,
        latencies=latencies,
        statuses=statuses,
        polled=polled,
        crossed=crossed,
        cpu_ms=cpu_ms,
        offline=offline,
        offline_earlier=earlier,
        sync_seconds=sync_seconds,
        sync_statuses=sync_statuses,
    )


def _utc(moment: datetime | None) -> datetime:
    """A scan's time as the gateway reads it: one without a zone is UTC."""
    if moment is None:
        raise BenchError("a checked-in scan without its time")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _status_name(status: int | None) -> str:
    return str(status) if status in (201, 409, 422) else "other"


async def _register(admin: httpx.AsyncClient, convention_id: str, count: int) -> list[str]:
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(n: int) -> str:
        async with gate:
            answer = await admin.post(
                f"/api/v1/conventions/{convention_id}/registrations",
                json={
                    "email": f"guest{n}-{uuid.uuid4().hex[:8]}@example.org",
                    "name": f"Guest {n}",
                    "badge_type": BADGE,
                },
            )
        if answer.status_code != 201:
            raise BenchError(f"a registration answered {answer.status_code}: {answer.text[:300]}")
        return str(answer.json()["registration_id"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def _tickets(admin: httpx.AsyncClient, registrations: list[str]) -> list[str]:
    """Each registration's ticket token, as its holder would fetch it (retried while the read
    model does not show the registration confirmed yet)."""
    gate = asyncio.Semaphore(TICKET_CONCURRENCY)

    async def one(registration_id: str) -> str:
        deadline = time.perf_counter() + READ_MODEL_TIMEOUT
        while True:
            async with gate:
                answer = await admin.get(f"/api/v1/registrations/{registration_id}/ticket")
            if answer.status_code == 200:
                return str(answer.json()["token"])
            if answer.status_code not in (404, 409) or time.perf_counter() > deadline:
                raise BenchError(
                    f"the ticket of {registration_id} answered {answer.status_code}: "
                    f"{answer.text[:300]}"
                )
            await asyncio.sleep(POLL_SECONDS)

    return list(await asyncio.gather(*(one(rid) for rid in registrations)))


async def _station(
    stack: Stack, convention_id: str, station: str, scans: list[Scan], tokens: list[str]
) -> None:
    """One station: its own client, at most IN_FLIGHT_PER_STATION scans in flight."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    limits = httpx.Limits(max_connections=IN_FLIGHT_PER_STATION)
    queue = iter(scans)
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=headers, timeout=60, limits=limits
    ) as client:

        async def worker() -> None:
            for scan in queue:
                at = time.perf_counter()
                answer = await client.post(
                    staff_url(convention_id, "/check-ins"),
                    json={
                        "token": tokens[scan.ticket],
                        "station": station,
                        "scan_id": scan.scan_id,
                    },
                )
                scan.first_status = answer.status_code
                if answer.status_code == 202:
                    await _poll(client, convention_id, scan)
                else:
                    scan.status = answer.status_code
                    if answer.status_code == 201:
                        scan.scanned_at = datetime.fromisoformat(answer.json()["scanned_at"])
                    elif answer.status_code != 409:
                        raise BenchError(
                            f"a scan at {station} answered {answer.status_code}: "
                            f"{answer.text[:300]}"
                        )
                scan.latency = time.perf_counter() - at

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT_PER_STATION)))


async def _poll(client: httpx.AsyncClient, convention_id: str, scan: Scan) -> dict[str, Any]:
    """The scan as decided (where a 202 points), its status as the check-in route answers."""
    url = staff_url(convention_id, f"/check-ins/scans/{scan.scan_id}")
    deadline = time.perf_counter() + DECIDE_TIMEOUT
    while True:
        answer = await client.get(url)
        if answer.status_code == 200:
            view: dict[str, Any] = answer.json()
            outcome = view["outcome"]
            if outcome == "checked_in":
                scan.status = 201
            elif outcome in ("superseded", "already_checked_in"):
                scan.status = 409
            else:
                scan.status = 422
            scan.scanned_at = datetime.fromisoformat(view["scanned_at"])
            return view
        if answer.status_code != 404 or time.perf_counter() > deadline:
            raise BenchError(
                f"scan {scan.scan_id} was not decided within {DECIDE_TIMEOUT:g} s: "
                f"{answer.status_code} {answer.text[:300]}"
            )
        await asyncio.sleep(POLL_SECONDS)


async def _summary(admin: httpx.AsyncClient, convention_id: str) -> dict[str, Any]:
    answer = await admin.get(staff_url(convention_id, "/check-ins/summary"))
    if answer.status_code != 200:
        raise BenchError(f"the check-in summary answered {answer.status_code}: {answer.text[:300]}")
    summary: dict[str, Any] = answer.json()
    return summary


async def _check_rush(
    admin: httpx.AsyncClient,
    convention_id: str,
    registrations: list[str],
    scans: list[Scan],
) -> int:
    """Exactly every registration checked in; each ticket scanned twice answered once 201 and
    once 409. Two scans of a ticket may cross: the one the gateway stamped earlier is decided
    second and supersedes the other (the earliest scan wins), which then reads 409
    (`superseded`) whatever it was first answered. Returns how many crossed (the summary's
    conflicts, each a ticket scanned twice)."""
    by_ticket: dict[int, list[Scan]] = defaultdict(list)
    for scan in scans:
        by_ticket[scan.ticket].append(scan)
    for pair in by_ticket.values():
        if len(pair) == 2 and all(s.status == 201 for s in pair):
            deadline = time.perf_counter() + READ_MODEL_TIMEOUT
            while True:
                for scan in pair:
                    await _poll(admin, convention_id, scan)
                if sorted(s.status or 0 for s in pair) != [201, 201]:
                    break
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(POLL_SECONDS)
    bad = []
    for ticket, answered in by_ticket.items():
        statuses = sorted(s.status or 0 for s in answered)
        if statuses != ([201] if len(answered) == 1 else [201, 409]):
            bad.append(f"ticket {ticket}: {statuses}")
    if bad:
        raise BenchError(
            f"{len(bad)} tickets were not answered 201 once (and 409 for the second scan): "
            + "; ".join(bad[:5])
        )
    count = len(registrations)
    try:
        summary = await eventually(
            lambda: _summary(admin, convention_id),
            lambda s: s["checked_in"] == count,
            within=READ_MODEL_TIMEOUT,
            what=f"{count} checked in in the summary",
        )
    except BenchError:
        summary = await _summary(admin, convention_id)
        raise BenchError(
            f"the summary shows {summary['checked_in']} checked in (of {summary['registered']} "
            f"registered); expected {count}"
        ) from None
    twice = {registrations[t] for t, answered in by_ticket.items() if len(answered) == 2}
    conflicted = Counter(str(c["registration_id"]) for c in summary["conflicts"])
    strays = [rid for rid, n in conflicted.items() if rid not in twice or n > 1]
    if strays:
        raise BenchError(
            f"the summary shows conflicts for registrations not scanned twice, or more than one "
            f"for a registration: {strays[:5]}"
        )
    crossed = len(summary["conflicts"])
    line(
        "checked in",
        f"{summary['checked_in']} = {count} registrations, once each; each of the "
        f"{len(twice)} tickets scanned twice answered 201 and 409"
        + (
            f" ({crossed} crossed in flight: the scan stamped earlier, decided second, "
            f"superseded the other)"
            if crossed
            else ""
        ),
    )
    return crossed


async def _offline_sync(
    admin: httpx.AsyncClient,
    convention_id: str,
    scans: list[Scan],
    tokens: list[str],
    conflicts_before: int,
    rng: random.Random,
) -> tuple[int, int, float, Counter[str]]:
    """One station's offline queue of already checked-in tickets, half of them scanned before
    their first scan: (scans, of them earlier, seconds of the sync, answers by status)."""
    winners = {s.ticket: s for s in scans if s.status == 201}
    tickets = rng.sample(sorted(winners), min(OFFLINE_SCANS, len(winners)))
    station = STATIONS[-1]
    now = datetime.now(UTC)
    queue = []
    expected: dict[str, int] = {}
    for n, ticket in enumerate(tickets):
        first = _utc(winners[ticket].scanned_at)
        if n % 2 == 0:
            scanned_at = first - timedelta(seconds=rng.uniform(1, 60))
            expected_status = 201
        else:
            scanned_at = first + (now - first) / 2 + timedelta(milliseconds=1)
            expected_status = 409
        scan_id = str(uuid.uuid4())
        expected[scan_id] = expected_status
        queue.append(
            {
                "token": tokens[ticket],
                "station": station,
                "scanned_at": scanned_at.isoformat(),
                "scan_id": scan_id,
            }
        )
    earlier = sum(1 for status in expected.values() if status == 201)
    statuses: Counter[str] = Counter()
    wrong = []
    started = time.perf_counter()
    for start in range(0, len(queue), SYNC_BATCH):
        answer = await admin.post(
            staff_url(convention_id, "/check-ins/sync"),
            json={"scans": queue[start : start + SYNC_BATCH]},
        )
        if answer.status_code != 200:
            raise BenchError(f"a sync answered {answer.status_code}: {answer.text[:300]}")
        for result in answer.json()["results"]:
            status = int(result["status"])
            if status == 202:
                polled = Scan(-1, station, scan_id=str(result["scan_id"]))
                await _poll(admin, convention_id, polled)
                status = polled.status or 0
            statuses[str(status)] += 1
            if status != expected[str(result["scan_id"])]:
                wrong.append(f"{result['scan_id']}: {status}")
    sync_seconds = time.perf_counter() - started
    if wrong:
        raise BenchError(
            f"{len(wrong)} offline scans were not answered as expected (201 when scanned "
            f"before the first scan, else 409): " + "; ".join(wrong[:5])
        )
    want = conflicts_before + earlier
    try:
        summary = await eventually(
            lambda: _summary(admin, convention_id),
            lambda s: len(s["conflicts"]) == want and s["checked_in"] == len(winners),
            within=READ_MODEL_TIMEOUT,
            what=f"{want} conflicts in the summary",
        )
    except BenchError:
        summary = await _summary(admin, convention_id)
        raise BenchError(
            f"after the offline sync the summary shows {len(summary['conflicts'])} conflicts "
            f"and {summary['checked_in']} checked in; expected {want} ({earlier} offline "
            f"scans earlier than the first scan"
            + (f", {conflicts_before} crossed in the rush)" if conflicts_before else ")")
            + f" and {len(winners)} checked in"
        ) from None
    line(
        "sync",
        f"{len(queue)} offline scans at {station} ({earlier} scanned before the first scan) "
        f"in batches of {SYNC_BATCH}: {ms(sync_seconds)}; answers "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
    )
    line(
        "superseded",
        f"{len(summary['conflicts']) - conflicts_before} first scans superseded by the "
        f"{earlier} earlier offline scans; checked in still {summary['checked_in']}",
    )
    return len(queue), earlier, sync_seconds, statuses
