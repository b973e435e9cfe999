"""Scale-out on one machine, the way `make run` does it with `BUTTERFLY_REPLICAS`: two
gateways behind HAProxy and two registration deciders splitting the partitions, every role
supervised as its own process. A gateway killed mid-rush costs no request an answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from infra.balancer import Balancer, prepare_balancer
from infra.dev import dev_roles
from infra.services import free_port
from infra.settings import Settings
from infra.supervisor import Role, Supervisor
from tests.conftest import TEST_TICKET_KEYS, TEST_TOKEN, StackFactory
from tests.support import eventually, statuses

pytestmark = pytest.mark.integration

T = TypeVar("T")
REPLICAS = "gateway:2,decider.registration:2"
ATTEMPTS_PER_ADDRESS = 3


@dataclass
class ScaledStack:
    settings: Settings
    balancer: Balancer
    supervisor: Supervisor
    logs: Path

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        options: dict[str, object] = {"timeout": 30, **kwargs}
        return httpx.AsyncClient(base_url=self.balancer.url, **options)  # type: ignore[arg-type]

    def log(self, role: str) -> str:
        return (self.logs / f"{role}.log").read_text(errors="replace")

    def partitions_held(self, role: str) -> set[str]:
        """The partitions `role`'s current process holds, by its own (JSON) log."""
        held: set[str] = set()
        for line in self.log(role).splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    continue
                if entry.get("message") == "partitions_claimed":
                    held |= set(entry["partitions"])
                elif entry.get("message") == "partitions_revoked":
                    held -= set(entry["partitions"])
                elif entry.get("message") == "fenced_out":
                    held.discard(entry["partition"])
        return held


def logged(role: Role, folder: Path) -> Role:
    """`role` with its output appended to `folder/<name>.log`; `exec` keeps the pid the
    supervisor knows."""
    log = folder / f"{role.name}.log"
    return Role(
        role.name, ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log), *role.argv], role.env, role.nice
    )


@pytest.fixture(scope="module")
async def scaled(
    make_settings: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ScaledStack]:
    port = free_port()
    run_dir = tmp_path_factory.mktemp("scaled")
    settings = await make_settings(
        partitions=3,
        http_port=port,
        replicas=REPLICAS,
        decision_wait_seconds=10,
        mail_dir=str(run_dir / "mail"),
    )
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BUTTERFLY_REDIS_NAMESPACE": settings.redis_namespace,
        "BUTTERFLY_ADMIN_TOKEN": TEST_TOKEN,
        "BUTTERFLY_TICKET_KEYS": TEST_TICKET_KEYS,
        "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
        "BUTTERFLY_DB_PREFIX": settings.db_prefix,
        "BUTTERFLY_HTTP_PORT": str(port),
        "BUTTERFLY_MAIL_DIR": str(run_dir / "mail"),
        "BUTTERFLY_DECISION_WAIT_SECONDS": "10",
        "BUTTERFLY_LOGIN_ATTEMPTS_PER_ADDRESS": str(ATTEMPTS_PER_ADDRESS),
        "BUTTERFLY_LOG_FORMAT": "json",
        "BUTTERFLY_ENV_FILE": "",
    }
    counts = settings.replica_counts
    balancer = await prepare_balancer(settings, run_dir, counts["gateway"])
    logs = run_dir / "logs"
    logs.mkdir()
    roles = [
        logged(role, logs)
        for role in dev_roles(env, sys.executable, replicas=counts, balancer=balancer)
    ]
    supervisor = Supervisor(handle_signals=False, initial_backoff=0.2, max_backoff=1.0)
    task = asyncio.create_task(supervisor.run(roles))
    stack = ScaledStack(settings, balancer, supervisor, logs)

    async def ready() -> int:
        try:
            async with stack.client(timeout=5) as client:
                return (await client.get("/health/ready")).status_code
        except httpx.TransportError:
            return 0

    try:
        await eventually(
            ready,
            lambda status: status == 200,
            timeout=120,
            interval=0.2,
            what="every role consuming, asked through HAProxy (/health/ready)",
        )
        yield stack
    finally:
        supervisor.stop()
        await asyncio.wait_for(task, 60)


