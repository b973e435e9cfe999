"""`make faults`: registrations and room requests rush in through the load balancer while
every role loses a process, MariaDB restarts, the broker pauses and the lodging partner
freezes. Then the checks: every request answered (and a retry with its idempotency key gets
its original answer), nothing lost, nothing doubled, nothing oversold, every room request
settled once with the partner agreeing, and the read models equal a rebuild from the topics.

The stack is `butterfly dev` with several replicas of the busy roles, on a MariaDB and an
embedded broker of this run's own (so they can be restarted and paused without touching
anyone else's). Clients behave as the website does: a connection refused, a 502/503/504 or a
timeout is retried with the same Idempotency-Key after a short wait.

    python -m tests.faults.run            # the full run: every role, a longer rush
    python -m tests.faults.run --short    # the short form CI runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil

from infra.services import EmbeddedBroker, LocalMariaDB, free_port
from tests.perf.common import REPO, BenchError, latency_summary, line, section
from tests.perf.lodging import room_listing, sync_hotels
from tests.perf.stack import Stack, role_of, start_stack, stop_stack
from tests.perf.targets import create_open_convention

RETRY_STATUSES = frozenset({502, 503, 504})
ANSWERED = frozenset({201, 202, 409})
"""Final answers to a registration: decided (confirmed, or refused as sold out) or pending."""
ROOM_UNSETTLED = ("requested", "held")
CHECK_IN, CHECK_OUT = "2027-01-01", "2027-01-03"
REQUEST_DEADLINE = 240.0
"""How long one client keeps retrying one request before calling it unanswered."""
SETTLE_TIMEOUT = 240.0
RESTART_TIMEOUT = 60.0
REPLICAS = "gateway:2,decider.registration:2,projector.website:2,decider.lodging:2"
EVERY_ROLE = (
    "gateway",
    "decider registration",
    "projector website",
    "decider lodging",
    "relay",
    "projector reporting",
    "projector lodging",
    "bridge",
    "decider accounts",
    "projector accounts",
    "projector orders",
    "mailer",
    "clock",
)
"""Every role of ours, as `role_of` names them; the simulators and HAProxy are not ours."""


@dataclass(frozen=True)
class Plan:
    rate: float
    """Registrations started per second, for as long as the faults last."""
    quota: int
    """Seats of the one badge type: fewer than the rush asks for, so it sells out."""
    kills: tuple[str, ...]
    pause_seconds: float
    freeze_seconds: float
    db_down_seconds: float
    gap_seconds: float
    """Rush between two faults."""
    room_every: int
    """Every n-th registration confirmed at once asks for a room."""
    workers: int = 48


FULL = Plan(
    rate=30,
    quota=1500,
    kills=EVERY_ROLE,
    pause_seconds=6,
    freeze_seconds=12,
    db_down_seconds=5,
    gap_seconds=3,
    room_every=4,
)
SHORT = Plan(
    rate=15,
    quota=250,
    kills=("gateway", "decider registration", "projector website", "decider lodging", "relay"),
    pause_seconds=3,
    freeze_seconds=6,
    db_down_seconds=3,
    gap_seconds=1.5,
    room_every=4,
)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    attempts: int
    took: float
    """Seconds from the first attempt to this answer."""


@dataclass
class Findings:
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, label: str, text: str) -> None:
        line(label, ("ok: " if ok else "FAILED: ") + text)
        if not ok:
            self.failures.append(f"{label}: {text}")


@dataclass
class Rush:
    plan: Plan
    client: httpx.AsyncClient
    convention_id: str
    hotels: list[str]
    registrations: dict[int, Answer] = field(default_factory=dict)
    rooms: dict[str, Answer] = field(default_factory=dict)
    five_hundreds: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    retried: Counter[str] = field(default_factory=Counter)

    def body(self, n: int) -> dict[str, str]:
        return {"email": f"fault{n}@example.org", "name": f"Fault {n}", "badge_type": "STD"}

    def room_body(self, n: int) -> dict[str, Any]:
        return {
            "hotels": self.hotels[n % len(self.hotels) :] + self.hotels[: n % len(self.hotels)],
            "room_type": "KING" if n % 2 else "DQ",
            "check_in": CHECK_IN,
            "check_out": CHECK_OUT,
            "guests": [f"Guest {n}"],
        }

    async def send(self, what: str, url: str, body: dict[str, Any], key: str) -> Answer | None:
        """POST until answered: transport errors and 502/503/504 are retried, same key."""
        started = time.perf_counter()
        deadline = started + REQUEST_DEADLINE
        attempts, wait = 0, 0.1
        retried: Counter[str] = Counter()
        while time.perf_counter() < deadline:
            attempts += 1
            try:
                answer = await self.client.post(url, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                retried[type(exc).__name__] += 1
            else:
                if answer.status_code >= 500 and answer.status_code not in RETRY_STATUSES:
                    self.five_hundreds.append(f"{what}: {answer.status_code} {answer.text[:200]}")
                if answer.status_code not in RETRY_STATUSES:
                    parsed = answer.json() if answer.content else {}
                    self.retried.update(retried)
                    took = time.perf_counter() - started
                    return Answer(answer.status_code, parsed, attempts, took)
                retried[str(answer.status_code)] += 1
                with contextlib.suppress(ValueError):
                    wait = max(wait, float(answer.headers.get("retry-after", "")))
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)
        self.retried.update(retried)
        self.unanswered.append(f"{what} after {attempts} attempts: {dict(retried)}")
        return None

    async def register(self, n: int) -> None:
        url = f"/api/v1/conventions/{self.convention_id}/registrations"
        answer = await self.send(f"registration {n}", url, self.body(n), f"fault-{n}")
        if answer is None:
            return
        self.registrations[n] = answer
        if (
            answer.status == 201
            and answer.body.get("status") == "confirmed"
            and n % self.plan.room_every == 0
        ):
            registration_id = str(answer.body["registration_id"])
            room = await self.send(
                f"room for {n}",
                f"/api/v1/registrations/{registration_id}/lodging",
                self.room_body(n),
                f"room-{registration_id}",
            )
            if room is not None:
                self.rooms[registration_id] = room

    async def run(self, until: asyncio.Event) -> int:
        """Start registrations at the plan's rate until `until` is set; wait for them all."""
        gate = asyncio.Semaphore(self.plan.workers)
        tasks: list[asyncio.Task[None]] = []
        started = time.perf_counter()

        async def one(n: int) -> None:
            async with gate:
                await self.register(n)

        n = 0
        while not until.is_set():
            tasks.append(asyncio.create_task(one(n)))
            n += 1
            due = started + n / self.plan.rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), max(0.0, due - time.perf_counter()))
        await asyncio.gather(*tasks)
        return n


