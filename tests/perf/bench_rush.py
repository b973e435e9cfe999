"""`make bench`: the speed figures of Butterfly's registration path, each against its
target, on this machine with the load generator sharing it.

Uses the stack at BENCH_URL (or `--url`) if it is set and its /health answers 200; otherwise
starts its own (`python -m infra.cli dev` on free ports, with its own topics, databases and run
folder) and removes it afterwards: a `make run` stack on port 8000 is never used unasked.
Phases (`--phases` picks some, in this order):

- wait: waiting mode, the default where every POST waits for its decision. A closed loop of
  C connections (default 64) POSTs fresh registrations (unique e-mails, quota above demand)
  for D seconds after a warm-up. Prints decided registrations/s (201 and 409 answers; 202s
  still pending after the wait, 5xx and requests without an answer are counted apart), the
  POST latency p50/p90/p99/max, and the CPU milliseconds per decided registration of every
  process: gateway, decider, each projector, relay, broker, MariaDB (the whole server,
  whoever else uses it) and the load generator itself.
- rival: the same load against tests/perf/rival.py (one Litestar process, one MariaDB
  transaction per registration, the badge row locked FOR UPDATE), started here in a process
  and a database of its own; prints both rows and the ratio Butterfly / rival.
- orders: the wait phase's load on a badge type with a price: every registration is an
  order held for its payment (priced, its order and mail written, answered with the order
  to pay). Prints decided/s, the POST p99 and the CPU per registration, beside wait's.
- async: a burst of B seconds with `Prefer: respond-async` (answered 202 at once). Prints the
  intake (accepted requests/s), the POST p99, and the seconds from the burst's end until every
  accepted registration reads as decided in the read database (polled, with a deadline), and
  the CPU per registration as in wait, from the burst's start until then.
- overload: an open-loop arrival rate of twice the decided/s the wait phase measured, for O
  seconds, from rawhttp (wrk is closed-loop only). Prints the share answered 503 (each must
  carry Retry-After), the p99 of accepted answers (201/202/409) from their scheduled send time,
  and checks that every accepted registration ends up decided in the read model.
- rush: more registrations than seats (N POSTs for Q seats, some re-using an e-mail, some
  retried with the same Idempotency-Key), against Butterfly and the rival: no seat sold twice,
  none lost, every retry answered like its original.
- lodging: R confirmed registrations ask for a room at once, more than the partner's blocks
  hold (tests/perf/lodging.py): the intake, the seconds until every request settled
  (confirmed, or waitlisted after trying every preferred hotel), requests settled per second,
  POST-to-settled latency, the outcomes, CPU per request, and pickup checked against them.
- gates: the rush at the door (tests/perf/gates.py, docs/CHECKIN.md): G confirmed
  registrations' tickets scanned by four stations at once (each its own client, 16 scans in
  flight), a tenth of them a second time at another station, shuffled: scans/s, the latency
  p50/p90/p99, the answers by status, CPU per scan, and checks that exactly G registrations
  are checked in and every second scan answered 409; then one station's offline queue of 200
  scans (half scanned before the first scan) synced in batches of 100: its time, and a check
  that exactly the earlier half superseded the first scans.
- rebuild: the website read model rebuilt from the topics into throwaway databases by
  `projections.rebuild.rebuild_website`; events/s, and a check that it equals the live one.
- memory: the peak resident memory (VmHWM) of every process of the stack; each Butterfly role
  is held to 300 MB (the broker is shown, not held to it).

The closed-loop load of wait, rival and async goes through wrk with tests/perf/register.lua
(installed with apt-get when missing; when it cannot be had, or with `--no-wrk`, through
rawhttp, and the output says so). The rush and the overload go through rawhttp, a bare
asyncio HTTP/1.1 client in `--clients` processes. At the end a table sets each figure against
its target.

Figures only: nothing here fails on timing. Consistency checks print MISMATCH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import threading
import time
from pathlib import Path

import httpx

# Run as a script, only tests/perf is on sys.path: the repository root makes tests.perf importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf.common import BenchError, Summary, line, ms, percentile, section
from tests.perf.gates import gates_phase
from tests.perf.lodging import lodging_phase, print_lodging
from tests.perf.mail import mail_phase
from tests.perf.replay import ROLE_MEMORY_LIMIT, memory_phase, rebuild_phase
from tests.perf.rush import compare, make_rush, rush_phase
from tests.perf.stack import Stack, find_stack, start_stack, stop_stack
from tests.perf.targets import ReadModel, Target, butterfly_target, rival_target
from tests.perf.throughput import (
    ClosedLoad,
    WaitFigures,
    async_phase,
    overload_phase,
    wait_phase,
)
from tests.perf.wrk import ensure_wrk

PHASES = (
    "wait",
    "rival",
    "orders",
    "mail",
    "async",
    "overload",
    "rush",
    "lodging",
    "gates",
    "rebuild",
    "memory",
)
ORDER_PRICE_CENTS = 5000
QUICK = {
    "duration": 3.0,
    "warmup": 1.0,
    "burst": 3.0,
    "overload_duration": 3.0,
    "requests": 1000,
    "quota": 300,
    "rooms": 100,
    "scans": 200,
}
"""`--quick`: a smoke run of every phase in about two minutes, figures not to be trusted."""
WAIT_TARGET = 2000.0
WAIT_P99_TARGET = 0.150
INTAKE_TARGET = 4000.0
SETTLE_TARGET = 5.0
OVERLOAD_P99_TARGET = 0.500
REBUILD_TARGET = 50_000.0
LODGING_SETTLE_TARGET = 30.0
GATES_TARGET = 17.0
"""Scans/s at the door: 1,000 attendees through the gates in a minute."""
OVERLOAD_CONNECTIONS_MARGIN = 256
"""Overload connections past the gateway's in-flight limit, so that the limit, not the
client's pool, decides what is shed."""


