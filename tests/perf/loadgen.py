"""The bench's Python load: rawhttp clients in processes of their own, closed or open loop.

wrk sends the closed-loop load when it can be had (tests/perf/wrk.py); this sends the rush
(its retries re-use Idempotency-Keys, its e-mails repeat), the open-loop overload, and the
closed loop when wrk is missing. Client processes are spawned and import this module again:
Butterfly's composition root, SQLAlchemy and aiokafka are imported where they are used, so a
client starts in 0.3 s, not 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from queue import Empty
from typing import TypeVar

import psutil

from tests.perf import rawhttp
from tests.perf.common import (
    BADGE,
    REGISTRATION_PREFIX,
    BenchError,
    line,
    percentile,
)

CLIENT_TIMEOUT = 60.0
KEEPALIVE_EXPIRY = 2.0
"""Below uvicorn's 5 s keep-alive, so a client does not reuse a connection the server is closing."""
START_MARGIN = 0.1

T = TypeVar("T")


@dataclass(frozen=True)
class Shot:
    """One registration request: its place in the send order and what it sends."""

    index: int
    email: str
    name: str
    key: str
    """The Idempotency-Key; empty: none sent."""


@dataclass(frozen=True)
class Answer:
    index: int
    status: int
    """HTTP status, 0 when the request failed without an answer."""
    scheduled: float
    sent: float
    answered: float
    registration_id: str
    detail: str
    """A 409's rejection reason, a 503's Retry-After, else what went wrong (an exception or
    a body); empty for 201 and 202."""


@dataclass(frozen=True)
class ClientJob:
    base_url: str
    path: str
    shots: tuple[Shot, ...]
    """Empty: a closed loop of fresh registrations named after `tag`, for `duration` seconds."""
    connections: int
    rate: float
    """Requests per second of the whole run (open loop); 0 means closed loop."""
    duration: float = 0.0
    tag: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ClientRun:
    answers: list[Answer]
    cpu: float
    """CPU seconds (user + system) the client processes used from the go to their last answer."""
    busy: float
    """CPU seconds the whole machine used (all cores, every process) over the same time."""
    wall: float


@dataclass(frozen=True)
class LoadResult:
    """A closed-loop run for a duration, whichever client sent it."""

    driver: str
    requests: int
    seconds: float
    statuses: Counter[int]
    """Answers by HTTP status; 0 counts requests that got no answer."""
    latency: Mapping[str, float]
    """p50, p90, p99 and max, in seconds, of the answered requests."""
    no_retry_after: int
    """503 answers without a Retry-After header."""
    cpu: float
    """CPU seconds the load generator used."""

    def count(self, *statuses: int) -> int:
        return sum(self.statuses[s] for s in statuses)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)


def load_result(run: ClientRun) -> LoadResult:
    answers = run.answers
    latencies = sorted(a.answered - a.sent for a in answers if a.status)
    return LoadResult(
        driver="rawhttp",
        requests=len(answers),
        seconds=run.wall,
        statuses=Counter(a.status for a in answers),
        latency={
            "p50": percentile(latencies, 50) if latencies else 0.0,
            "p90": percentile(latencies, 90) if latencies else 0.0,
            "p99": percentile(latencies, 99) if latencies else 0.0,
            "max": latencies[-1] if latencies else 0.0,
        },
        no_retry_after=sum(1 for a in answers if a.status == 503 and not a.detail),
        cpu=run.cpu,
    )


def client_process(
    job: ClientJob, ready: Queue[int], go: Queue[float], results: Queue[tuple[list[Answer], float]]
) -> None:
    results.put(asyncio.run(_client(job, ready, go)))


async def _client(
    job: ClientJob, ready: Queue[int], go: Queue[float]
) -> tuple[list[Answer], float]:
    """The answers to the job's shots, and the CPU seconds this process spent on them."""
    async with contextlib.AsyncExitStack() as stack:
        posts = await _raw_posts(job, stack)
        ready.put(os.getpid())
        t0 = await asyncio.to_thread(go.get)
        cpu = time.process_time()
        delay = t0 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if job.rate > 0:
            answers = await _open_loop(posts, job, t0)
        else:
            answers = await _closed_loop(posts, job, t0)
        return answers, time.process_time() - cpu


Client = rawhttp.Connection | rawhttp.Pool


async def _raw_posts(job: ClientJob, stack: contextlib.AsyncExitStack) -> list[Client]:
    """A connection per lane (closed loop), or one pool of all the connections (open loop)."""
    lanes = max(1, job.connections)
    timeout, expiry = CLIENT_TIMEOUT, KEEPALIVE_EXPIRY
    if job.rate > 0:
        pool = rawhttp.Pool(job.base_url, lanes, timeout=timeout, keepalive_expiry=expiry)
        return [await stack.enter_async_context(pool)]
    return [
        await stack.enter_async_context(
            rawhttp.Connection(job.base_url, timeout=timeout, keepalive_expiry=expiry)
        )
        for _ in range(lanes)
    ]


