"""`make bench`: a registration rush against Butterfly, and the figures that matter.

Uses the stack at BENCH_URL if its /health answers 200; otherwise starts its own
(`python -m infra.cli dev` on free ports, with its own topics, databases and run folder) and
removes it afterwards. Phases:

- rush: N registrations for Q seats, C at a time, each answered with its decision;
- rival: the same rush against the app a user would pick instead (tests/perf/rival.py: one
  Litestar process, one MariaDB transaction per registration, the badge row locked FOR UPDATE),
  started here in a process and a database of its own, and the ratio of the two (`--no-rival`
  skips it);
- steady: an open-loop arrival rate of R registrations/s for D seconds;
- rebuild: the website projection replayed from the topics into throwaway databases;
- memory: the peak resident memory (VmHWM) of every process of the stack.

The load (the rush's and the steady phase's POSTs) goes through `rawhttp`, a bare asyncio
HTTP/1.1 client: on a small machine the load generator shares the CPU with the stack, and httpx
costs ten times its CPU per request. `--client httpx` sends the load through httpx instead; the
few admin calls always use httpx. Each phase prints the CPU its client processes used.

Figures only: nothing here fails on timing. Consistency checks print MISMATCH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import random
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import psutil

# Run as a script, only tests/perf is on sys.path: the repository root makes tests.perf importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from schemas.topics import Topics
from tests.perf import rawhttp

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from infra.settings import Settings

# Client processes are spawned and import this module again: Butterfly's composition root,
# SQLAlchemy and aiokafka are imported where they are used, so a client starts in 0.3 s, not 3.

REPO = Path(__file__).resolve().parents[2]
BADGE = "STD"
REGISTRATION_PREFIX = "/api/v1/registrations/"
DECIDED = (201, 409)

CLIENT_TIMEOUT = 60.0
STEADY_CONNECTIONS = 1024
KEEPALIVE_EXPIRY = 2.0
"""Below uvicorn's 5 s keep-alive, so a client does not reuse a connection the server is closing."""
CONNECTIONS_PER_CLIENT = 16
"""With `--client httpx`: httpcore's pool scans every connection for every queued request:
one pool of 256 connections costs the client more CPU than the gateway spends. So the rush gives
each lane a client of its own (one connection) and the steady phase spreads requests over
clients with pools this size. The raw client needs none of this: a connection per lane in the
rush, one pool of all the connections in the steady phase."""
START_MARGIN = 0.1
POLL_INTERVAL = 0.05
HEALTH_INTERVAL = 0.2
STACK_START_TIMEOUT = 120.0
STACK_STOP_TIMEOUT = 40.0
SETTLE_TIMEOUT = 60.0
REBUILD_TIMEOUT = 120.0
LISTING_PAGE = 500

CLIENTS = ("raw", "httpx")

T = TypeVar("T")

Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[tuple[int, Mapping[str, str], bytes]]]
"""Sends a POST of a JSON body with extra headers to a path; returns (status, headers, body),
the headers looked up by lower-case name."""
LOAD_ERRORS = (httpx.HTTPError, rawhttp.HTTPError)


class BenchError(RuntimeError):
    """The bench cannot go on; the message says why."""


@dataclass(frozen=True)
class Shot:
    """One registration request: its place in the send order and what it sends."""

    index: int
    email: str
    name: str
    key: str


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
    """The rejection reason of a 409, else what went wrong (an exception or a body)."""


@dataclass(frozen=True)
class ClientJob:
    base_url: str
    path: str
    shots: tuple[Shot, ...]
    connections: int
    rate: float
    """Requests per second of the whole run (open loop); 0 means closed loop."""
    client: str
    """Which HTTP client sends the load: one of CLIENTS."""


@dataclass(frozen=True)
class ClientRun:
    answers: list[Answer]
    cpu: float
    """CPU seconds (user + system) the client processes used from the go to their last answer."""
    busy: float
    """CPU seconds the whole machine used (all cores, every process) over the same time."""
    wall: float


@dataclass
class Stack:
    base_url: str
    admin_token: str
    bootstrap: str
    topic_prefix: str
    database_url: str
    db_prefix: str
    process: subprocess.Popen[bytes] | None = None
    run_dir: Path | None = None
    owns_broker: bool = False

    @property
    def log_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "stack.log"

    def settings(self, **update: object) -> Settings:
        from infra.settings import Settings

        return Settings().model_copy(
            update={
                "kafka_bootstrap_servers": self.bootstrap,
                "topic_prefix": self.topic_prefix,
                "database_url": self.database_url,
                "db_prefix": self.db_prefix,
                **update,
            }
        )


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


# Client processes: each runs its share of the shots on its own event loop and connections.


def client_process(
    job: ClientJob, ready: Queue[int], go: Queue[float], results: Queue[tuple[list[Answer], float]]
) -> None:
    results.put(asyncio.run(_client(job, ready, go)))


async def _client(
    job: ClientJob, ready: Queue[int], go: Queue[float]
) -> tuple[list[Answer], float]:
    """The answers to the job's shots, and the CPU seconds this process spent on them."""
    async with contextlib.AsyncExitStack() as stack:
        if job.client == "httpx":
            posts = await _httpx_posts(job, stack)
        else:
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
            answers = await _closed_loop(posts, job)
        return answers, time.process_time() - cpu


async def _raw_posts(job: ClientJob, stack: contextlib.AsyncExitStack) -> list[Post]:
    """A connection per lane (closed loop), or one pool of all the connections (open loop)."""
    lanes = max(1, job.connections)
    timeout, expiry = CLIENT_TIMEOUT, KEEPALIVE_EXPIRY
    if job.rate > 0:
        pool = rawhttp.Pool(job.base_url, lanes, timeout=timeout, keepalive_expiry=expiry)
        return [(await stack.enter_async_context(pool)).post]
    return [
        (
            await stack.enter_async_context(
                rawhttp.Connection(job.base_url, timeout=timeout, keepalive_expiry=expiry)
            )
        ).post
        for _ in range(lanes)
    ]


