"""The gateway app as `build_gateway_app` makes it, with the real settings: load shedding per
process, health when a dependency is down or does not answer, and readiness."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from infra.bootstrap import (
    BRIDGE,
    build_bridge,
    build_decider,
    build_gateway_app,
    build_projector,
    decider_group,
    group_name,
)
from infra.services import EmbeddedBroker, free_port
from infra.settings import Settings
from producers.kafka import ensure_topics
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import eventually, open_convention_with_quota, running

pytestmark = pytest.mark.integration

ANSWER_DEADLINE = 20.0
"""A health answer must come; this bounds a hang, it is not a speed target."""


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=build_gateway_app(settings), timeout=30) as client:
        yield client


async def silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and never says a word: a database that stopped answering."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@asynccontextmanager
async def gateway_process(settings: Settings, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """`butterfly gateway` as its own process, configured through its environment."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        "gateway",
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "BUTTERFLY_ADMIN_TOKEN": settings.admin_token,
            "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
            "BUTTERFLY_DB_PREFIX": settings.db_prefix,
            "BUTTERFLY_HTTP_PORT": str(port),
            **env,
        },
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def health() -> int:
                try:
                    return (await client.get("/health")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(health, lambda status: status == 200, what="the gateway up")
            yield client
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_the_in_flight_limit_is_one_per_gateway_across_routes(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        convention_id = await open_convention_with_quota(settings, 5)
        async with gateway(settings) as client:
            await eventually(
                lambda: client.get(f"/api/v1/conventions/{convention_id}"),
                lambda answer: answer.status_code == 200,
                what="the convention readable",
            )
    async with gateway_process(
        settings, BUTTERFLY_MAX_IN_FLIGHT="1", BUTTERFLY_DECISION_WAIT_SECONDS="5"
    ) as client:
        correlation = str(uuid.uuid4())
        attempts: list[asyncio.Task[httpx.Response]] = []

        async def overlap() -> tuple[asyncio.Task[httpx.Response], httpx.Response]:
            """A registration left waiting for a decision (no decider runs), then another
            route; /health in between is never shed and lets the registration arrive first."""
            waiting = asyncio.create_task(
                client.post(
                    f"/api/v1/conventions/{convention_id}/registrations",
                    json={
                        "email": f"slow{len(attempts)}@example.org",
                        "name": "Slow",
                        "badge_type": "STD",
                    },
                )
            )
            attempts.append(waiting)
            await client.get("/health")
            other = await client.get(
                "/api/v1/conventions", headers={"X-Correlation-ID": correlation}
            )
            return waiting, other

        waiting, shed = await eventually(
            overlap,
            lambda pair: pair[1].status_code == 503 and not pair[0].done(),
            what="another route shed while a registration waits for its decision",
        )
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["content-type"].startswith("application/problem+json")
        assert shed.json()["type"].endswith("/overloaded")
        assert shed.headers["x-correlation-id"] == correlation
        health = await client.get("/health")
        assert not health.json().get("type", "").endswith("/overloaded"), health.json()
        pending = await asyncio.wait_for(waiting, ANSWER_DEADLINE)
        assert pending.status_code == 202, pending.text
        await asyncio.wait_for(asyncio.gather(*attempts), ANSWER_DEADLINE)
        assert (await client.get("/api/v1/conventions")).status_code == 200


async def test_health_is_503_in_bounded_time_when_the_database_does_not_answer(
    make_settings: StackFactory,
) -> None:
    server, port = await silent_server()
    try:
        settings = await make_settings()
        silent = settings.model_copy(
            update={"database_url": f"mysql+asyncmy://root@127.0.0.1:{port}/"}
        )
        async with gateway(silent) as client:
            answer = await asyncio.wait_for(client.get("/health"), ANSWER_DEADLINE)
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["checks"]["database"] == "down"
            assert body["checks"]["kafka"] == "ok"
            assert body["checks"]["consumers"] == "unknown"
            assert "x-correlation-id" in answer.headers
    finally:
        server.close()


async def test_health_is_503_when_the_broker_goes_down(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "tansu.log")
    await broker.start()
    try:
        settings = (await make_settings()).model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap}
        )
        topics = Topics(settings.topic_prefix)
        await ensure_topics(
            broker.bootstrap,
            topics=topics.all(),
            kept_forever=topics.event_topics(),
            partitions=settings.partitions,
        )
        async with gateway(settings) as client:
            # Each check has a 2 s deadline, which a busy machine can miss once: healthy first.
            await eventually(
                lambda: client.get("/health"),
                lambda answer: answer.status_code == 200,
                what="200 while the broker runs",
            )
            broker.stop()
            answer = await eventually(
                lambda: asyncio.wait_for(client.get("/health"), ANSWER_DEADLINE),
                lambda answer: answer.status_code == 503,
                what="503 once the broker is gone",
            )
            assert answer.json()["checks"]["kafka"] == "down"
            assert answer.json()["checks"]["database"] == "ok"
    finally:
        broker.stop()


async def test_ready_only_once_every_role_consumes(make_settings: StackFactory) -> None:
    settings = await make_settings()
    async with gateway(settings) as client:
        await eventually(
            lambda: client.get("/health"),
            lambda answer: answer.status_code == 200,
            what="200 from the gateway alone",
        )
        before = await client.get("/health/ready")
        assert before.status_code == 503
        assert before.json()["checks"]["consumers"] == "not consuming"
        async with (
            running(build_decider(settings)),
            running(build_projector(settings, "website")),
            running(build_projector(settings, "reporting")),
        ):
            partly: httpx.Response = await eventually(
                lambda: client.get("/health/ready"),
                lambda answer: (
                    {p["group"] for p in answer.json().get("not_consuming", [])}
                    <= {
                        decider_group(settings, "lodging"),
                        group_name(settings, BRIDGE),
                        group_name(settings, "projector.lodging"),
                        decider_group(settings, "accounts"),
                        group_name(settings, "projector.accounts"),
                        group_name(settings, "projector.orders"),
                    }
                ),
                what="the registration roles consuming",
            )
            assert partly.status_code == 503, "not ready without the lodging and account roles"
            async with (
                running(build_decider(settings, "lodging")),
                running(build_bridge(settings)),
                running(build_projector(settings, "lodging")),
                running(build_decider(settings, "accounts")),
                running(build_projector(settings, "accounts")),
                running(build_projector(settings, "orders")),
            ):
                answer: httpx.Response = await eventually(
                    lambda: client.get("/health/ready"),
                    lambda answer: answer.status_code == 200,
                    what="ready once every decider, the bridge and every projector consume",
                )
            assert answer.json()["status"] == "ready"
            assert "not_consuming" not in answer.json()