class Faults:
    """The faults, one at a time, on the stack `butterfly dev` supervises."""

    def __init__(
        self, stack: Stack, mariadb: LocalMariaDB, broker: EmbeddedBroker, plan: Plan
    ) -> None:
        self.stack, self.mariadb, self.broker, self.plan = stack, mariadb, broker, plan
        self.done: list[str] = []
        self.random = random.Random(int(os.environ.get("FAULTS_SEED", "14")))

    def processes(self, role: str) -> list[psutil.Process]:
        assert self.stack.process is not None
        found = []
        for child in psutil.Process(self.stack.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if role_of(child.cmdline()) == role and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
        return found

    async def kill(self, role: str) -> None:
        before = self.processes(role)
        if not before:
            raise BenchError(f"no process of role {role!r} to kill")
        victim = self.random.choice(before)
        victim.send_signal(signal.SIGKILL)
        started = time.perf_counter()
        while True:
            now = [p for p in self.processes(role) if p.pid != victim.pid]
            if len(now) == len(before):
                break
            if time.perf_counter() - started > RESTART_TIMEOUT:
                raise BenchError(f"{role} was not restarted within {RESTART_TIMEOUT:g} s")
            await asyncio.sleep(0.1)
        self.done.append(
            f"SIGKILL {role} (pid {victim.pid}, {len(before)} running), "
            f"started again in {time.perf_counter() - started:.1f} s"
        )

    def partner_url(self) -> str:
        argv = self.processes("partner-sim")[0].cmdline()
        return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"

    async def restart_mariadb(self) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(self.mariadb.stop)
        await asyncio.sleep(self.plan.db_down_seconds)
        await self.mariadb.start()
        self.done.append(f"MariaDB restarted: down {time.perf_counter() - started:.1f} s")

    async def stop_for(self, pid: int, seconds: float, what: str) -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.done.append(f"{what} for {seconds:g} s")

    async def run(self) -> None:
        plan = self.plan
        partner, broker = self.processes("partner-sim")[0].pid, self.broker.pid
        if broker is None:
            raise BenchError("the broker is not running")
        steps: list[Callable[[], Awaitable[None]]] = [
            partial(self.kill, role) for role in plan.kills
        ]
        steps += [
            self.restart_mariadb,
            partial(self.stop_for, broker, plan.pause_seconds, "broker paused"),
            partial(self.stop_for, partner, plan.freeze_seconds, "partner frozen"),
        ]
        for step in steps:
            await asyncio.sleep(plan.gap_seconds)
            await step()
        await asyncio.sleep(plan.gap_seconds)


async def exercise(
    stack: Stack, mariadb: LocalMariaDB, broker: EmbeddedBroker, plan: Plan
) -> Findings:
    findings = Findings()
    limits = httpx.Limits(max_connections=plan.workers + 8)
    async with httpx.AsyncClient(
        base_url=stack.base_url,
        timeout=30,
        limits=limits,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
    ) as client:
        convention_id = await create_open_convention(client, "Faults Con", plan.quota)
        hotels = await sync_hotels(client, convention_id)
        rush = Rush(plan, client, convention_id, hotels)
        faults = Faults(stack, mariadb, broker, plan)
        over = asyncio.Event()
        section("Rush under faults")
        started = time.perf_counter()
        rush_task = asyncio.create_task(rush.run(over))
        try:
            await faults.run()
        finally:
            over.set()
            sent = await rush_task
        for done in faults.done:
            line("fault", done)
        line(
            "rush",
            f"{sent} registrations and {len(rush.rooms)} room requests in "
            f"{time.perf_counter() - started:.1f} s; retried: "
            + (", ".join(f"{k} x{v}" for k, v in sorted(rush.retried.items())) or "nothing"),
        )
        took = sorted(answer.took for answer in rush.registrations.values())
        if took:
            line("answered in", latency_summary(took) + " (first attempt to final answer)")
        retried = sum(answer.attempts > 1 for answer in rush.registrations.values())
        rooms = sum(answer.attempts > 1 for answer in rush.rooms.values())
        line("retried", f"{retried} registrations and {rooms} room requests needed another attempt")
        section("Checks")
        await check(findings, rush, stack, sent, faults.partner_url())
    return findings


async def poll(
    probe: Callable[[], Awaitable[Any]], until: Callable[[Any], bool], within: float
) -> Any:
    deadline = time.perf_counter() + within
    value = await probe()
    while not until(value) and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
        value = await probe()
    return value


async def check(findings: Findings, rush: Rush, stack: Stack, sent: int, partner_url: str) -> None:
    client, convention_id, plan = rush.client, rush.convention_id, rush.plan
    findings.check(
        not rush.unanswered and len(rush.registrations) == sent,
        "answered",
        f"{len(rush.registrations)} of {sent} registrations answered "
        f"({dict(Counter(a.status for a in rush.registrations.values()))})"
        + (f"; unanswered: {rush.unanswered[:5]}" if rush.unanswered else ""),
    )
    findings.check(
        not rush.five_hundreds,
        "no 500",
        f"{len(rush.five_hundreds)} answers of 500 or another server error"
        + (f": {rush.five_hundreds[:3]}" if rush.five_hundreds else ""),
    )
    odd = {n: a.status for n, a in rush.registrations.items() if a.status not in ANSWERED}
    findings.check(not odd, "final", f"{len(odd)} not 201/202/409: {list(odd.items())[:5]}")

    settings = stack.settings()
    expected = {"confirmed": plan.quota, "rejected:sold_out": sent - plan.quota}
    found = await poll(
        lambda: statuses(settings, uuid.UUID(convention_id)),
        lambda s: s == expected,
        SETTLE_TIMEOUT,
    )
    findings.check(
        found == expected,
        "decided once",
        f"read model {found}, expected {expected} (each key one registration, "
        "the quota sold exactly, nothing oversold)",
    )
    convention = (await client.get(f"/api/v1/conventions/{convention_id}")).json()
    badge = convention["badge_types"][0]
    findings.check(
        (badge["sold"], badge["remaining"]) == (plan.quota, 0),
        "seats",
        f"sold {badge['sold']}, remaining {badge['remaining']} of {plan.quota}",
    )

    await check_reporting(findings, settings, convention_id, expected)

    again = await retry_every_key(rush)
    findings.check(not again, "same answer", f"{len(again)} keys answered otherwise: {again[:5]}")

    await check_rooms(findings, rush, settings.model_copy(update={"partner_url": partner_url}))
    await check_rebuilds(findings, stack)
    check_no_crash(findings, stack)


async def check_reporting(
    findings: Findings, settings: Any, convention_id: str, expected: dict[str, int]
) -> None:
    """The reporting database analysts query: the same registrations, and every event of the
    registration topic archived once (however often the relay wrote it)."""
    from sqlalchemy import func, select

    from projections.reporting import tables as rt
    from schemas.topics import Topics
    from tests.support import engine_for, read_topic

    topic = Topics(settings.topic_prefix).registration_events
    events = {
        json.loads(record.value)["message_id"] for record in await read_topic(settings, topic)
    }
    f, archive = rt.fact_registrations.c, rt.event_archive

    async def counts() -> tuple[dict[str, int], int]:
        with contextlib.suppress(Exception):
            async with engine_for(settings.db.reporting_url) as engine, engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(f.status, f.reason, func.count())
                        .where(f.convention_id == convention_id)
                        .group_by(f.status, f.reason)
                    )
                ).all()
                archived = (
                    await conn.execute(
                        select(func.count()).select_from(archive).where(archive.c.topic == topic)
                    )
                ).scalar_one()
            return {f"{s}:{r}" if r else s: n for s, r, n in rows}, int(archived)
        return {}, 0

    found = await poll(counts, lambda c: c == (expected, len(events)), SETTLE_TIMEOUT)
    findings.check(
        found == (expected, len(events)),
        "reporting",
        f"facts {found[0]}; {found[1]} events archived of the {len(events)} in the topic",
    )