def timed(started: float) -> None:
    line("phase time", f"{time.perf_counter() - started:.1f} s")


async def run_phases(
    stack: Stack, args: argparse.Namespace, abort: threading.Event, summary: Summary
) -> None:
    phases = set(args.phases)
    closed_loop = phases & {"wait", "rival", "async"}
    wrk = ensure_wrk() if closed_loop and args.wrk else None
    if closed_loop and args.wrk and wrk is None:
        line("load", "wrk cannot be had: the closed-loop load goes through rawhttp instead")
    load = ClosedLoad(wrk, args.connections, args.warmup, args.clients)
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=60) as admin:
        butterfly = butterfly_target(stack, admin)
        read_model = ReadModel(stack)
        try:
            ours = await _waiting(butterfly, admin, stack, load, args, abort, summary)
            if "mail" in phases:
                await _mail(stack, summary)
            if "async" in phases:
                started = time.perf_counter()
                figures = await async_phase(butterfly, read_model, load, args.burst, abort)
                timed(started)
                summary.add(
                    "async intake",
                    f">= {INTAKE_TARGET:,.0f} req/s",
                    f"{figures.intake_per_s:,.0f} req/s",
                    figures.intake_per_s >= INTAKE_TARGET,
                )
                summary.add("async POST p99", "", ms(figures.p99))
                settled = figures.settled_after
                summary.add(
                    "async: all decided after burst",
                    f"<= {SETTLE_TARGET:g} s",
                    "never" if settled is None else f"{settled:.2f} s",
                    settled is not None and settled <= SETTLE_TARGET,
                )
                summary.add("async CPU ms/registration", "", f"{figures.cpu_ms:.2f}")
            if "overload" in phases:
                await _overload(butterfly, read_model, stack, ours, args, abort, summary)
            if "rush" in phases:
                await _rush(butterfly, stack, args, abort, summary)
            if "lodging" in phases:
                await _mail_before(stack, "lodging", phases)
                await _lodging(stack, admin, args, summary)
            if "gates" in phases:
                await _mail_before(stack, "gates", phases)
                await _gates(stack, admin, args, summary)
        finally:
            await read_model.aclose()
    if "rebuild" in phases:
        started = time.perf_counter()
        rate = await rebuild_phase(stack)
        timed(started)
        summary.add(
            "rebuild website read model",
            f">= {REBUILD_TARGET:,.0f} events/s",
            "failed or did not run" if rate is None else f"{rate:,.0f} events/s",
            rate is not None and rate >= REBUILD_TARGET,
        )
    if "memory" in phases:
        largest = memory_phase(stack)
        if largest is not None:
            summary.add(
                "peak RSS of a role",
                f"< {ROLE_MEMORY_LIMIT:.0f} MB",
                f"{largest:.0f} MB",
                largest < ROLE_MEMORY_LIMIT,
            )


