"""The closed-loop load through wrk: a C load generator costs the 2-core machine far less CPU
than any Python client, so more of it is left to the stack being measured.

tests/perf/register.lua makes every POST a fresh registration (per-thread counters and a
nonce per run in the e-mail) and reports, as one JSON line, the answers by status, the
latency percentiles and the socket errors.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from infra.packages import apt_install
from tests.perf.common import BenchError, line
from tests.perf.loadgen import LoadResult

SCRIPT = Path(__file__).with_name("register.lua")
TIMEOUT = "30s"
"""wrk's own default (2 s) would drop a waiting POST's answer: the gateway waits up to 5 s."""
THREADS = 2
MARKER = "BENCH_JSON "


def ensure_wrk() -> str | None:
    """wrk's path, installed with apt-get when missing and possible; None when it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    line("wrk", "not installed: apt-get install -y wrk")
    installed = apt_install("wrk")
    if installed is not None and not installed.ok:
        line(
            "wrk",
            f"apt-get {installed.command} failed ({installed.returncode}): {installed.tail(200)}",
        )
    return shutil.which("wrk")


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str, url: str, connections: int, seconds: float, nonce: str, *, respond_async: bool
) -> LoadResult:
    """POST fresh registrations to `url` from `connections` connections for `seconds`."""
    cpu = children_cpu()
    result = subprocess.run(  # noqa: S603 - argv is built here, not from input
        [
            wrk,
            f"-t{min(THREADS, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={TIMEOUT}",
            f"-s{SCRIPT}",
            url,
            "--",
            nonce,
            "async" if respond_async else "wait",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    cpu = children_cpu() - cpu
    report = next(
        (x for x in result.stdout.splitlines() if x.startswith(MARKER)),
        None,
    )
    if result.returncode != 0 or report is None:
        raise BenchError(
            f"wrk exited with {result.returncode}: {(result.stderr or result.stdout)[-1000:]}"
        )
    data = json.loads(report.removeprefix(MARKER))
    statuses = Counter({int(status): n for status, n in data["statuses"].items()})
    lost = sum(data["errors"].values())
    if lost:
        statuses[0] += lost
    return LoadResult(
        driver="wrk",
        requests=int(data["requests"]) + lost,
        seconds=data["duration_us"] / 1e6,
        statuses=statuses,
        latency={k: v / 1e6 for k, v in data["latency_us"].items()},
        no_retry_after=int(data["no_retry_after"]),
        cpu=cpu,
    )