def _fresh_shots(job: ClientJob) -> Iterator[Shot]:
    n = 0
    while True:
        yield Shot(n, f"{job.tag}-{n}@bench.example", "Bench User", "")
        n += 1


async def _closed_loop(posts: Sequence[Client], job: ClientJob, t0: float) -> list[Answer]:
    """One lane per connection; a lane sends its next shot once the last one is answered,
    until the shots or the duration run out."""
    shots = iter(job.shots) if job.shots else _fresh_shots(job)
    stop = t0 + job.duration if job.duration else math.inf
    answers: list[Answer] = []

    async def lane(post: Client) -> None:
        for shot in shots:
            answers.append(await _register(post, job, shot, None))
            if time.perf_counter() >= stop:
                return

    await asyncio.gather(*(lane(post) for post in posts))
    return answers


async def _open_loop(posts: Sequence[Client], job: ClientJob, t0: float) -> list[Answer]:
    """Each shot goes at its slot of a fixed timetable, however slow the answers are."""
    tasks = []
    for n, shot in enumerate(job.shots):
        scheduled = t0 + shot.index / job.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        post = posts[n % len(posts)]
        tasks.append(asyncio.create_task(_register(post, job, shot, scheduled)))
    return list(await asyncio.gather(*tasks))


async def _register(client: Client, job: ClientJob, shot: Shot, scheduled: float | None) -> Answer:
    body = json.dumps(
        {"email": shot.email, "name": shot.name, "badge_type": BADGE},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    headers = dict(job.headers)
    if shot.key:
        headers["Idempotency-Key"] = shot.key
    sent = time.perf_counter()
    try:
        response = await client.post(job.path, body, headers)
    except rawhttp.HTTPError as exc:
        return Answer(
            shot.index,
            0,
            scheduled or sent,
            sent,
            time.perf_counter(),
            "",
            f"{type(exc).__name__}: {exc}"[:200],
        )
    answered = time.perf_counter()
    status = response.status
    location = response.headers.get("location", "")
    registration_id = location.removeprefix(REGISTRATION_PREFIX).split("?")[0]
    detail = ""
    if status == 409:
        try:
            detail = str(response.json().get("reason") or "")
        except (ValueError, AttributeError):
            detail = response.text[:200]
    elif status == 503:
        detail = response.headers.get("retry-after", "")
    elif status not in (201, 202):
        detail = response.text[:200]
    return Answer(shot.index, status, scheduled or sent, sent, answered, registration_id, detail)


def split(
    base_url: str,
    path: str,
    shots: Sequence[Shot],
    processes: int,
    connections: int,
    rate: float,
) -> list[ClientJob]:
    """Interleaved shares of the shots, so every process keeps the overall order."""
    return [
        ClientJob(
            base_url,
            path,
            tuple(shots[w::processes]),
            connections // processes + (1 if w < connections % processes else 0),
            rate,
        )
        for w in range(processes)
    ]


def busy_cpu() -> float:
    """CPU seconds the machine has spent other than idle, over all cores, since boot."""
    times = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, field, 0.0) for field in fields))


def run_clients(jobs: Sequence[ClientJob], abort: threading.Event) -> ClientRun:
    """Start one process per job, let them go together, and gather every answer."""
    ctx = multiprocessing.get_context("spawn")
    ready: Queue[int] = ctx.Queue()
    go: Queue[float] = ctx.Queue()
    results: Queue[tuple[list[Answer], float]] = ctx.Queue()
    processes = [
        ctx.Process(target=client_process, args=(job, ready, go, results), daemon=True)
        for job in jobs
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            _take(ready, processes, abort)
        busy = busy_cpu()
        t0 = time.perf_counter() + START_MARGIN
        for _ in processes:
            go.put(t0)
        answers: list[Answer] = []
        cpu = 0.0
        for _ in processes:
            share, spent = _take(results, processes, abort)
            answers.extend(share)
            cpu += spent
        wall = time.perf_counter() - t0
        busy = busy_cpu() - busy
        for process in processes:
            process.join()
        return ClientRun(answers, cpu, busy, wall)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()


def _take(queue: Queue[T], processes: Sequence[BaseProcess], abort: threading.Event) -> T:
    while True:
        try:
            return queue.get(timeout=0.5)
        except Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if failed:
                raise BenchError(f"a client process died (exit codes {failed})") from None
            if abort.is_set():
                raise BenchError("aborted") from None


def client_cpu(run: ClientRun) -> None:
    """What the load generator cost: it shares the machine with the stack it measures."""
    if not run.answers or run.wall <= 0:
        return
    cores = os.cpu_count() or 1
    line(
        "client CPU",
        f"rawhttp: {run.cpu:.2f} s = {run.cpu / len(run.answers) * 1000:.2f} ms/request, "
        f"{run.cpu / run.wall:.0%} of a core; {run.cpu / max(run.busy, 1e-9):.0%} of the "
        f"{run.busy:.1f} CPU s the machine used ({run.busy / (cores * run.wall):.0%} of "
        f"{cores} cores for {run.wall:.1f} s)",
    )