async def _mail(stack: Stack, summary: Summary) -> None:
    section("Mail: the mailer delivering what the phases before left it")
    figures = await mail_phase(stack)
    if figures.waiting:
        summary.add(
            f"mail: {figures.waiting} waiting delivered after",
            "",
            "not all" if figures.drained_after is None else f"{figures.drained_after:.1f} s",
        )
        summary.add("mailer CPU ms/mail", "", f"{figures.cpu_ms:.2f}")


async def _mail_before(stack: Stack, phase: str, phases: set[str]) -> None:
    """With the mail phase on, the mails the phases before left are delivered before `phase`
    starts, so that its figures are not the mailer's catching up."""
    if "mail" in phases:
        section(f"Mail: delivered before {phase}")
        await mail_phase(stack)


async def _lodging(
    stack: Stack, admin: httpx.AsyncClient, args: argparse.Namespace, summary: Summary
) -> None:
    section(f"Lodging: {args.rooms} room requests at once through the partner")
    started = time.perf_counter()
    figures = await lodging_phase(stack, admin, args.rooms)
    print_lodging(figures)
    timed(started)
    summary.add("lodging intake", "", f"{figures.intake_per_s:,.0f} req/s")
    summary.add(
        "lodging: all settled after",
        f"<= {LODGING_SETTLE_TARGET:g} s",
        "never" if figures.settled_after is None else f"{figures.settled_after:.2f} s",
        figures.settled_after is not None and figures.settled_after <= LODGING_SETTLE_TARGET,
    )
    if figures.latencies:
        summary.add("lodging POST→settled p99", "", ms(percentile(figures.latencies, 99)))
    summary.add("lodging CPU ms/request", "", f"{figures.cpu_ms:.2f}")


async def _gates(
    stack: Stack, admin: httpx.AsyncClient, args: argparse.Namespace, summary: Summary
) -> None:
    section(f"Gates: {args.scans} tickets scanned at the door by four stations at once")
    started = time.perf_counter()
    figures = await gates_phase(stack, admin, args.scans, args.seed)
    timed(started)
    summary.add(
        "gates: scans/s",
        f">= {GATES_TARGET:g} scans/s (1,000 in a minute)",
        f"{figures.scans_per_s:,.0f} scans/s",
        figures.scans_per_s >= GATES_TARGET,
    )
    if figures.latencies:
        summary.add("gates p99", "", ms(percentile(figures.latencies, 99)))
    summary.add("gates CPU ms/scan", "", f"{figures.cpu_ms:.2f}")
    summary.add(f"gates sync of {figures.offline} offline scans", "", ms(figures.sync_seconds))