async def retry_every_key(rush: Rush) -> list[str]:
    """Each registration sent again with its key: the same registration, now decided."""
    differ: list[str] = []
    gate = asyncio.Semaphore(16)
    url = f"/api/v1/conventions/{rush.convention_id}/registrations"

    async def one(n: int, first: Answer) -> None:
        async with gate:
            answer = await rush.send(f"retry {n}", url, rush.body(n), f"fault-{n}")
        if answer is None:
            differ.append(f"{n}: unanswered")
            return
        if first.status == 202:
            same = answer.status in (201, 409) and answer.body.get("registration_id", "") in (
                "",
                first.body.get("registration_id"),
            )
        else:
            same = answer.status == first.status and answer.body.get("status") == first.body.get(
                "status"
            )
        if not same:
            differ.append(f"{n}: {first.status} {first.body} then {answer.status} {answer.body}")

    await asyncio.gather(*(one(n, first) for n, first in rush.registrations.items()))
    return differ


async def check_rooms(findings: Findings, rush: Rush, settings: Any) -> None:
    from consumers.lodging.circuit import CircuitBreaker
    from consumers.lodging.partner import PartnerClient
    from consumers.lodging.reconcile import Reconciler
    from infra.db import make_engine

    client, convention_id = rush.client, rush.convention_id
    odd = {rid: a.status for rid, a in rush.rooms.items() if a.status != 202}
    findings.check(not odd, "room answers", f"{len(rush.rooms)} room requests, {len(odd)} not 202")

    async def unsettled() -> int:
        total = 0
        for status in ROOM_UNSETTLED:
            total += len(await room_listing(client, convention_id, status))
        return total

    left = await poll(unsettled, lambda n: n == 0, SETTLE_TIMEOUT)
    final = Counter(item["status"] for item in await room_listing(client, convention_id))
    findings.check(
        left == 0 and sum(final.values()) == len(rush.rooms),
        "rooms settled",
        f"{dict(final)} for {len(rush.rooms)} requests, {left} unsettled",
    )
    engine = make_engine(settings.db.write_url, pool_size=1)
    partner = PartnerClient(settings.partner_base_url, 10.0, CircuitBreaker(100, 1.0))
    await partner.start()
    try:
        found = await Reconciler(engine, partner).reconcile(uuid.UUID(convention_id), repair=False)
    finally:
        await partner.close()
        await engine.dispose()
    findings.check(
        not found.drifts,
        "partner",
        f"{len(found.drifts)} drifts between our bookings and the partner's"
        + (f": {[d.kind.value for d in found.drifts[:5]]}" if found.drifts else ""),
    )


