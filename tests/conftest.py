"""The test harness: one broker and one MariaDB server per test run, found or started as
DESIGN.md says, with database names and a topic prefix no other run (nor `make run`) uses.

- Kafka: `KAFKA_BOOTSTRAP_SERVERS` if set (it must answer, or the run stops), otherwise an
  embedded broker on a free port, started here and stopped at the end.
- MariaDB: `DATABASE_URL` if set (it must answer, or the run stops); otherwise
  127.0.0.1:3306 if it answers, a project-local `mariadbd`, or testcontainers where Docker
  answers.
- Redis: `REDIS_URL` if set (it must answer, or the run stops); otherwise 127.0.0.1:6379 if
  it answers, or a project-local `redis-server` on a free port, stopped at the end. Each
  stack gets a key namespace of its own.
- `BUTTERFLY_TESTCONTAINERS=1` runs the suite on Kafka and MariaDB containers instead (Redis
  is still found or started as above).
- No env file: the settings tests build pass `_env_file=None`, and `BUTTERFLY_ENV_FILE` is
  empty for the whole run, so a `.env` reaches neither them nor the processes they start.
- What a run makes it removes: each stack's databases, topics and Redis keys, then the run
  folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from sqlalchemy.engine import make_url

from gateway.sessions import make_redis
from infra.migrate import drop_databases, migrate
from infra.services import (
    EmbeddedBroker,
    ServiceUnavailable,
    StoppableService,
    ensure_mariadb,
    ensure_redis,
    free_port,
    kafka_answers,
    mariadb_answers,
    redis_answers,
    redis_url_for_display,
)
from infra.settings import ENV_FILE_VARIABLE, Settings
from producers.kafka import ensure_topics
from schemas.topics import Topics

TEST_TOKEN = "test-admin-token"
TEST_TICKET_KEYS = "test1:5AymB-KGrBm9rxhjHty-qYK-Z8KlJDEmx03qeBS6E6M"
"""The ticket key of every test stack (`BUTTERFLY_TICKET_KEYS`): fixed, so a test can sign
and verify tickets itself."""
TOPIC_DELETION_DISABLED = 73
"""Kafka's error code for a DeleteTopics refused by `delete.topic.enable=false`."""
UNLINK_BATCH = 500


@dataclass(frozen=True)
class Services:
    bootstrap: str
    database_url: str


def settings_without_env_file(**values: object) -> Settings:
    """`Settings(**values)` from the environment only, never from an env file."""
    return Settings(_env_file=None, **values)


async def configured_service_problem(environ: Mapping[str, str]) -> str | None:
    """Why the run must stop before it starts: a service `environ` names explicitly that
    does not answer. A configured service is used or refused, never silently replaced."""
    kafka = environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if kafka and not await kafka_answers(kafka):
        return (
            f"KAFKA_BOOTSTRAP_SERVERS={kafka} does not answer a metadata request; "
            "unset it to use an embedded broker"
        )
    database = environ.get("DATABASE_URL", "").strip()
    if database:
        server = settings_without_env_file(DATABASE_URL=database).db.server_url()
        if not await mariadb_answers(server):
            return (
                f"DATABASE_URL={make_url(database).render_as_string()} does not answer; "
                "unset it to use 127.0.0.1:3306, a local mariadbd or a container"
            )
    redis = environ.get("REDIS_URL", "").strip()
    if redis and not await redis_answers(redis):
        return (
            f"REDIS_URL={redis_url_for_display(redis)} does not answer PING; "
            "unset it to use 127.0.0.1:6379 or a local redis-server"
        )
    return None


@pytest.fixture(scope="session", autouse=True)
def _no_env_file() -> Iterator[None]:
    """No `.env` for anything this run builds or starts (roles inherit the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_FILE_VARIABLE, "")
        yield


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
    problem = await configured_service_problem(os.environ)
    if problem is not None:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
    run_dir = Path(tempfile.mkdtemp(prefix="butterfly-test-"))
    broker: EmbeddedBroker | None = None
    database: StoppableService | None = None
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), run_dir / "tansu.log")
            await broker.start()
            bootstrap = broker.bootstrap
        database_url, database = await ensure_mariadb(settings_without_env_file(), run_dir)
        yield Services(bootstrap, database_url)
    finally:
        if database is not None:
            database.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(run_dir)


@pytest.fixture(scope="session")
async def redis_url() -> AsyncIterator[str]:
    """A Redis every test of the run shares; tests keep apart by key namespace."""
    run_dir = Path(tempfile.mkdtemp(prefix="butterfly-test-redis-"))
    server: StoppableService | None = None
    try:
        try:
            url, server = await ensure_redis(settings_without_env_file(), run_dir)
        except ServiceUnavailable as exc:
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
        yield url
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(run_dir)


async def delete_namespace(url: str, namespace: str) -> int:
    """Remove every key under `<namespace>:` (SCAN, so the server is never blocked); the
    number removed."""
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in namespace) + ":*"
    client = make_redis(url)
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=UNLINK_BATCH):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                removed += await client.unlink(*batch)
                batch = []
        if batch:
            removed += await client.unlink(*batch)
    finally:
        await client.aclose()
    return removed


async def delete_topics(bootstrap: str, prefixes: Sequence[str]) -> None:
    """Delete every topic whose name starts with one of `prefixes`. The embedded broker
    (Tansu 0.6) answers DeleteTopics; a broker with topic deletion disabled leaves them, with
    a warning; any other refusal fails the run."""
    if not prefixes:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        doomed = sorted(t for t in await admin.list_topics() if t.startswith(tuple(prefixes)))
        if not doomed:
            return
        response = await admin.delete_topics(doomed)
    finally:
        await admin.close()
    refused = {
        entry[0]: entry[1]
        for entry in response.topic_error_codes
        if entry[1] not in (0, UnknownTopicOrPartitionError.errno)
    }
    if refused and set(refused.values()) == {TOPIC_DELETION_DISABLED}:
        warnings.warn(
            f"topic deletion is disabled on {bootstrap}; left {sorted(refused)}", stacklevel=2
        )
    elif refused:
        raise RuntimeError(f"{bootstrap} refused to delete topics (error codes): {refused}")


StackFactory = Callable[..., Awaitable[Settings]]


@pytest.fixture(scope="session")
async def make_settings(services: Services, redis_url: str) -> AsyncIterator[StackFactory]:
    """Settings for an isolated stack: fresh databases (migrated), fresh topics and a Redis
    key namespace of its own, all removed at the end of the run."""
    made: list[Settings] = []

    async def make(partitions: int = 3, **overrides: object) -> Settings:
        tag = secrets.token_hex(4)
        settings = settings_without_env_file(
            KAFKA_BOOTSTRAP_SERVERS=services.bootstrap,
            DATABASE_URL=services.database_url,
            REDIS_URL=redis_url,
            db_prefix=f"bfy_test_{tag}",
            redis_namespace=f"bfy_test_{tag}",
            topic_prefix=f"test.{tag}.",
            admin_token=TEST_TOKEN,
            ticket_keys=TEST_TICKET_KEYS,
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
    try:
        for settings in made:
            await drop_databases(settings)
    finally:
        try:
            await delete_topics(services.bootstrap, [settings.topic_prefix for settings in made])
        finally:
            for settings in made:
                await delete_namespace(redis_url, settings.redis_namespace)