async def _waiting(
    butterfly: Target,
    admin: httpx.AsyncClient,
    stack: Stack,
    load: ClosedLoad,
    args: argparse.Namespace,
    abort: threading.Event,
    summary: Summary,
) -> WaitFigures | None:
    """Phases wait and rival; Butterfly's figures when it ran."""
    ours = theirs = None
    if "wait" in args.phases:
        started = time.perf_counter()
        ours = await wait_phase(butterfly, load, args.duration, abort)
        timed(started)
        summary.add(
            "waiting: decided/s",
            f">= {WAIT_TARGET:,.0f}/s",
            f"{ours.decided_per_s:,.0f}/s",
            ours.decided_per_s >= WAIT_TARGET,
        )
        summary.add(
            f"waiting: POST p99 at {load.connections} conn.",
            f"< {ms(WAIT_P99_TARGET)}",
            ms(ours.p99),
            ours.p99 < WAIT_P99_TARGET,
        )
        summary.add("waiting CPU ms/registration", "", f"{ours.cpu_ms:.2f}")
    if "rival" in args.phases:
        started = time.perf_counter()
        async with rival_target(stack) as (rival, about):
            theirs = await wait_phase(rival, load, args.duration, abort, about)
        timed(started)
        summary.add("rival: decided/s", "", f"{theirs.decided_per_s:,.0f}/s")
        summary.add("rival CPU ms/registration", "", f"{theirs.cpu_ms:.2f}")
    if "orders" in args.phases:
        started = time.perf_counter()
        priced = butterfly_target(stack, admin, ORDER_PRICE_CENTS)
        held = await wait_phase(priced, load, args.duration, abort)
        timed(started)
        summary.add("orders held for payment: decided/s", "", f"{held.decided_per_s:,.0f}/s")
        summary.add("orders held: POST p99", "", ms(held.p99))
        summary.add("orders held CPU ms/registration", "", f"{held.cpu_ms:.2f}")
    if ours is not None and theirs is not None:
        ratio = ours.decided_per_s / max(theirs.decided_per_s, 1e-9)
        section("Waiting mode: Butterfly against the rival, same load")
        for name, figures in (("Butterfly", ours), ("rival", theirs)):
            line(
                name,
                f"{figures.decided_per_s:7.0f} decided/s, POST p99 {ms(figures.p99)}, "
                f"{figures.cpu_ms:.2f} server CPU ms/registration",
            )
        line("ratio", f"Butterfly / rival = {ratio:.2f}\u00d7 decided/s")
        summary.add("waiting: Butterfly / rival", ">= 1.00\u00d7", f"{ratio:.2f}\u00d7", ratio >= 1)
    return ours


async def _overload(
    butterfly: Target,
    read_model: ReadModel,
    stack: Stack,
    ours: WaitFigures | None,
    args: argparse.Namespace,
    abort: threading.Event,
    summary: Summary,
) -> None:
    rate = args.overload_rate or 2 * (ours.decided_per_s if ours else WAIT_TARGET)
    connections = (
        args.overload_connections or stack.settings().max_in_flight + OVERLOAD_CONNECTIONS_MARGIN
    )
    started = time.perf_counter()
    figures = await overload_phase(
        butterfly, read_model, rate, args.overload_duration, connections, args.clients, abort
    )
    timed(started)
    summary.add(
        f"overload at {figures.rate:,.0f} req/s: 503 share", "", f"{figures.shed_share:.1%}"
    )
    summary.add(
        "overload: 503s without Retry-After",
        "0",
        str(figures.without_retry_after),
        figures.without_retry_after == 0,
    )
    summary.add(
        "overload: accepted p99",
        f"< {ms(OVERLOAD_P99_TARGET)}",
        ms(figures.accepted_p99),
        figures.accepted_p99 < OVERLOAD_P99_TARGET,
    )
    summary.add("overload: accepted but lost", "0", str(figures.lost), figures.lost == 0)


