"""Metrics on a real broker and MariaDB: the registration decider as its own process (`python
-m infra.cli decider registration`, as `make run` starts it) serving its metrics on
`BUTTERFLY_METRICS_PORT`, the website projector beside it, and the gateway app serving
`/metrics` on its own port. A registration
through the gateway moves the gateway's request and decision-wait counters, and the decider's
decisions, records handled and lag."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from infra.bootstrap import build_gateway_app
from infra.services import free_port
from infra.settings import Settings
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import eventually, open_convention_with_quota

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
REGISTRATIONS = "/api/v1/conventions/{convention_id}/registrations"
CONVENTION = "/api/v1/conventions/{convention_id}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def matching(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {
        found: amount
        for (series, found), amount in samples.items()
        if series == name and wanted <= found
    }


@contextlib.asynccontextmanager
async def role_process(
    settings: Settings, argv: list[str], log: Path, metrics_port: int = 0
) -> AsyncIterator[None]:
    """`butterfly <argv>` as its own process, with its metrics on `metrics_port`."""
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "infra.cli",
            *argv,
            cwd=PROJECT,
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "DATABASE_URL": settings.database_url,
                "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
                "BUTTERFLY_DB_PREFIX": settings.db_prefix,
                "BUTTERFLY_HTTP_HOST": "127.0.0.1",
                "BUTTERFLY_METRICS_PORT": str(metrics_port),
            },
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    try:
        yield
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def scrape(client: httpx.AsyncClient | AsyncTestClient, url: str) -> Samples:  # type: ignore[type-arg]
    answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


async def test_a_registration_moves_the_gateways_and_the_deciders_metrics(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    commands = Topics(settings.topic_prefix).registration_commands
    port = free_port()
    decider_metrics = f"http://127.0.0.1:{port}/metrics"
    convention_id = await open_convention_with_quota(settings, 5)
    # Roles as processes: the test client runs the app in a thread of its own and blocks this
    # event loop while a request is answered, so a role on this loop could not decide it.
    async with (
        role_process(settings, ["decider", "registration"], tmp_path / "decider.log", port),
        role_process(settings, ["projector", "website"], tmp_path / "projector.log"),
        AsyncTestClient(app=build_gateway_app(settings), timeout=30) as gateway,
        httpx.AsyncClient(timeout=10) as http,
    ):

        async def decider_scrape() -> Samples | None:
            try:
                return await scrape(http, decider_metrics)
            except httpx.TransportError:
                return None

        await eventually(
            decider_scrape,
            lambda samples: (
                samples is not None
                and value(
                    samples,
                    "butterfly_registration_decisions_total",
                    command="OpenConvention",
                    outcome="accepted",
                    reason="",
                )
                == 1
            ),
            timeout=60,
            what=f"the decider's metrics with the convention opened (log: {tmp_path})",
        )
        await eventually(
            lambda: gateway.get(f"/api/v1/conventions/{convention_id}"),
            lambda answer: answer.status_code == 200,
            what="the convention readable",
        )
        before = await scrape(gateway, "/metrics")

        answer = await gateway.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": "ada@example.org", "name": "Ada", "badge_type": "STD"},
        )
        assert answer.status_code == 201, answer.text
        assert (await gateway.get(f"/api/v1/conventions/{convention_id}")).status_code == 200

        after = await scrape(gateway, "/metrics")
        for name, labels in [
            (
                "butterfly_http_requests_total",
                {"method": "POST", "route": REGISTRATIONS, "status": "201"},
            ),
            (
                "butterfly_http_request_duration_seconds_count",
                {"method": "POST", "route": REGISTRATIONS, "status": "201"},
            ),
            (
                "butterfly_http_requests_total",
                {"method": "GET", "route": CONVENTION, "status": "200"},
            ),
            (
                "butterfly_decision_waits_total",
                {"command": "RegisterAttendee", "outcome": "accepted"},
            ),
        ]:
            assert value(after, name, **labels) - value(before, name, **labels) == 1, (name, labels)
        routes = {
            dict(labels)["route"] for labels in matching(after, "butterfly_http_requests_total")
        }
        assert not any(str(convention_id) in route for route in routes), routes
        assert value(after, "butterfly_http_requests_in_flight") >= 1  # the scrape itself

        def settled(samples: Samples | None) -> bool:
            """The registration decided, and every partition's lag measured at zero."""
            if samples is None:
                return False
            lags = matching(samples, "butterfly_consumer_lag", role="decider.registration")
            return (
                value(
                    samples,
                    "butterfly_registration_decisions_total",
                    command="RegisterAttendee",
                    outcome="accepted",
                    reason="",
                )
                == 1
                and len(lags) == settings.partitions
                and not any(lags.values())
            )

        decider = await eventually(decider_scrape, settled, what="the decider's metrics settled")
        assert decider is not None
        handled = matching(
            decider, "butterfly_consumer_records_total", role="decider.registration", topic=commands
        )
        assert sum(handled.values()) == 3  # create, open, register: one partition, one key
        batches = matching(decider, "butterfly_consumer_batches_total", role="decider.registration")
        assert sum(batches.values()) >= 1
        assert all(dict(labels)["outcome"] == "committed" for labels in batches)
        assert matching(decider, "butterfly_consumer_batch_seconds_count", topic=commands)
        lags = matching(decider, "butterfly_consumer_lag", role="decider.registration")
        assert {dict(labels)["topic"] for labels in lags} == {commands}
        assert {dict(labels)["partition"] for labels in lags} == {
            str(p) for p in range(settings.partitions)
        }
        assert not matching(decider, "butterfly_consumer_dead_letters_total")
