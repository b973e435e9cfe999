"""What keeps a test run to itself, on the run's broker and MariaDB: stacks are built on the
services fixture and not from a `.env`, and their topics can be deleted at the end."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from producers.kafka import ensure_topics
from schemas.topics import Topics
from tests.conftest import Services, StackFactory, delete_topics
from tests.unit.test_isolation import assert_nothing_leaked, into_leaky_cwd

pytestmark = pytest.mark.integration

GIVEN_BY_MAKE_SETTINGS = (
    "kafka_bootstrap_servers",
    "database_url",
    "db_prefix",
    "topic_prefix",
    "admin_token",
    "ticket_keys",
    "partitions",
    "redis_url",
    "redis_namespace",
)


async def test_a_stack_is_built_on_the_run_services_and_from_no_env_file(
    make_settings: StackFactory,
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    into_leaky_cwd(tmp_path, monkeypatch)

    settings = await make_settings(partitions=1)

    assert settings.kafka_bootstrap_servers == services.bootstrap
    assert settings.database_url == services.database_url
    assert_nothing_leaked(settings, given=GIVEN_BY_MAKE_SETTINGS)


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def test_the_topics_of_a_prefix_are_deleted_and_no_other(services: Services) -> None:
    doomed, kept = (f"test.{secrets.token_hex(4)}." for _ in range(2))
    for prefix in (doomed, kept):
        topics = Topics(prefix)
        await ensure_topics(
            services.bootstrap,
            topics=topics.all(),
            kept_forever=topics.event_topics(),
            partitions=1,
        )
    try:
        await delete_topics(services.bootstrap, [doomed])

        left = await list_topics(services.bootstrap)
        assert [topic for topic in left if topic.startswith(doomed)] == []
        assert sorted(t for t in left if t.startswith(kept)) == sorted(Topics(kept).all())
    finally:
        await delete_topics(services.bootstrap, [doomed, kept])