async def _rush(
    butterfly: Target,
    stack: Stack,
    args: argparse.Namespace,
    abort: threading.Event,
    summary: Summary,
) -> None:
    rush = make_rush(args)
    started = time.perf_counter()
    ours = await rush_phase(butterfly, rush, args, abort, "Rush")
    timed(started)
    mismatches = ours.mismatches
    if "rival" in args.phases:
        started = time.perf_counter()
        async with rival_target(stack) as (target, about):
            theirs = await rush_phase(target, rush, args, abort, "Rush, rival", about)
        timed(started)
        compare(ours, theirs)
        mismatches += theirs.mismatches
    summary.add("rush: consistency checks failed", "0", str(mismatches), mismatches == 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Butterfly's registration figures against their targets; the module "
        "docstring (tests/perf/bench_rush.py) says what each means."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("BENCH_URL", ""),
        help="a running stack to use if its /health answers 200, else the bench starts its "
        "own (default: $BENCH_URL)",
    )
    parser.add_argument(
        "--phases",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        default=list(PHASES),
        help=f"comma-separated phases to run (default: all of {','.join(PHASES)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: "
        + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in QUICK.items())
        + " unless given",
    )
    parser.add_argument(
        "--no-rival",
        dest="rival",
        action="store_false",
        help="skip the rival (phase rival, and the rush against it)",
    )
    parser.add_argument(
        "-c",
        "--connections",
        type=int,
        default=64,
        help="closed-loop connections, and the rush's C (%(default)s)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=float,
        default=15.0,
        help="wait and rival: seconds measured, D (%(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="wait and rival: warm-up seconds first (%(default)s)",
    )
    parser.add_argument(
        "--burst", type=float, default=10.0, help="async: burst seconds, B (%(default)s)"
    )
    parser.add_argument(
        "--overload-duration", type=float, default=10.0, help="overload: seconds, O (%(default)s)"
    )
    parser.add_argument(
        "--overload-rate",
        type=float,
        default=None,
        help="overload: arrivals/s (default: twice the wait phase's decided/s, "
        f"or {2 * WAIT_TARGET:g} without it)",
    )
    parser.add_argument(
        "--overload-connections",
        type=int,
        default=None,
        help="overload: most connections open at once (default: the gateway's in-flight "
        f"limit + {OVERLOAD_CONNECTIONS_MARGIN})",
    )
    parser.add_argument(
        "-n", "--requests", type=int, default=5000, help="rush: POSTs, N (%(default)s)"
    )
    parser.add_argument(
        "--rooms", type=int, default=500, help="lodging: room requests, R (%(default)s)"
    )
    parser.add_argument(
        "--scans",
        type=int,
        default=1000,
        help="gates: confirmed registrations whose tickets are scanned, G (%(default)s)",
    )
    parser.add_argument(
        "-q", "--quota", type=int, default=1000, help="rush: seats, Q (%(default)s)"
    )
    parser.add_argument(
        "--repeat-share",
        type=float,
        default=0.05,
        help="rush: share of registrations re-using an earlier e-mail (%(default)s)",
    )
    parser.add_argument(
        "--retry-share",
        type=float,
        default=0.02,
        help="rush: share of POSTs retrying an earlier Idempotency-Key (%(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="rush and gates: seed of their randomness"
    )
    parser.add_argument(
        "--no-wrk",
        dest="wrk",
        action="store_false",
        help="send the closed-loop load through rawhttp even where wrk is installed",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="rawhttp client processes: rush, overload (%(default)s)",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the started stack's run folder (logs) for a look afterwards",
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    unknown = [p for p in args.phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phases {unknown}; pick from {','.join(PHASES)}")
    if not args.rival:
        args.phases = [p for p in args.phases if p != "rival"]
    return args


def main() -> int:
    from infra.logging import configure_logging

    started = time.perf_counter()
    args = parse_args()
    configure_logging("bench", "WARNING")
    print("Butterfly registration benchmark" + (" (--quick)" if args.quick else ""), flush=True)
    line(
        "machine",
        f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
    )
    line(
        "parameters",
        f"phases {','.join(args.phases)}; C={args.connections} connections, "
        f"D={args.duration:g} s after {args.warmup:g} s warm-up, B={args.burst:g} s, "
        f"O={args.overload_duration:g} s, rush N={args.requests} Q={args.quota}, "
        f"gates G={args.scans}, "
        f"{args.clients} rawhttp process(es)",
    )
    abort = threading.Event()
    summary = Summary()
    stack = find_stack(args.url.rstrip("/")) if args.url else None
    if stack is not None:
        line(
            "stack",
            f"the running stack at {stack.base_url} (topics {stack.topic_prefix}*, "
            f"databases {stack.db_prefix}_*)",
        )
    else:
        stack = start_stack()
    try:
        asyncio.run(run_phases(stack, args, abort, summary))
    except BenchError as exc:
        print(f"\nbench stopped: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        abort.set()
        stop_stack(stack, keep_logs=args.keep_logs)
        summary.print()
        print(f"\nTotal bench time {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