async def open_convention(stack: ScaledStack, quota: int) -> str:
    admin = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=admin,
            json={
                "name": "Scale Con",
                "starts_on": "2027-06-01",
                "ends_on": "2027-06-03",
                "badge_types": [
                    {"code": "STD", "name": "Standard", "price_cents": 0, "quota": quota}
                ],
            },
        )
        assert created.status_code == 201, created.text
        convention_id = str(created.json()["convention_id"])
        opened = await client.post(f"/api/v1/admin/conventions/{convention_id}/open", headers=admin)
        assert opened.status_code == 200, opened.text
    return convention_id


async def test_a_gateway_killed_mid_rush_costs_no_request_its_answer(
    scaled: ScaledStack,
) -> None:
    total, workers, kill_after = 240, 8, 60
    convention_id = await open_convention(scaled, quota=total)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    answers: dict[int, int | str] = {}
    numbers = iter(range(total))
    killed = asyncio.Event()
    victim = scaled.supervisor.pids["gateway#1"]

    async def register(client: httpx.AsyncClient) -> None:
        for i in numbers:
            try:
                answer = await client.post(
                    url,
                    headers={"Idempotency-Key": f"scaled-{i}"},
                    json={"email": f"s{i}@example.org", "name": f"S {i}", "badge_type": "STD"},
                )
            except httpx.HTTPError as exc:
                answers[i] = repr(exc)
            else:
                answers[i] = answer.status_code
            if len(answers) == kill_after and not killed.is_set():
                os.kill(victim, signal.SIGKILL)
                killed.set()

    async with scaled.client(limits=httpx.Limits(max_connections=workers)) as client:
        await asyncio.gather(*(register(client) for _ in range(workers)))

    assert killed.is_set()
    assert len(answers) == total
    unanswered = {i: answer for i, answer in answers.items() if answer not in (201, 202)}
    assert not unanswered, unanswered

    await eventually(
        lambda: _pid(scaled.supervisor, "gateway#1"),
        lambda pid: pid not in (None, victim),
        what="the supervisor restarting the killed gateway",
    )
    await eventually(
        lambda: _now(scaled.log("haproxy")),
        lambda log: (
            "gateways/gateway1 is DOWN" in log
            and "gateways/gateway1 is UP" in log.split("gateways/gateway1 is DOWN", 1)[1]
        ),
        timeout=60,
        what="HAProxy taking the dead gateway out, and back in once restarted",
    )
    found = await eventually(
        lambda: statuses(scaled.settings, uuid.UUID(convention_id)),
        lambda found: found == {"confirmed": total},
        timeout=60,
        what="every registration decided once",
    )
    assert found == {"confirmed": total}

    held = await eventually(
        lambda: _now(
            (
                scaled.partitions_held("decider.registration#1"),
                scaled.partitions_held("decider.registration#2"),
            )
        ),
        lambda held: all(held) and not held[0] & held[1],
        what="both registration deciders holding partitions of their own",
    )
    assert all(held)


async def test_the_gateways_count_failed_logins_by_the_address_haproxy_saw(
    scaled: ScaledStack,
) -> None:
    """HAProxy replaces whatever `X-Forwarded-For` a client sends with the address it came
    from, and the gateways believe it: changing the header gets a client nowhere, while
    another address is counted apart."""

    async def log_in(source: str, n: int, claimed: str | None = None) -> int:
        transport = httpx.AsyncHTTPTransport(local_address=source)
        headers = {"X-Forwarded-For": claimed} if claimed else {}
        async with scaled.client(transport=transport) as client:
            answer = await client.post(
                "/api/v1/sessions",
                headers=headers,
                json={"email": f"nobody{n}@example.org", "password": "wrong password"},
            )
            return answer.status_code

    first = [
        await log_in("127.0.0.2", n, claimed=f"198.51.100.{n}") for n in range(ATTEMPTS_PER_ADDRESS)
    ]
    assert first == [401] * ATTEMPTS_PER_ADDRESS
    assert await log_in("127.0.0.2", 10, claimed="203.0.113.7") == 429
    assert await log_in("127.0.0.3", 11) == 401


async def _pid(supervisor: Supervisor, name: str) -> int | None:
    return supervisor.pids.get(name)


async def _now(value: T) -> T:
    return value
