"""HAProxy in front of several gateways on one machine (`make run` with `gateway:N` in
`BUTTERFLY_REPLICAS`): it listens on the public HTTP address, and each gateway on a port of
its own on 127.0.0.1.

It checks `/health` on every gateway twice a second and takes one out at its first failure;
a request a gateway refused (it died) goes to another, and so does one a gateway took and
died on without answering when replaying it is harmless: a GET, HEAD or OPTIONS, or a write
with an `Idempotency-Key` (the gateway answers a repeat with the first answer). The client's
address reaches the gateways in `X-Forwarded-For`, which they trust from 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from infra.packages import apt_install
from infra.services import ServiceUnavailable, free_port, haproxy_binary
from infra.settings import Settings

log = structlog.get_logger("butterfly.balancer")

BACKEND_HOST = "127.0.0.1"
"""Where the gateways behind HAProxy listen, and so the one address they take
`X-Forwarded-For` from (`FORWARDED_ALLOW_IPS`)."""
SERVER_TIMEOUT_MARGIN_SECONDS = 25
"""A gateway's answer may take the decision wait and then some (a slow database, a payment
provider call) before HAProxy gives up on it."""
KEEP_ALIVE_MARGIN_SECONDS = 10
"""Idle client connections stay open as long as a gateway keeps its own (infra.cli): a
client's other connections sit idle while one request waits for its decision."""
CHECK_TIMEOUT_SECONDS = 3
"""A health check not answered in this long fails; `/health` bounds its own checks to 2 s."""
INSTALL_TIMEOUT_SECONDS = 300.0
MAX_CONNECTIONS = 4096
"""Client connections HAProxy serves at once (as many as one gateway lets in), fewer when
the open-files limit does not allow two descriptors each."""
SPARE_DESCRIPTORS = 64


def haproxy_config(
    *,
    host: str,
    port: int,
    gateway_ports: Sequence[int],
    decision_wait_seconds: float,
    maxconn: int = MAX_CONNECTIONS,
) -> str:
    """HAProxy's configuration: `host:port` in front of the gateways on `gateway_ports`,
    serving at most `maxconn` client connections at once."""
    if not gateway_ports:
        raise ValueError("HAProxy needs at least one gateway behind it")
    wait = math.ceil(decision_wait_seconds)
    servers = "\n".join(
        f"    server gateway{index} {BACKEND_HOST}:{gateway_port} check"
        for index, gateway_port in enumerate(gateway_ports, start=1)
    )
    return f"""\
# Written by `butterfly dev` (BUTTERFLY_REPLICAS): HAProxy on the public address in front of
# {len(gateway_ports)} gateways, each listening on a port of its own on {BACKEND_HOST}.

# No request log: HAProxy says on stderr when a gateway leaves the rotation or comes back.
global
    maxconn {maxconn}

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    # A write waits up to {decision_wait_seconds:g} s for its decision (the decision wait).
    timeout server {wait + SERVER_TIMEOUT_MARGIN_SECONDS}s
    timeout http-request 10s
    timeout http-keep-alive {wait + KEEP_ALIVE_MARGIN_SECONDS}s
    timeout check {CHECK_TIMEOUT_SECONDS}s
    # A request a gateway did not take goes to another one, twice at most; one it took and
    # died on without answering, only when replaying it is harmless (see the frontend). A
    # request is replayed only if HAProxy holds all of it: the body is read before sending.
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
    option http-buffer-request
    # /health twice a second: one failure takes a gateway out, two successes bring it back.
    default-server inter 500ms fall 1 rise 2

frontend public
    bind {host}:{port}
    # Metrics are scraped from each gateway directly, never through the balancer.
    http-request deny deny_status 404 if {{ path /metrics }}
    # The client's address as HAProxy saw it replaces whatever the client sent: the gateways
    # trust this header from {BACKEND_HOST} only, to count failed logins per address.
    http-request del-header X-Forwarded-For
    option forwardfor
    acl replayable method GET HEAD OPTIONS
    acl replayable req.hdr(Idempotency-Key) -m found
    http-request disable-l7-retry unless replayable
    # /health fails on every gateway at once when the whole system is unwell (the broker
    # down, a consumer stalled): rather than answer 503 to everything, send requests to the
    # gateways that accept connections, which say themselves what is wrong.
    use_backend gateways_alive if {{ nbsrv(gateways) eq 0 }}
    default_backend gateways

backend gateways
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
{servers}

backend gateways_alive
    balance leastconn
{servers}
"""


