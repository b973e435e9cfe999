"""What every Alembic `env.py` here does, and the `Config` that points Alembic at one database.

There is no `alembic.ini`: callers build the config with `alembic_config()`, which carries the
target URL in `config.attributes["url"]`. Online migrations run on the async asyncmy driver
inside their own `asyncio.run`, so `alembic.command` must be called from a thread without a
running event loop (for example through `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent
DATABASES = ("write", "read", "reporting")
"""One Alembic script folder per database, named like the folder under this package."""


def alembic_config(database: str, url: URL | str) -> Config:
    """An Alembic config for one of `DATABASES`, migrating the database at `url`."""
    if database not in DATABASES:
        raise ValueError(f"unknown database {database!r}; expected one of {DATABASES}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR / database))
    config.attributes["url"] = make_url(url)
    return config


def run_env(target_metadata: MetaData) -> None:
    """The body of an `env.py`: run the pending migrations offline (as SQL) or online."""
    url = _target_url()
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_online(url, target_metadata))


def _target_url() -> URL:
    config = context.config
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: build the config with alembic_config()")
    return make_url(url)


async def _run_online(url: URL, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do_run_migrations, target_metadata)
    finally:
        await engine.dispose()


def _do_run_migrations(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
