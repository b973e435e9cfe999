"""The lodging phase of `make bench`: a rush of room requests through the lodging partner.

N confirmed registrations each ask for a room at once (hotel preferences rotated over the
convention's three hotels, room types alternating), more than the blocks hold, so the
process manager holds, confirms, and compensates full hotels by trying the next one before
waitlisting. Figures: the intake (202s per second), the time until every request settled
(confirmed, waitlisted or failed), requests settled per second, POST-to-settled latency (a
request counts as settled once the admin listing, polled for the requests still requested
or held, no longer shows it), the outcomes, the CPU each process spent per request, and a
check that pickup counts exactly the confirmed rooms.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from tests.perf.common import BADGE, BenchError, eventually, latency_summary, line, mismatch
from tests.perf.stack import CpuMeter, Stack, cpu_report, stack_processes
from tests.perf.targets import create_open_convention

CHECK_IN, CHECK_OUT = "2027-01-01", "2027-01-03"
UNSETTLED = ("requested", "held")
PAGE = 100
POLL_SECONDS = 0.25
SETTLE_TIMEOUT = 180.0
CONCURRENCY = 32


@dataclass(frozen=True)
class LodgingFigures:
    requests: int
    intake_per_s: float
    settled_after: float | None
    settled_per_s: float | None
    latencies: list[float]
    outcomes: Counter[str]
    cpu_ms: float


async def lodging_phase(stack: Stack, admin: httpx.AsyncClient, requests: int) -> LodgingFigures:
    convention_id = await create_open_convention(admin, "Lodging bench", requests)
    registrations = await _register(admin, convention_id, requests)
    hotels = await sync_hotels(admin, convention_id)
    line(
        "lodging",
        f"{len(registrations)} confirmed registrations, hotels {', '.join(hotels)}: "
        f"each asks for a room at once",
    )
    meter = CpuMeter.start(stack_processes(stack))
    sent: dict[str, float] = {}
    started = time.perf_counter()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def ask(n: int, registration_id: str) -> None:
        rotated = hotels[n % len(hotels) :] + hotels[: n % len(hotels)]
        body = {
            "hotels": rotated,
            "room_type": "KING" if n % 2 else "DQ",
            "check_in": CHECK_IN,
            "check_out": CHECK_OUT,
            "guests": [f"Guest {n}"],
        }
        async with gate:
            at = time.perf_counter()
            answer = await admin.post(
                f"/api/v1/registrations/{registration_id}/lodging",
                json=body,
                headers={"Idempotency-Key": f"room-{registration_id}"},
            )
        if answer.status_code != 202:
            raise BenchError(f"a room request answered {answer.status_code}: {answer.text[:300]}")
        sent[str(answer.json()["request_id"])] = at

    await asyncio.gather(*(ask(n, rid) for n, rid in enumerate(registrations)))
    intake = len(sent) / (time.perf_counter() - started)
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    while len(seen) < len(sent) and time.perf_counter() < deadline:
        unsettled = {
            str(item["request_id"])
            for status in UNSETTLED
            for item in await room_listing(admin, convention_id, status)
        }
        now = time.perf_counter()
        for request_id in sent.keys() - unsettled - seen.keys():
            seen[request_id] = now
        if len(seen) < len(sent):
            await asyncio.sleep(POLL_SECONDS)
    final = {
        str(item["request_id"]): item["status"] for item in await room_listing(admin, convention_id)
    }
    settled_after = None
    if len(seen) == len(sent):
        settled_after = max(seen.values()) - started
    spent = meter.spent()
    cpu_ms = cpu_report(spent, ("none", 0.0), len(sent)) if sent else 0.0
    outcomes = Counter(final[request_id] for request_id in seen)
    outcomes["unsettled"] = len(sent) - len(seen)
    await _check_pickup(admin, convention_id, outcomes["confirmed"])
    return LodgingFigures(
        requests=len(sent),
        intake_per_s=intake,
        settled_after=settled_after,
        settled_per_s=None if settled_after is None else len(sent) / settled_after,
        latencies=sorted(seen[rid] - at for rid, at in sent.items() if rid in seen),
        outcomes=outcomes,
        cpu_ms=cpu_ms,
    )


def print_lodging(figures: LodgingFigures) -> None:
    line("intake", f"{figures.intake_per_s:,.0f} room requests/s accepted (202)")
    if figures.settled_after is None:
        line("settled", f"not all within {SETTLE_TIMEOUT:g} s")
    else:
        line(
            "settled",
            f"all {figures.requests} after {figures.settled_after:.2f} s "
            f"({figures.settled_per_s:,.0f} requests/s through the partner)",
        )
    line("to settled", latency_summary(figures.latencies) + " (from each POST)")
    line("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(figures.outcomes.items()) if v))


async def _register(admin: httpx.AsyncClient, convention_id: str, count: int) -> list[str]:
    gate = asyncio.Semaphore(64)

    async def one(n: int) -> str:
        async with gate:
            answer = await admin.post(
                f"/api/v1/conventions/{convention_id}/registrations",
                json={
                    "email": f"lodger{n}-{uuid.uuid4().hex[:8]}@example.org",
                    "name": f"Lodger {n}",
                    "badge_type": BADGE,
                },
            )
        if answer.status_code != 201:
            raise BenchError(f"a registration answered {answer.status_code}: {answer.text[:300]}")
        return str(answer.json()["registration_id"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def sync_hotels(admin: httpx.AsyncClient, convention_id: str) -> list[str]:
    answer = await admin.post(f"/api/v1/admin/conventions/{convention_id}/hotels/sync")
    if answer.status_code != 202:
        raise BenchError(f"the hotel sync answered {answer.status_code}: {answer.text[:300]}")
    listed = await eventually(
        lambda: admin.get(f"/api/v1/conventions/{convention_id}/hotels"),
        lambda r: r.status_code == 200 and bool(r.json()["hotels"]),
        within=60,
        what="the convention's hotels synced from the partner",
    )
    return [hotel["code"] for hotel in listed.json()["hotels"]]


async def room_listing(
    admin: httpx.AsyncClient, convention_id: str, status: str | None = None
) -> list[dict[str, Any]]:
    """The convention's room requests (of one status, if named), every page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": PAGE}
        if status is not None:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        answer = await admin.get(
            f"/api/v1/admin/conventions/{convention_id}/lodging/requests", params=params
        )
        answer.raise_for_status()
        page = answer.json()
        items.extend(page["items"])
        cursor = page["next"]
        if not cursor:
            return items


async def _check_pickup(admin: httpx.AsyncClient, convention_id: str, confirmed: int) -> None:
    """Each confirmed request holds its two nights: pickup must count exactly those."""

    async def booked() -> int:
        answer = await admin.get(f"/api/v1/admin/conventions/{convention_id}/lodging/pickup")
        answer.raise_for_status()
        return sum(
            night["booked"]
            for hotel in answer.json()["hotels"]
            for room_type in hotel["room_types"]
            for night in room_type["nights"]
        )

    try:
        total = await eventually(
            booked, lambda n: n == 2 * confirmed, within=10, what="pickup to count the rooms"
        )
    except BenchError:
        total = await booked()
    if total != 2 * confirmed:
        mismatch(f"pickup counts {total} room nights for {confirmed} confirmed two-night stays")
    else:
        line("pickup", f"{total} room nights booked = {confirmed} confirmed two-night stays")