async def check_rebuilds(findings: Findings, stack: Stack) -> None:
    """Each replayable read model rebuilt from the topics beside the live one and compared
    table by table (`butterfly replay`), and the deciders' state folded from their events
    (`butterfly rebuild write`)."""
    from projections.replay import REPLAYABLE

    env = {**os.environ, **role_environment(stack), "BUTTERFLY_ENV_FILE": ""}
    for name in (*REPLAYABLE, "write"):
        argv = ["replay", name, "--drop-old"] if name != "write" else ["rebuild", "write"]
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "infra.cli", *argv],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = (done.stdout + done.stderr).strip().splitlines()
        tail = output[-1:] or [""]
        if done.returncode != 0:
            for text in output[-40:]:
                line(name, text)
        findings.check(
            done.returncode == 0,
            "rebuilt",
            f"{name}: " + ("equal to the live tables" if done.returncode == 0 else tail[0][:300]),
        )


def check_no_crash(findings: Findings, stack: Stack) -> None:
    """Every role rode its faults out: the only exits the supervisor saw were the SIGKILLs
    (return code -9); a role that died of a database or broker away would have to be
    restarted to recover, which the design does not count on."""
    crashes: Counter[str] = Counter()
    if stack.log_path is not None and stack.log_path.exists():
        for raw in stack.log_path.read_text(errors="replace").splitlines():
            if '"role exited"' not in raw:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if entry.get("returncode") != -signal.SIGKILL:
                    crashes[f"{entry.get('role')} (exit {entry.get('returncode')})"] += 1
    findings.check(
        not crashes,
        "no crash",
        "no role exited but those killed"
        if not crashes
        else f"roles exited on their own: {dict(crashes)}",
    )


