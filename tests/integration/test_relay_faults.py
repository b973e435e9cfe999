"""The outbox relay rides out the database being away and ends on anything else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import MetaData
from structlog.testing import capture_logs

from consumers.registration.tables import outbox
from infra.db import make_engine, outbox_table
from infra.services import free_port
from infra.settings import Settings
from producers.outbox import OutboxRelay
from tests.conftest import StackFactory
from tests.support import eventually

pytestmark = pytest.mark.integration


async def _producer(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    return producer


async def test_the_relay_waits_out_a_database_that_does_not_answer(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    nowhere = settings.db.write_url.set(host="127.0.0.1", port=free_port())
    engine = make_engine(nowhere, pool_size=1)
    producer = await _producer(settings)
    relay = OutboxRelay(engine, outbox, producer, interval=0.05)
    try:
        with capture_logs() as logs:

            async def faults_so_far() -> list[dict[str, Any]]:
                return [e for e in logs if e["event"] == "relay_transient_fault"]

            running = asyncio.create_task(relay.run())
            faults = await eventually(
                faults_so_far,
                lambda found: len(found) >= 3,
                what="the relay retrying a database that refuses connections",
            )
            assert not running.done()
            relay.stop()
            await asyncio.wait_for(running, timeout=30)
        assert [f["attempt"] for f in faults[:3]] == [1, 2, 3]
        assert "(2003" in faults[0]["error"]
        assert logs[-1]["event"] == "relay_stopped"
    finally:
        await producer.stop()
        await engine.dispose()


async def test_the_relay_ends_on_a_fault_that_retrying_cannot_cure(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings(partitions=1)
    engine = make_engine(settings.db.write_url, pool_size=1)
    producer = await _producer(settings)
    missing = outbox_table(MetaData(), name="no_such_outbox")
    relay = OutboxRelay(engine, missing, producer, interval=0.05)
    try:
        with pytest.raises(Exception, match="no_such_outbox"):
            await asyncio.wait_for(relay.run(), timeout=30)
    finally:
        await producer.stop()
        await engine.dispose()