@dataclass(frozen=True)
class Balancer:
    """HAProxy on `host:port` in front of gateways on `gateway_ports` of `BACKEND_HOST`."""

    binary: Path
    config_path: Path
    host: str
    port: int
    gateway_ports: tuple[int, ...]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        """HAProxy in the foreground (`-db`), so the supervisor sees it exit."""
        return [str(self.binary), "-db", "-f", str(self.config_path)]


async def prepare_balancer(settings: Settings, run_dir: Path, gateways: int) -> Balancer:
    """HAProxy found (or installed), a free port for each of `gateways` gateways, and the
    configuration written to `run_dir/haproxy.cfg` and checked."""
    binary = await ensure_haproxy()
    ports: list[int] = []
    while len(ports) < gateways:
        candidate = free_port(BACKEND_HOST)
        if candidate not in ports and candidate != settings.http_port:
            ports.append(candidate)
    balancer = Balancer(
        binary, run_dir / "haproxy.cfg", settings.http_host, settings.http_port, tuple(ports)
    )
    balancer.config_path.write_text(
        haproxy_config(
            host=balancer.host,
            port=balancer.port,
            gateway_ports=balancer.gateway_ports,
            decision_wait_seconds=settings.decision_wait_seconds,
            maxconn=affordable_connections(),
        )
    )
    checked = await _run(str(binary), "-c", "-q", "-f", str(balancer.config_path))
    if checked.returncode != 0:
        raise ServiceUnavailable(f"HAProxy refuses {balancer.config_path}: {_tail(checked)}")
    return balancer


def affordable_connections() -> int:
    """`MAX_CONNECTIONS`, or as many as this process's hard open-files limit allows: HAProxy
    raises its own limit up to that, and refuses to start if it cannot reach what it needs."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(min(MAX_CONNECTIONS, (hard - SPARE_DESCRIPTORS) // 2), 1)


async def ensure_haproxy() -> Path:
    """HAProxy's path: on PATH (or in /usr/sbin), else installed from Debian's packages with
    apt-get; ServiceUnavailable saying how to get it otherwise."""
    found = haproxy_binary()
    if found is not None:
        return found
    log.info(
        "haproxy_installing", reason="more than one gateway", command="apt-get install -y haproxy"
    )
    installed = await asyncio.to_thread(apt_install, "haproxy", timeout=INSTALL_TIMEOUT_SECONDS)
    if installed is None:
        raise ServiceUnavailable(
            "HAProxy (needed with more than one gateway in BUTTERFLY_REPLICAS) is not "
            "installed and there is no apt-get to install it: install haproxy, or run one gateway"
        )
    found = haproxy_binary()
    if found is None:
        raise ServiceUnavailable(
            "HAProxy (needed with more than one gateway in BUTTERFLY_REPLICAS) is not "
            f"installed and `apt-get {installed.command}` failed ({installed.returncode}): "
            f"{installed.tail()}; install haproxy, or run one gateway"
        )
    return found


async def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(INSTALL_TIMEOUT_SECONDS):
            output, _ = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    returncode = await process.wait()
    return subprocess.CompletedProcess(list(argv), returncode, output.decode(errors="replace"))


def _tail(result: subprocess.CompletedProcess[str], chars: int = 400) -> str:
    return " ".join(result.stdout.split())[-chars:] or "no output"
