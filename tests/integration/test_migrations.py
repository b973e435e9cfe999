"""The Alembic migrations build exactly the tables the code declares, and can run twice."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, pool, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.accounts.tables import metadata as account_metadata
from consumers.lodging.tables import metadata as lodging_metadata
from consumers.registration.tables import metadata as registration_metadata
from infra.db import merged_metadata
from infra.migrate import create_databases, database_urls, drop_databases, migrate
from infra.settings import Settings
from projections.accounts.tables import metadata as accounts_read_metadata
from projections.lodging.tables import metadata as lodging_read_metadata
from projections.orders.tables import metadata as orders_read_metadata
from projections.reporting.tables import metadata as reporting_metadata
from projections.website.tables import metadata as website_metadata
from tests.conftest import Services, settings_without_env_file

pytestmark = pytest.mark.integration

METADATA = {
    "write": merged_metadata(registration_metadata, lodging_metadata, account_metadata),
    "read": merged_metadata(
        website_metadata, lodging_read_metadata, accounts_read_metadata, orders_read_metadata
    ),
    "reporting": reporting_metadata,
}


@pytest.fixture
async def settings(services: Services) -> AsyncIterator[Settings]:
    """Databases of their own on this run's MariaDB server, dropped at the end."""
    settings = settings_without_env_file(
        DATABASE_URL=services.database_url, db_prefix=f"bfy_mig_{secrets.token_hex(4)}"
    )
    yield settings
    await drop_databases(settings)


def _schema(connection: Connection) -> dict[str, dict[str, Any]]:
    inspector = inspect(connection)
    return {
        name: {
            "columns": [column["name"] for column in inspector.get_columns(name)],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "indexes": {
                index["name"]: (index["column_names"], bool(index["unique"]))
                for index in inspector.get_indexes(name)
            },
            "engine": inspector.get_table_options(name).get("mysql_engine"),
        }
        for name in inspector.get_table_names()
    }


def _diff(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _inspect(url: URL, metadata: MetaData) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            schema = await connection.run_sync(_schema)
            diff = await connection.run_sync(_diff, metadata)
    finally:
        await engine.dispose()
    return schema, diff


async def _existing_databases(settings: Settings) -> set[str]:
    engine = create_async_engine(settings.db.server_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SHOW DATABASES"))
            return {row[0] for row in result} & set(settings.db.names())
    finally:
        await engine.dispose()


async def test_migrations_create_the_declared_tables_and_are_idempotent(
    settings: Settings,
) -> None:
    await migrate(settings)
    await migrate(settings)

    for database, url in database_urls(settings.db).items():
        metadata = METADATA[database]
        schema, diff = await _inspect(url, metadata)

        assert set(schema) == {*metadata.tables, "alembic_version"}, database
        for name, table in metadata.tables.items():
            assert schema[name]["columns"] == [column.name for column in table.columns], name
            assert schema[name]["primary_key"] == [c.name for c in table.primary_key], name
            assert schema[name]["engine"] == "InnoDB", name
            for index in table.indexes:
                assert schema[name]["indexes"][index.name] == (
                    [column.name for column in index.columns],
                    bool(index.unique),
                ), index.name
            for column in table.columns:
                if column.unique:
                    assert ([column.name], True) in schema[name]["indexes"].values(), column.name
        assert diff == [], f"{database}: {diff}"


async def test_drop_databases_removes_all_three(settings: Settings) -> None:
    await migrate(settings)
    assert await _existing_databases(settings) == set(settings.db.names())

    await drop_databases(settings)

    assert await _existing_databases(settings) == set()


ROOT = Path(__file__).resolve().parents[2]
MIGRATE_REPORTING = (
    "import sys; from alembic import command; from infra.migrations.runner import alembic_config; "
    "command.upgrade(alembic_config('reporting', sys.argv[1]), 'head')"
)
"""Alembic's `op` and `context` are process-wide, so migrations at once run in processes."""


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _own_databases(services: Services) -> Settings:
    return settings_without_env_file(
        DATABASE_URL=services.database_url, db_prefix=f"bfy_mig_{secrets.token_hex(4)}"
    )


async def _analyst_grants_on(services: Services, databases: set[str]) -> set[str]:
    engine = create_async_engine(
        settings_without_env_file(DATABASE_URL=services.database_url).db.server_url(),
        poolclass=pool.NullPool,
    )
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text("SELECT DISTINCT Db FROM mysql.tables_priv WHERE User = 'analyst'")
            )
            return {row[0] for row in result} & databases
    finally:
        await engine.dispose()


async def test_reporting_databases_migrated_at_once_share_the_analyst_and_clear_stale_grants(
    services: Services,
) -> None:
    """Parallel test workers and replays migrate reporting databases on one server at the same
    time; each one revokes the grants a dropped database left. They must not trip over each
    other revoking the same stale grant, nor leave it behind."""

    async def migrate_reporting(databases: list[Settings]) -> None:
        for settings in databases:
            await create_databases(settings)
        migrations = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", MIGRATE_REPORTING, _url(s.db.reporting_url), cwd=ROOT
            )
            for s in databases
        ]
        assert [await m.wait() for m in migrations] == [0] * len(databases)

    dropped = [_own_databases(services) for _ in range(3)]
    await migrate_reporting(dropped)
    for settings in dropped:
        await drop_databases(settings)
    stale = {s.db.reporting_url.database or "" for s in dropped}

    several = [_own_databases(services) for _ in range(6)]
    try:
        await migrate_reporting(several)
        fresh = {s.db.reporting_url.database or "" for s in several}
        assert await _analyst_grants_on(services, fresh | stale) == fresh
    finally:
        for settings in several:
            await drop_databases(settings)
