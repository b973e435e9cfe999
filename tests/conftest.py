"""The test harness: one broker and one MariaDB server per test run, found or started as
DESIGN.md says, with database names and a topic prefix no other run (nor `make run`) uses.

- Kafka: `KAFKA_BOOTSTRAP_SERVERS` if set and answering, otherwise an embedded broker on a
  free port, started here and stopped at the end.
- MariaDB: `DATABASE_URL` (default 127.0.0.1:3306) if it answers, otherwise a project-local
  `mariadbd`, otherwise testcontainers where Docker answers.
- `BUTTERFLY_TESTCONTAINERS=1` runs the suite on Kafka and MariaDB containers instead.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.migrate import drop_databases, migrate
from infra.services import EmbeddedBroker, ensure_mariadb, free_port, kafka_answers
from infra.settings import Settings
from producers.kafka import ensure_topics
from schemas.topics import Topics

TEST_TOKEN = "test-admin-token"


@dataclass(frozen=True)
class Services:
    bootstrap: str
    database_url: str


def _containers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mysql import MySqlContainer

    with (
        KafkaContainer() as kafka,
        MySqlContainer("mariadb:11", username="root", password="butterfly") as db,
    ):
        url = db.get_connection_url().replace("mysql+pymysql", "mysql+asyncmy")
        yield Services(kafka.get_bootstrap_server(), url.rsplit("/", 1)[0] + "/")


@pytest.fixture(scope="session")
async def services() -> AsyncIterator[Services]:
    if os.environ.get("BUTTERFLY_TESTCONTAINERS") == "1":
        for found in _containers():
            yield found
        return
    run_dir = Path(tempfile.mkdtemp(prefix="butterfly-test-"))
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker = None
    if configured and await kafka_answers(configured):
        bootstrap = configured
    else:
        broker = EmbeddedBroker(free_port(), run_dir / "tansu.log")
        await broker.start()
        bootstrap = broker.bootstrap
    database_url, database = await ensure_mariadb(Settings(), run_dir)
    try:
        yield Services(bootstrap, database_url)
    finally:
        if database is not None:
            database.stop()
        if broker is not None:
            broker.stop()


StackFactory = Callable[..., Awaitable[Settings]]


@pytest.fixture(scope="session")
async def make_settings(services: Services) -> AsyncIterator[StackFactory]:
    """Settings for an isolated stack: fresh databases (migrated) and fresh topics."""
    made: list[Settings] = []

    async def make(partitions: int = 3, **overrides: object) -> Settings:
        tag = secrets.token_hex(4)
        settings = Settings(
            KAFKA_BOOTSTRAP_SERVERS=services.bootstrap,
            DATABASE_URL=services.database_url,
            db_prefix=f"bfy_test_{tag}",
            topic_prefix=f"test.{tag}.",
            admin_token=TEST_TOKEN,
            partitions=partitions,
            **overrides,
        )
        made.append(settings)
        await migrate(settings)
        topics = Topics(settings.topic_prefix)
        await ensure_topics(
            services.bootstrap,
            topics=topics.all(),
            kept_forever=topics.event_topics(),
            partitions=partitions,
        )
        return settings

    yield make
    for settings in made:
        await drop_databases(settings)
