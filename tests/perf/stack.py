"""The stack under test: found at BENCH_URL, or started here and removed afterwards; its
processes, what they cost in CPU, and their memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil

from schemas.tickets import new_seed
from schemas.topics import Topics
from tests.perf.common import REPO, BenchError, line, mismatch, section

if TYPE_CHECKING:
    from infra.settings import Settings

HEALTH_INTERVAL = 0.2
STACK_START_TIMEOUT = 120.0
STACK_STOP_TIMEOUT = 40.0
DATABASE_PROCESSES = ("mariadbd", "mysqld")
TICKET_KEYS_VARIABLE = "BUTTERFLY_TICKET_KEYS"
TICKET_KEY_ID = "bench"
"""The roles sign and verify tickets with a key made for each run, unless the environment
names keys already."""

Processes = list[tuple[str, int]]
"""(role, pid) of processes whose CPU and memory the bench reports."""


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
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    http_port, partner_port, payment_port, kafka_port = sorted(ports)
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
        "BUTTERFLY_PARTNER_PORT": str(partner_port),
        "BUTTERFLY_PAYMENT_SIM_PORT": str(payment_port),
        "BUTTERFLY_EMBEDDED_KAFKA_PORT": str(kafka_port),
        "BUTTERFLY_TOPIC_PREFIX": stack.topic_prefix,
        "BUTTERFLY_DB_PREFIX": stack.db_prefix,
        "BUTTERFLY_RUN_DIR": str(run_dir),
        "BUTTERFLY_ADMIN_TOKEN": stack.admin_token,
    }
    if not os.environ.get(TICKET_KEYS_VARIABLE):
        overrides[TICKET_KEYS_VARIABLE] = f"{TICKET_KEY_ID}:{new_seed()}"
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
    from infra.simulators.lodging.store import drop_store
    from infra.simulators.payments.store import drop_store as drop_payment_store

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
        asyncio.run(drop_store(stack.settings()))
        asyncio.run(drop_payment_store(stack.settings()))
        line(
            "databases",
            f"dropped {stack.db_prefix}_* (the lodging partner's and the payment provider's too)",
        )
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


def stack_processes(stack: Stack) -> Processes:
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


def database_processes() -> Processes:
    """The MariaDB servers on this machine. Others may use them too: their CPU is the whole
    server's, the bench's share and anyone else's."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in DATABASE_PROCESSES:
            found.append(("mariadb", process.pid))
    return found


def process_cpu(processes: Processes) -> dict[int, float]:
    """CPU seconds (user + system) each process used so far."""
    spent = {}
    for _, pid in processes:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            spent[pid] = times.user + times.system
    return spent


@dataclass
class CpuMeter:
    """CPU seconds each process of a phase spends from the meter's start to `spent()`."""

    processes: Processes
    before: Mapping[int, float]

    @classmethod
    def start(cls, processes: Processes) -> CpuMeter:
        known = {pid for _, pid in processes}
        processes = processes + [(r, p) for r, p in database_processes() if p not in known]
        return cls(processes, process_cpu(processes))

    def spent(self) -> dict[str, float]:
        """CPU seconds by role; roles run by several processes are summed."""
        after = process_cpu(self.processes)
        by_role: dict[str, float] = {}
        for role, pid in self.processes:
            if pid in self.before and pid in after:
                by_role[role] = by_role.get(role, 0.0) + after[pid] - self.before[pid]
        return by_role


def cpu_report(
    spent: Mapping[str, float],
    loadgen: tuple[str, float],
    registrations: int,
    *,
    unit: str = "registration",
) -> float:
    """Print the CPU milliseconds each process spent per registration (or per `unit`), the
    load generator's included; returns the total over the server's processes (the load
    generator left out)."""
    if registrations <= 0:
        line("CPU", f"no {unit}s to share the CPU among")
        return 0.0
    server = sum(spent.values())
    rows = [
        f"{role} {seconds / registrations * 1000:.2f}" for role, seconds in sorted(spent.items())
    ]
    name, seconds = loadgen
    rows.append(f"load generator ({name}) {seconds / registrations * 1000:.2f}")
    line(
        "CPU ms/reg." if unit == "registration" else f"CPU ms/{unit}",
        f"{server / registrations * 1000:.2f} by the server's processes "
        f"({server:.1f} CPU s for {registrations} {unit}s), by process:",
    )
    for start in range(0, len(rows), 3):
        line("", ";  ".join(rows[start : start + 3]))
    return server / registrations * 1000
