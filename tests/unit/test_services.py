"""`make run` never swaps a service the environment names for another one."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.services import ServiceUnavailable, ensure_kafka, ensure_mariadb, free_port
from infra.settings import Settings


async def test_a_configured_broker_that_does_not_answer_stops_dev(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    settings = Settings(_env_file=None, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    with pytest.raises(ServiceUnavailable, match=r"KAFKA_BOOTSTRAP_SERVERS=.* does not answer"):
        await ensure_kafka(settings, tmp_path)


async def test_a_configured_database_that_does_not_answer_stops_dev(tmp_path: Path) -> None:
    url = f"mysql+asyncmy://root@127.0.0.1:{free_port()}/"
    settings = Settings(_env_file=None, DATABASE_URL=url)
    with pytest.raises(ServiceUnavailable, match=r"DATABASE_URL=.* does not answer"):
        await ensure_mariadb(settings, tmp_path)