async def _httpx_posts(job: ClientJob, stack: contextlib.AsyncExitStack) -> list[Post]:
    per_client = 1 if job.rate <= 0 else CONNECTIONS_PER_CLIENT
    tls = ssl.create_default_context()
    clients = [
        await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=job.base_url,
                limits=httpx.Limits(
                    max_connections=per_client,
                    max_keepalive_connections=per_client,
                    keepalive_expiry=KEEPALIVE_EXPIRY,
                ),
                timeout=httpx.Timeout(CLIENT_TIMEOUT),
                verify=tls,
            )
        )
        for _ in range(max(1, math.ceil(job.connections / per_client)))
    ]
    return [_httpx_post(client) for client in clients]


def _httpx_post(client: httpx.AsyncClient) -> Post:
    async def post(
        path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        response = await client.post(
            path, content=body, headers={"Content-Type": "application/json", **headers}
        )
        return response.status_code, response.headers, response.content

    return post


async def _closed_loop(posts: Sequence[Post], job: ClientJob) -> list[Answer]:
    """One lane per connection; a lane sends its next shot once the last one is answered."""
    shots = iter(job.shots)
    answers: list[Answer] = []

    async def lane(post: Post) -> None:
        for shot in shots:
            answers.append(await _register(post, job.path, shot, None))

    await asyncio.gather(*(lane(post) for post in posts))
    return answers


async def _open_loop(posts: Sequence[Post], job: ClientJob, t0: float) -> list[Answer]:
    """Each shot goes at its slot of a fixed timetable, however slow the answers are."""
    tasks = []
    for n, shot in enumerate(job.shots):
        scheduled = t0 + shot.index / job.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        post = posts[n % len(posts)]
        tasks.append(asyncio.create_task(_register(post, job.path, shot, scheduled)))
    return list(await asyncio.gather(*tasks))


async def _register(post: Post, path: str, shot: Shot, scheduled: float | None) -> Answer:
    body = json.dumps(
        {"email": shot.email, "name": shot.name, "badge_type": BADGE},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    sent = time.perf_counter()
    try:
        status, headers, content = await post(path, body, {"Idempotency-Key": shot.key})
    except LOAD_ERRORS as exc:
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
    location = headers.get("location", "")
    registration_id = location.removeprefix(REGISTRATION_PREFIX) if location else ""
    text = content.decode("utf-8", "replace")
    detail = ""
    if status == 409:
        try:
            detail = str(json.loads(content).get("reason") or "")
        except (ValueError, AttributeError):
            detail = text[:200]
    elif status not in (201, 202):
        detail = text[:200]
    return Answer(shot.index, status, scheduled or sent, sent, answered, registration_id, detail)


def split(
    base_url: str,
    path: str,
    shots: Sequence[Shot],
    processes: int,
    connections: int,
    rate: float,
    client: str,
) -> list[ClientJob]:
    """Interleaved shares of the shots, so every process keeps the overall order."""
    return [
        ClientJob(
            base_url,
            path,
            tuple(shots[w::processes]),
            connections // processes + (1 if w < connections % processes else 0),
            rate,
            client,
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


# The stack: found at BENCH_URL, or started here and removed afterwards.


def find_stack(url: str) -> Stack | None:
    from infra.settings import Settings

    try:
        status = httpx.get(f"{url}/health", timeout=3).status_code
    except httpx.HTTPError:
        return None
    if status != 200:
        print(f"  {url}/health answered {status}: starting a stack of its own", flush=True)
        return None
    settings = Settings()
    token = settings.admin_token
    token_file = REPO / settings.run_dir / "admin_token"
    if not token and token_file.exists():
        token = token_file.read_text().strip()
    if not token:
        raise BenchError(
            f"{url} answers but there is no admin token: set "
            f"BUTTERFLY_ADMIN_TOKEN or write it to {token_file}"
        )
    return Stack(
        base_url=url,
        admin_token=token,
        bootstrap=settings.kafka_bootstrap_servers or f"127.0.0.1:{settings.embedded_kafka_port}",
        topic_prefix=settings.topic_prefix,
        database_url=settings.database_url,
        db_prefix=settings.db_prefix,
    )


def start_stack() -> Stack:
    from infra.services import free_port
    from infra.settings import Settings

    tag = secrets.token_hex(4)
    http_port = free_port()
    kafka_port = free_port()
    while kafka_port == http_port:
        kafka_port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix=f"butterfly-bench-{tag}-"))
    settings = Settings()
    stack = Stack(
        base_url=f"http://127.0.0.1:{http_port}",
        admin_token=secrets.token_urlsafe(24),
        bootstrap=settings.kafka_bootstrap_servers or f"127.0.0.1:{kafka_port}",
        topic_prefix=f"bench{tag}.",
        database_url=settings.database_url,
        db_prefix=f"bench_{tag}",
        run_dir=run_dir,
        owns_broker=not settings.kafka_bootstrap_servers,
    )
    overrides = {
        "BUTTERFLY_HTTP_PORT": str(http_port),
        "BUTTERFLY_EMBEDDED_KAFKA_PORT": str(kafka_port),
        "BUTTERFLY_TOPIC_PREFIX": stack.topic_prefix,
        "BUTTERFLY_DB_PREFIX": stack.db_prefix,
        "BUTTERFLY_RUN_DIR": str(run_dir),
        "BUTTERFLY_ADMIN_TOKEN": stack.admin_token,
    }
    assert stack.log_path is not None
    started = time.perf_counter()
    with stack.log_path.open("wb") as log:
        stack.process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "dev"],
            cwd=REPO,
            env={**os.environ, **overrides},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(stack)
    except BaseException:
        stop_stack(stack, keep_logs=True)
        raise
    environment = _role_environment(stack.process.pid)
    stack.bootstrap = environment.get("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap)
    stack.database_url = environment.get("DATABASE_URL", stack.database_url)
    line(
        "stack",
        f"started by the bench in {time.perf_counter() - started:.1f} s: "
        f"{stack.base_url}, Kafka {stack.bootstrap}, topics {stack.topic_prefix}*, "
        f"databases {stack.db_prefix}_*",
    )
    return stack


def _wait_healthy(stack: Stack) -> None:
    assert stack.process is not None
    deadline = time.perf_counter() + STACK_START_TIMEOUT
    with httpx.Client(base_url=stack.base_url, timeout=3) as client:
        while True:
            returncode = stack.process.poll()
            if returncode is not None:
                raise BenchError(
                    f"the stack exited with code {returncode} while starting:\n" + _log_tail(stack)
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/health").status_code == 200:
                    return
            if time.perf_counter() > deadline:
                raise BenchError(
                    f"the stack did not answer /health within "
                    f"{STACK_START_TIMEOUT:g} s:\n" + _log_tail(stack)
                )
            time.sleep(HEALTH_INTERVAL)


def _log_tail(stack: Stack, lines: int = 30) -> str:
    if stack.log_path is None or not stack.log_path.exists():
        return "(no log)"
    return "\n".join(stack.log_path.read_text(errors="replace").splitlines()[-lines:])


def _role_environment(dev_pid: int) -> dict[str, str]:
    """The environment the supervisor gave its roles: which broker and MariaDB it chose."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(dev_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if role_of(child.cmdline()) == "gateway":
                    environment: dict[str, str] = child.environ()
                    return environment
    return {}


def stop_stack(stack: Stack, *, keep_logs: bool) -> None:
    from infra.migrate import drop_databases

    process = stack.process
    if process is None:
        return
    started = time.perf_counter()
    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        family = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STACK_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        mismatch(f"the stack ignored SIGTERM for {STACK_STOP_TIMEOUT:g} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    leftovers = [p for p in family if p.is_running()]
    for child in leftovers:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(leftovers, timeout=5)
    section("Stack shutdown")
    line(
        "stopped",
        f"in {time.perf_counter() - started:.1f} s, exit code {process.returncode}"
        + (f", {len(leftovers)} orphaned processes killed" if leftovers else ""),
    )
    summarise_log(stack)
    try:
        asyncio.run(drop_databases(stack.settings()))
        line("databases", f"dropped {stack.db_prefix}_*")
    except Exception as exc:
        line("databases", f"could not drop {stack.db_prefix}_*: {exc!r}")
    if not stack.owns_broker:
        asyncio.run(_delete_topics(stack))
    if stack.run_dir is not None:
        if keep_logs:
            line("logs", f"kept in {stack.run_dir}")
        else:
            shutil.rmtree(stack.run_dir, ignore_errors=True)


async def _delete_topics(stack: Stack) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap, request_timeout_ms=15000)
    try:
        await admin.start()
        await admin.delete_topics(list(Topics(stack.topic_prefix).all()))
        line("topics", f"deleted {stack.topic_prefix}*")
    except Exception as exc:
        line("topics", f"could not delete {stack.topic_prefix}*: {exc!r}")
    finally:
        await admin.close()


def summarise_log(stack: Stack) -> None:
    """Warnings and errors the stack logged, grouped, so trouble shows in the report."""
    if stack.log_path is None or not stack.log_path.exists():
        return
    seen: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for raw in stack.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            if raw.strip() and any(word in raw for word in ("Error", "ERROR", "Traceback")):
                other[raw.strip()[:160]] += 1
            continue
        if not isinstance(entry, dict):
            continue
        level = str(entry.get("level", "")).lower()
        if level in ("warning", "error", "critical", "exception"):
            seen[f"{level} {entry.get('role', '?')}: {entry.get('message', '')}"] += 1
    if not seen and not other:
        line("stack log", "no warnings or errors")
        return
    for text, count in (seen + other).most_common(12):
        line("stack log", f"{count} x {text}")


# Phases.


def rush_shots(
    n: int, repeat_share: float, retry_share: float, rng: random.Random, tag: str
) -> tuple[list[Shot], int]:
    """N shots: distinct registrations (some re-using an earlier e-mail) plus retries of
    earlier ones with the same Idempotency-Key and body, each placed after its original.
    Returns the shots and how many distinct registrations they hold."""
    retries = round(n * retry_share)
    originals = n - retries
    emails: list[str] = []
    for i in range(originals):
        if i and rng.random() < repeat_share:
            emails.append(emails[rng.randrange(i)])
        else:
            emails.append(f"rush-{tag}-{i}@bench.example")
    order = list(range(originals))
    for _ in range(retries):
        original = rng.randrange(originals)
        order.insert(rng.randint(order.index(original) + 1, len(order)), original)
    return [
        Shot(i, emails[o], f"Attendee {o}", f"rush-{tag}-{o}") for i, o in enumerate(order)
    ], originals


async def create_open_convention(admin: httpx.AsyncClient, name: str, quota: int) -> str:
    body = {
        "name": name,
        "starts_on": "2027-01-01",
        "ends_on": "2027-01-03",
        "badge_types": [{"code": BADGE, "name": "Standard", "price_cents": 5000, "quota": quota}],
    }
    response = await admin.post(
        "/api/v1/admin/conventions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    if response.status_code not in (201, 202):
        raise BenchError(
            f"creating a convention answered {response.status_code}: {response.text[:300]}"
        )
    convention_id = str(response.json()["convention_id"])
    await eventually(
        lambda: admin.get(f"/api/v1/admin/conventions/{convention_id}"),
        lambda r: r.status_code == 200,
        within=30,
        what="the new convention",
    )
    response = await admin.post(
        f"/api/v1/admin/conventions/{convention_id}/open",
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    if response.status_code not in (200, 202):
        raise BenchError(
            f"opening the convention answered {response.status_code}: {response.text[:300]}"
        )
    await eventually(
        lambda: admin.get(f"/api/v1/conventions/{convention_id}"),
        lambda r: r.status_code == 200 and r.json()["status"] == "open",
        within=30,
        what="the convention to open",
    )
    return convention_id


async def badge(admin: httpx.AsyncClient, convention_id: str) -> dict[str, Any]:
    response = await admin.get(f"/api/v1/conventions/{convention_id}")
    response.raise_for_status()
    found: dict[str, Any] = response.json()["badge_types"][0]
    return found


async def pending_left(admin: httpx.AsyncClient, convention_id: str) -> bool:
    response = await admin.get(
        f"/api/v1/admin/conventions/{convention_id}/registrations",
        params={"status": "pending", "limit": 1},
    )
    response.raise_for_status()
    return bool(response.json()["items"])


async def all_registrations(admin: httpx.AsyncClient, convention_id: str) -> list[dict[str, Any]]:
    """Every registration of a convention, through the admin listing's cursor pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": LISTING_PAGE}
        if cursor:
            params["cursor"] = cursor
        response = await admin.get(
            f"/api/v1/admin/conventions/{convention_id}/registrations", params=params
        )
        response.raise_for_status()
        page = response.json()
        items.extend(page["items"])
        cursor = page["next"]
        if not cursor:
            return items


@dataclass(frozen=True)
class Target:
    """What a rush runs against: Butterfly's stack, or the rival app."""

    base_url: str
    create: Callable[[str, int], Awaitable[str]]
    """Creates an open convention of one badge type: (name, quota) -> its id."""
    settle: Callable[[str, Sequence[Answer]], Awaitable[float | None]]
    """When every registration answered 202 was decided; None when every answer was a decision."""
    listing: Callable[[str], Awaitable[tuple[list[dict[str, Any]], dict[str, int]]]]
    """Every registration of a convention (registration_id, email, status) and its badge
    type's counts (sold, remaining)."""
    processes: Callable[[], list[tuple[str, int]]]
    """The server's processes: (role, pid)."""


@dataclass(frozen=True)
class RushFigures:
    decisions_per_s: float
    p99: float


@dataclass(frozen=True)
class Rush:
    """The rush's requests, generated once so Butterfly and the rival get the same load."""

    shots: list[Shot]
    distinct: int
    tag: str


def make_rush(args: argparse.Namespace) -> Rush:
    tag = secrets.token_hex(3)
    rng = random.Random(args.seed)
    shots, distinct = rush_shots(args.requests, args.repeat_share, args.retry_share, rng, tag)
    return Rush(shots, distinct, tag)


def butterfly_target(stack: Stack, admin: httpx.AsyncClient) -> Target:
    async def listing(convention_id: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
        rows = await all_registrations(admin, convention_id)
        found = await badge(admin, convention_id)
        return rows, {"sold": int(found["sold"]), "remaining": int(found["remaining"])}

    return Target(
        base_url=stack.base_url,
        create=lambda name, quota: create_open_convention(admin, name, quota),
        settle=lambda convention_id, answers: settle(admin, convention_id, answers),
        listing=listing,
        processes=lambda: stack_processes(stack),
    )


def process_cpu(pids: Sequence[tuple[str, int]]) -> dict[int, float]:
    """CPU seconds (user + system) each process used so far."""
    spent = {}
    for _, pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            spent[pid] = times.user + times.system
    return spent


def server_cpu(
    pids: Sequence[tuple[str, int]], before: dict[int, float], after: dict[int, float], posts: int
) -> None:
    """CPU milliseconds per POST each server process spent during the rush."""
    total = 0.0
    rows = []
    for role, pid in sorted(pids):
        if pid not in before or pid not in after:
            continue
        spent = after[pid] - before[pid]
        total += spent
        rows.append(f"{role} {spent:.2f} s = {spent / posts * 1000:.2f}")
    line(
        "server CPU",
        f"{total:.2f} s = {total / posts * 1000:.2f} ms/POST over the run, by process "
        "(CPU s = ms/POST):",
    )
    for start in range(0, len(rows), 3):
        line("", ";  ".join(rows[start : start + 3]))


async def rush_phase(
    target: Target,
    rush: Rush,
    args: argparse.Namespace,
    abort: threading.Event,
    title: str,
    about: str = "",
) -> RushFigures:
    shots, distinct = rush.shots, rush.distinct
    emails = len({shot.email for shot in shots})
    expected_sold = min(args.quota, emails)
    section(
        f"{title}: {len(shots)} POSTs = {distinct} registrations ({distinct - emails} "
        f"re-using an e-mail) + {len(shots) - distinct} retries with the same "
        f"Idempotency-Key; Q={args.quota}, C={args.concurrency}, "
        f"{args.clients} client process(es)"
    )
    if about:
        line("server", about)
    convention_id = await target.create(f"Rush {rush.tag}", args.quota)
    path = f"/api/v1/conventions/{convention_id}/registrations"
    jobs = split(target.base_url, path, shots, args.clients, args.concurrency, 0, args.client)
    pids = target.processes()
    cpu_before = process_cpu(pids)
    run = await asyncio.to_thread(run_clients, jobs, abort)
    cpu_after = process_cpu(pids)
    answers = run.answers
    first_sent = min(a.sent for a in answers)
    last_answer = max(a.answered for a in answers)
    settled_at = await target.settle(convention_id, answers)
    decided_at = max([a.answered for a in answers if a.status in DECIDED] + [settled_at or 0])
    rows, counts = await target.listing(convention_id)
    decided = sum(1 for row in rows if row["status"] != "pending")
    statuses = Counter(a.status for a in answers)
    wall = last_answer - first_sent
    line("answered", f"{len(answers)} requests in {wall:.2f} s = {len(answers) / wall:.0f} req/s")
    how = (
        "every POST answered with its decision"
        if settled_at is None
        else "until the last 202 was seen decided"
    )
    decisions_per_s = decided / (decided_at - first_sent)
    line(
        "decided",
        f"{decided} registrations in {decided_at - first_sent:.2f} s = "
        f"{decisions_per_s:.0f} decisions/s ({how})",
    )
    latencies = [a.answered - a.sent for a in answers]
    line("latency", latency_summary(latencies))
    for status in sorted(statuses):
        by_status = [a.answered - a.sent for a in answers if a.status == status]
        line(f"  {status or 'no answer'}", f"{len(by_status)}: {latency_summary(by_status)}")
    reasons = Counter(a.detail for a in answers if a.status == 409)
    other = Counter(f"{a.status} {a.detail}" for a in answers if a.status not in (201, 202, 409))
    line(
        "answers",
        f"201 confirmed {statuses[201]}, 409 rejected {statuses[409]} "
        f"({', '.join(f'{r} {n}' for r, n in reasons.most_common())}), "
        f"202 pending {statuses[202]}, other {sum(other.values())}",
    )
    for text, count in other.most_common(5):
        line("  other", f"{count} x {text}")
    client_cpu(run, args.client)
    server_cpu(pids, cpu_before, cpu_after, len(answers))
    rush_checks(counts, args.quota, expected_sold, shots, answers, rows)
    return RushFigures(decisions_per_s, percentile(sorted(latencies), 99) if latencies else 0.0)


async def settle(
    admin: httpx.AsyncClient, convention_id: str, answers: Sequence[Answer]
) -> float | None:
    """When every registration answered 202 is decided and no row is pending; None when
    every answer already carried its decision."""
    waiting = {a.registration_id for a in answers if a.status == 202}
    if not waiting and all(a.status in DECIDED for a in answers):
        return None

    async def decided(registration_id: str) -> bool:
        response = await admin.get(f"{REGISTRATION_PREFIX}{registration_id}")
        return response.status_code == 200 and response.json()["status"] != "pending"

    async def probe() -> float | None:
        for chunk in [sorted(waiting)[i : i + 50] for i in range(0, len(waiting), 50)]:
            done = await asyncio.gather(*(decided(rid) for rid in chunk))
            waiting.difference_update(rid for rid, ok in zip(chunk, done, strict=True) if ok)
        if waiting or await pending_left(admin, convention_id):
            return None
        return time.perf_counter()

    return await eventually(
        probe, lambda t: t is not None, within=SETTLE_TIMEOUT, what="every registration decided"
    )


def client_cpu(run: ClientRun, client: str) -> None:
    """What the load generator cost: it shares the machine with the stack it measures."""
    if not run.answers or run.wall <= 0:
        return
    cores = os.cpu_count() or 1
    line(
        "client CPU",
        f"{client}: {run.cpu:.2f} s = {run.cpu / len(run.answers) * 1000:.2f} ms/request, "
        f"{run.cpu / run.wall:.0%} of a core; {run.cpu / max(run.busy, 1e-9):.0%} of the "
        f"{run.busy:.1f} CPU s the machine used ({run.busy / (cores * run.wall):.0%} of "
        f"{cores} cores for {run.wall:.1f} s)",
    )


def report_unanswered(answers: Sequence[Answer], shots: Sequence[Shot], listed: int) -> int:
    """Print the registrations none of whose requests got an HTTP answer; returns how many."""
    key_of = {shot.index: shot.key for shot in shots}
    reached = {key_of[a.index] for a in answers if a.status in (201, 202, 409)}
    unanswered = {key_of[a.index] for a in answers} - reached
    if unanswered:
        errors(
            f"{len(unanswered)} registrations got no answer at all (see 'no answer' above); "
            f"{max(listed - len(reached), 0)} of them reached the read model anyway"
        )
    return len(unanswered)


def rush_checks(
    counts: Mapping[str, int],
    quota: int,
    expected_sold: int,
    shots: Sequence[Shot],
    answers: Sequence[Answer],
    rows: Sequence[dict[str, Any]],
) -> None:
    by_status = Counter(str(row["status"]) for row in rows)
    confirmed_emails = [
        str(row["email"]).casefold() for row in rows if row["status"] == "confirmed"
    ]
    confirmed_ids = {str(row["registration_id"]) for row in rows if row["status"] == "confirmed"}
    key_of = {shot.index: shot.key for shot in shots}
    per_key: dict[str, set[tuple[int, str]]] = {}
    for a in answers:
        if a.status in DECIDED:
            per_key.setdefault(key_of[a.index], set()).add((a.status, a.registration_id))
    answered_confirmed = {a.registration_id for a in answers if a.status == 201}
    unanswered = report_unanswered(answers, shots, len(rows))
    checks = [
        ("confirmed rows (admin listing)", by_status["confirmed"], expected_sold),
        ("sold", counts["sold"], expected_sold),
        ("remaining", counts["remaining"], quota - expected_sold),
        ("pending rows", by_status["pending"], 0),
        (
            "e-mails holding two confirmed seats",
            len(confirmed_emails) - len(set(confirmed_emails)),
            0,
        ),
        (
            "registrations answered 201 but not confirmed",
            len(answered_confirmed - confirmed_ids),
            0,
        ),
        (
            "retries answered unlike their original",
            sum(1 for outcomes in per_key.values() if len(outcomes) > 1),
            0,
        ),
        ("registrations listed", len(rows), len({shot.key for shot in shots}) - unanswered),
    ]
    for name, got, expected in checks:
        if got == expected:
            line("check", f"{name}: {got} (ok)")
        else:
            mismatch(f"{name}: {got}, expected {expected}")
    if quota != expected_sold:
        line("note", f"only {expected_sold} distinct e-mails for {quota} seats")


async def steady_phase(
    stack: Stack, admin: httpx.AsyncClient, args: argparse.Namespace, abort: threading.Event
) -> None:
    tag = secrets.token_hex(3)
    total = round(args.rate * args.duration)
    section(
        f"Steady: open loop at R={args.rate:g} req/s for D={args.duration:g} s "
        f"({total} registrations on a fixed timetable), {args.clients} client process(es)"
    )
    convention_id = await create_open_convention(admin, f"Steady {tag}", total + 100)
    shots = [
        Shot(i, f"steady-{tag}-{i}@bench.example", f"Steady {i}", f"steady-{tag}-{i}")
        for i in range(total)
    ]
    path = f"/api/v1/conventions/{convention_id}/registrations"
    jobs = split(
        stack.base_url, path, shots, args.clients, STEADY_CONNECTIONS, args.rate, args.client
    )
    run = await asyncio.to_thread(run_clients, jobs, abort)
    answers = run.answers
    t0 = min(a.scheduled for a in answers)
    last_sent = max(a.sent for a in answers)
    last_answer = max(a.answered for a in answers)
    statuses = Counter(a.status for a in answers)
    send_lag = sorted(a.sent - a.scheduled for a in answers)
    line(
        "sent",
        f"{total} in {last_sent - t0:.2f} s = {total / max(last_sent - t0, 1e-9):.0f} "
        f"req/s (client lag behind the timetable: p99 {ms(percentile(send_lag, 99))}, "
        f"max {ms(send_lag[-1])})",
    )
    line(
        "answered", f"{total} by {last_answer - t0:.2f} s = {total / (last_answer - t0):.0f} req/s"
    )
    line(
        "latency",
        latency_summary([a.answered - a.scheduled for a in answers])
        + "  (from the scheduled send time)",
    )
    line("answers", ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(statuses.items())))
    for text, count in Counter(
        f"{a.status} {a.detail}" for a in answers if a.status != 201
    ).most_common(5):
        line("  not 201", f"{count} x {text}")
    client_cpu(run, args.client)
    await settle(admin, convention_id, answers)
    sold = (await badge(admin, convention_id))["sold"]
    unanswered = report_unanswered(answers, shots, sold)
    taken = statuses[201] + statuses[202]
    if taken <= sold <= taken + unanswered:
        line(
            "check",
            f"sold {sold}: {statuses[201]} answered 201 + {statuses[202]} answered "
            f"202 and decided later + {sold - taken} without an answer (ok)",
        )
    else:
        mismatch(f"sold {sold}, but {statuses[201]} answered 201 and {statuses[202]} 202")


@dataclass(frozen=True)
class TopicSize:
    records: int
    end: int
    """Sum over partitions of the offset after the last record, found by reading."""
    reported_end: int
    """Sum over partitions of the end offsets the broker reports (ListOffsets)."""


async def topic_sizes(bootstrap: str, topics: Sequence[str]) -> dict[str, TopicSize]:
    """Records held per topic. The end of each partition is read rather than trusted: the
    embedded broker reports the end of a partition as its last batch's first offset + 1."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        begins = await consumer.beginning_offsets(partitions)
        reported = await consumer.end_offsets(partitions)
        ends = dict(reported)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, reported[tp])
        while batches := await consumer.getmany(timeout_ms=500, max_records=10_000):
            for tp, records in batches.items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
        return {
            topic: TopicSize(
                records=sum(ends[tp] - begins[tp] for tp in partitions if tp.topic == topic),
                end=sum(ends[tp] for tp in partitions if tp.topic == topic),
                reported_end=sum(reported[tp] for tp in partitions if tp.topic == topic),
            )
            for topic in topics
        }
    finally:
        await consumer.stop()


async def read_model_counts(url: URL) -> dict[str, int]:
    from sqlalchemy import func, select

    from infra.db import make_engine
    from projections.website import tables as read_tables

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            r = read_tables.registrations.c
            counts = {
                f"registrations {status}": int(n)
                for status, n in await conn.execute(
                    select(r.status, func.count()).group_by(r.status)
                )
            }
            counts["seats sold"] = int(
                (
                    await conn.execute(
                        select(func.coalesce(func.sum(read_tables.badge_types.c.sold), 0))
                    )
                ).scalar_one()
            )
            counts["conventions"] = int(
                (
                    await conn.execute(select(func.count()).select_from(read_tables.conventions))
                ).scalar_one()
            )
            counts["command outcomes"] = int(
                (
                    await conn.execute(
                        select(func.count()).select_from(read_tables.command_outcomes)
                    )
                ).scalar_one()
            )
            counts["applied events"] = int(
                (
                    await conn.execute(select(func.count()).select_from(read_tables.applied_events))
                ).scalar_one()
            )
            return counts
    finally:
        await engine.dispose()


async def rebuild_phase(stack: Stack) -> None:
    from sqlalchemy import func, select

    from infra.bootstrap import build_projector
    from infra.db import make_engine
    from infra.migrate import drop_databases, migrate
    from infra.services import kafka_answers
    from projections.website import tables as read_tables

    section(
        "Rebuild: the website projection replayed into throwaway databases "
        "(the running stack is not touched)"
    )
    if not await kafka_answers(stack.bootstrap):
        line("skipped", f"the broker at {stack.bootstrap} does not answer")
        return
    tag = secrets.token_hex(4)
    settings = stack.settings(db_prefix=f"bench_rebuild_{tag}")
    group = f"{stack.topic_prefix}bench-rebuild-{tag}"
    topics = Topics(stack.topic_prefix)
    sources = (topics.registration_events, topics.registration_commands)
    sizes = await topic_sizes(stack.bootstrap, sources)
    events = sizes[topics.registration_events].records
    records = sum(size.records for size in sizes.values())
    target = sum(size.end for size in sizes.values())
    for topic, size in sizes.items():
        if size.reported_end != size.end:
            line(
                "broker note",
                f"{topic}: reported end offsets sum to {size.reported_end}, records run to "
                f"{size.end} (the embedded broker reports the start of its last batch; "
                "consumers check the log itself before refusing a stored position)",
            )
    await migrate(settings)
    engine = make_engine(settings.db.read_url, pool_size=1)
    positions = read_tables.consumer_positions.c
    progress = select(func.coalesce(func.sum(positions.next_offset), 0)).where(
        positions.group_name == group
    )
    try:
        role = build_projector(settings, "website", group=group)
        started = time.perf_counter()
        task = asyncio.create_task(role.run())
        first_batch: float | None = None
        deadline = started + REBUILD_TIMEOUT
        while True:
            async with engine.connect() as conn:
                position = int((await conn.execute(progress)).scalar_one())
            now = time.perf_counter()
            if position and first_batch is None:
                first_batch = now
            if position >= target or task.done() or now > deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        role.stop()
        await asyncio.wait_for(task, 30)
        if position < target:
            mismatch(
                f"the replay reached offset sum {position} of {target} in {now - started:.1f} s"
            )
            return
        total = now - started
        line(
            "replayed",
            f"{events} events + {records - events} commands in {total:.2f} s "
            f"(consumer start and group join included) = {events / total:.0f} events/s, "
            f"{records / total:.0f} records/s",
        )
        if first_batch is not None and now > first_batch:
            line(
                "",
                f"from the first committed batch: {now - first_batch:.2f} s = "
                f"{events / (now - first_batch):.0f} events/s",
            )
        rebuilt = await read_model_counts(settings.db.read_url)
        live = await read_model_counts(stack.settings().db.read_url)
        if rebuilt["applied events"] != events:
            line(
                "note",
                f"{events} records in the events topic, "
                f"{rebuilt['applied events']} distinct events applied",
            )
        if rebuilt == live:
            line(
                "check",
                "rebuilt read model == live read model "
                f"({', '.join(f'{k} {v}' for k, v in sorted(live.items()))}) (ok)",
            )
        else:
            mismatch(f"rebuilt read model {rebuilt} != live read model {live}")
    finally:
        await engine.dispose()
        await drop_databases(settings)


def role_of(cmdline: Sequence[str]) -> str | None:
    """The Butterfly role (or service) a command line runs, if it is one."""
    for i, arg in enumerate(cmdline):
        if arg == "infra.cli" or Path(arg).name == "butterfly":
            rest = list(cmdline[i + 1 :])
            if not rest:
                return None
            if rest[0] == "dev":
                return "dev supervisor"
            if rest[0] in ("decider", "projector") and len(rest) > 1:
                return f"{rest[0]} {rest[1]}"
            return rest[0]
    if cmdline and Path(cmdline[0]).name == "tansu":
        return "tansu broker"
    return None


def peak_memory(pid: int) -> tuple[float, float] | None:
    """(VmHWM, VmRSS) in MB, from /proc/<pid>/status."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for entry in status.splitlines():
        key, _, value = entry.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(value.split()[0]) / 1024
    if len(values) < 2:
        return None
    return values["VmHWM"], values["VmRSS"]


def stack_processes(stack: Stack) -> list[tuple[str, int]]:
    """(role, pid) of every process of the stack: the started stack's family, or processes
    found by command line."""
    if stack.process is not None:
        try:
            candidates = [
                psutil.Process(stack.process.pid),
                *psutil.Process(stack.process.pid).children(recursive=True),
            ]
        except psutil.Error:
            return []
    else:
        candidates = list(psutil.process_iter())
    found = []
    for process in candidates:
        with contextlib.suppress(psutil.Error):
            role = role_of(process.cmdline())
            if role is None and stack.process is not None:
                parent = process.parent()
                role = f"{role_of(parent.cmdline()) if parent else '?'} (child)"
            if role is not None:
                found.append((role, process.pid))
    return found


def memory_phase(stack: Stack) -> None:
    section("Memory: peak resident set (VmHWM) of each process of the stack")
    found = stack_processes(stack)
    if not found:
        line("skipped", "no process of the stack found")
        return
    total = 0.0
    for role, pid in sorted(found):
        memory = peak_memory(pid)
        if memory is None:
            continue
        total += memory[0]
        line(role[:14], f"{memory[0]:7.1f} MB peak, {memory[1]:7.1f} MB now (pid {pid})")
    line("sum of peaks", f"{total:7.1f} MB")
    if stack.process is None:
        line("note", "processes found by command line; another stack's may be among them")


# The rival: what a user would pick instead of the event pipeline (tests/perf/rival.py).

RIVAL_START_TIMEOUT = 30.0
RIVAL_STOP_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def rival_target(stack: Stack) -> AsyncIterator[tuple[Target, str]]:
    """The rival app in a process of its own on a free port, with a database of its own on
    Butterfly's MariaDB server; both removed afterwards."""
    from infra.services import free_port
    from tests.perf import rival

    tag = secrets.token_hex(4)
    server_url = stack.settings().db.server_url()
    name = f"bench_rival_{tag}"
    url = await rival.create_database(server_url, name)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_dir = stack.run_dir or Path(tempfile.mkdtemp(prefix=f"butterfly-rival-{tag}-"))
    log_path = log_dir / "rival.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        process = _start_rival(port, url.render_as_string(hide_password=False), log_path)
        await _wait_rival(process, base_url, log_path)
        pid = process.pid

        async def create(convention: str, quota: int) -> str:
            return await rival.create_convention(url, convention, BADGE, quota)

        async def no_settling(convention_id: str, answers: Sequence[Answer]) -> float | None:
            return None

        target = Target(
            base_url=base_url,
            create=create,
            settle=no_settling,
            listing=lambda convention_id: rival.listing(url, convention_id),
            processes=lambda: [("rival app", pid)],
        )
        yield (
            target,
            "the same rush against a plain app: Litestar + SQLAlchemy/asyncmy in 1 uvicorn "
            "process, one MariaDB transaction per registration, the badge row locked "
            f"FOR UPDATE ({base_url}, database {name}); the Butterfly stack stays up, idle",
        )
    finally:
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=RIVAL_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        text = log_path.read_text(errors="replace").strip() if log_path.exists() else ""
        if text:
            line("rival log", f"{len(text.splitlines())} lines, the last:")
            for entry in text.splitlines()[-5:]:
                line("", entry[:160])
        try:
            await rival.drop_database(server_url, name)
        except Exception as exc:
            line("rival db", f"could not drop {name}: {exc!r}")
        if stack.run_dir is None:
            shutil.rmtree(log_dir, ignore_errors=True)


def _start_rival(port: int, database_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.perf.rival"],
            cwd=REPO,
            env={**os.environ, "RIVAL_PORT": str(port), "RIVAL_DATABASE_URL": database_url},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _wait_rival(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.perf_counter() + RIVAL_START_TIMEOUT
    async with httpx.AsyncClient(base_url=base_url, timeout=3) as client:
        while True:
            if process.poll() is not None:
                raise BenchError(
                    f"the rival exited with code {process.returncode} while starting:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200:
                    return
            if time.perf_counter() > deadline:
                raise BenchError(
                    f"the rival did not answer /health within {RIVAL_START_TIMEOUT:g} s"
                )
            await asyncio.sleep(HEALTH_INTERVAL)


def compare(ours: RushFigures, theirs: RushFigures) -> None:
    section("Butterfly against the rival, same rush")
    line(
        "ratio",
        f"Butterfly / rival: {ours.decisions_per_s / max(theirs.decisions_per_s, 1e-9):.2f}\u00d7 "
        f"decisions/s ({ours.decisions_per_s:.0f} / {theirs.decisions_per_s:.0f}), "
        f"p99 {ours.p99 / max(theirs.p99, 1e-9):.2f}\u00d7 ({ms(ours.p99)} / {ms(theirs.p99)})",
    )


async def run_phases(stack: Stack, args: argparse.Namespace, abort: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=headers, timeout=CLIENT_TIMEOUT
    ) as admin:
        rush = make_rush(args)
        started = time.perf_counter()
        ours = await rush_phase(butterfly_target(stack, admin), rush, args, abort, "Rush")
        line("phase time", f"{time.perf_counter() - started:.1f} s")
        if args.rival:
            started = time.perf_counter()
            async with rival_target(stack) as (target, description):
                theirs = await rush_phase(target, rush, args, abort, "Rival", description)
            line("phase time", f"{time.perf_counter() - started:.1f} s")
            compare(ours, theirs)
        started = time.perf_counter()
        await steady_phase(stack, admin, args, abort)
        line("phase time", f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    await rebuild_phase(stack)
    line("phase time", f"{time.perf_counter() - started:.1f} s")
    memory_phase(stack)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get("BENCH_URL", "http://127.0.0.1:8000"),
        help="a running stack to use if its /health answers 200 "
        "(default: $BENCH_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument("-n", "--requests", type=int, default=20000, help="rush POSTs (N)")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=256, help="rush requests in flight (C)"
    )
    parser.add_argument("-q", "--quota", type=int, default=5000, help="rush seats (Q)")
    parser.add_argument(
        "-r", "--rate", type=float, default=500.0, help="steady arrival rate, req/s (R)"
    )
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="steady duration, s (D)")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default=CLIENTS[0],
        help="the HTTP client sending the load: the bare asyncio one (raw, default) or httpx",
    )
    parser.add_argument(
        "--repeat-share",
        type=float,
        default=0.05,
        help="share of rush registrations re-using an earlier e-mail",
    )
    parser.add_argument(
        "--retry-share",
        type=float,
        default=0.02,
        help="share of rush POSTs that retry an earlier Idempotency-Key",
    )
    parser.add_argument(
        "--no-rival",
        dest="rival",
        action="store_false",
        help="skip the rival: the same rush against a plain Litestar + MariaDB app",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the rush's randomness")
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the started stack's run folder (logs) for a look afterwards",
    )
    return parser.parse_args()


def main() -> int:
    from infra.logging import configure_logging

    started = time.perf_counter()
    args = parse_args()
    configure_logging("bench", "WARNING")
    print("Butterfly registration rush benchmark", flush=True)
    line(
        "machine",
        f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
    )
    line(
        "parameters",
        f"N={args.requests} requests, C={args.concurrency} concurrent, "
        f"Q={args.quota} seats, R={args.rate:g} req/s for D={args.duration:g} s, "
        f"{args.clients} {args.client} client process(es)",
    )
    abort = threading.Event()
    stack = find_stack(args.url.rstrip("/"))
    if stack is not None:
        line(
            "stack",
            f"the running stack at {stack.base_url} (topics {stack.topic_prefix}*, "
            f"databases {stack.db_prefix}_*)",
        )
    else:
        stack = start_stack()
    try:
        asyncio.run(run_phases(stack, args, abort))
    except BenchError as exc:
        print(f"\nbench stopped: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        abort.set()
        stop_stack(stack, keep_logs=args.keep_logs)
        print(f"\nTotal bench time {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