def role_environment(stack: Stack) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "DATABASE_URL": stack.database_url,
        "BUTTERFLY_TOPIC_PREFIX": stack.topic_prefix,
        "BUTTERFLY_DB_PREFIX": stack.db_prefix,
    }


async def statuses(settings: Any, convention_id: uuid.UUID) -> dict[str, int]:
    from tests.support import statuses as read_statuses

    with contextlib.suppress(Exception):
        return await read_statuses(settings, convention_id)
    return {}


@contextlib.contextmanager
def own_services(run_dir: Path) -> Iterator[tuple[LocalMariaDB, EmbeddedBroker]]:
    """A MariaDB and a broker of this run's own, named to `butterfly dev` by the environment."""
    mariadb = LocalMariaDB(run_dir / "db", free_port())
    broker = EmbeddedBroker(free_port(), run_dir / "broker.log")
    asyncio.run(mariadb.start())
    try:
        asyncio.run(broker.start())
        try:
            yield mariadb, broker
        finally:
            broker.stop()
    finally:
        mariadb.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the short form CI runs")
    parser.add_argument("--keep-logs", action="store_true", help="keep the stack's run folder")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    section(f"Faults under load ({'short' if args.short else 'full'} form, {os.cpu_count()} cores)")
    run_dir = Path(tempfile.mkdtemp(prefix="butterfly-faults-"))
    failures: list[str] = []
    with own_services(run_dir) as (mariadb, broker):
        os.environ.update(
            {
                "DATABASE_URL": mariadb.url + "/",
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "BUTTERFLY_REPLICAS": REPLICAS,
                "BUTTERFLY_LODGING_CALL_TIMEOUT_SECONDS": "2",
                "BUTTERFLY_REDIS_NAMESPACE": f"faults-{run_dir.name}",
                "BUTTERFLY_ENV_FILE": "",
            }
        )
        stack = start_stack()
        keep = args.keep_logs
        try:
            findings = asyncio.run(exercise(stack, mariadb, broker, plan))
            failures = findings.failures
        except BenchError as exc:
            failures = [str(exc)]
            keep = True
        finally:
            stop_stack(stack, keep_logs=keep or bool(failures))
    if not (failures or args.keep_logs):
        shutil.rmtree(run_dir, ignore_errors=True)
    section("Result")
    if failures:
        line("logs", f"kept in {run_dir}")
        for failure in failures:
            line("failed", failure)
        return 1
    line("result", "every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
