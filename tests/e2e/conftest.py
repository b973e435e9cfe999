"""The running system for end-to-end tests: every role as its own process, supervised the
way `make run` does it, on this test run's broker, databases and topics."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.dev import dev_roles
from infra.services import free_port
from infra.settings import Settings
from infra.simulators.lodging.store import drop_store
from infra.simulators.payments.store import drop_store as drop_payments_store
from infra.supervisor import Supervisor
from tests.conftest import TEST_TICKET_KEYS, TEST_TOKEN, StackFactory
from tests.support import eventually

E2E = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every end-to-end test runs in one worker of a parallel run (`make test` runs two or
    more): they share one running stack, started once."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("e2e"))


@dataclass
class Stack:
    settings: Settings
    base_url: str
    supervisor: Supervisor
    partner_url: str
    """The lodging partner simulator this stack runs (its own process, database and port)."""
    payment_url: str
    """The payment provider simulator this stack runs (its own process, database and port)."""

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30, **kwargs)  # type: ignore[arg-type]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TEST_TOKEN}"}


@pytest.fixture(scope="session")
async def stack(
    make_settings: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    port, partner_port, payment_port = free_port(), free_port(), free_port()
    mail = tmp_path_factory.mktemp("mail")
    settings = await make_settings(
        partitions=3,
        http_port=port,
        partner_port=partner_port,
        payment_sim_port=payment_port,
        mail_dir=str(mail),
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
        "BUTTERFLY_PARTNER_PORT": str(partner_port),
        "BUTTERFLY_PAYMENT_SIM_PORT": str(payment_port),
        "BUTTERFLY_PAYMENT_WEBHOOK_SECRET": settings.payment_webhook_secret,
        "BUTTERFLY_MAIL_DIR": str(mail),
        "BUTTERFLY_LODGING_CIRCUIT_OPEN_SECONDS": "1",
        "BUTTERFLY_DECISION_WAIT_SECONDS": "10",
        "BUTTERFLY_ENV_FILE": "",
    }
    supervisor = Supervisor(handle_signals=False, initial_backoff=0.2, max_backoff=1.0)
    roles = dev_roles(env, sys.executable, partner_port=partner_port, payment_port=payment_port)
    task = asyncio.create_task(supervisor.run(roles))
    base_url = f"http://127.0.0.1:{port}"

    async def ready() -> int:
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
                return (await client.get("/health/ready")).status_code
        except httpx.TransportError:
            return 0

    try:
        await eventually(
            ready,
            lambda status: status == 200,
            timeout=90,
            interval=0.2,
            what="every role consuming (/health/ready)",
        )
        yield Stack(
            settings,
            base_url,
            supervisor,
            f"http://127.0.0.1:{partner_port}",
            f"http://127.0.0.1:{payment_port}",
        )
    finally:
        supervisor.stop()
        await asyncio.wait_for(task, 60)
        try:
            await drop_store(settings)
        finally:
            await drop_payments_store(settings)
