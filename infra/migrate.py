"""Create, migrate and drop Butterfly's three databases (write, read, reporting)."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from infra.migrations.runner import alembic_config
from infra.settings import DatabaseSettings, Settings


def database_urls(db: DatabaseSettings) -> dict[str, URL]:
    """Each Alembic script folder (see `infra.migrations.runner.DATABASES`) and its URL."""
    return {"write": db.write_url, "read": db.read_url, "reporting": db.reporting_url}


async def create_databases(settings: Settings) -> None:
    """Create the three databases (utf8mb4) if they do not exist yet."""
    await _on_server(
        settings.db,
        "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    )


async def drop_databases(settings: Settings) -> None:
    """Drop the three databases, with everything in them, if they exist."""
    await _on_server(settings.db, "DROP DATABASE IF EXISTS {}")


async def migrate(settings: Settings) -> None:
    """Create the databases if needed, then bring each one to its Alembic head."""
    await create_databases(settings)
    for database, url in database_urls(settings.db).items():
        config = alembic_config(database, url)
        await asyncio.to_thread(command.upgrade, config, "head")


async def _on_server(db: DatabaseSettings, statement: str) -> None:
    """Run `statement` once per database name, on the server rather than in a database."""
    engine = create_async_engine(db.server_url(), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            quote = connection.dialect.identifier_preparer.quote_identifier
            for name in db.names():
                await connection.execute(text(statement.format(quote(name))))
    finally:
        await engine.dispose()
