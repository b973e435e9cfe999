"""What every simulator does the same way: serve its API as a process of its own, and keep
its state in a database of its own (created when it starts, dropped by a fresh `make run`
and by the tests that start it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
import uvloop
from litestar import Litestar
from sqlalchemy import MetaData, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from infra.db import make_engine
from infra.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM once it has shut down gracefully, so the process
    would die of the signal; here the signal only asks the server to stop, and a clean stop
    exits 0 like every other role."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def serve(app: Litestar, settings: Settings, port: int) -> None:
    """Serve `app` until SIGINT or SIGTERM."""
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=port,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
            http="httptools",
        )
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve())


async def _on_server(settings: Settings, database: str, statement: str) -> None:
    engine = create_async_engine(settings.db.server_url(), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            quote = connection.dialect.identifier_preparer.quote_identifier
            await connection.execute(text(statement.format(quote(database))))
    finally:
        await engine.dispose()


async def open_database(
    settings: Settings, database: str, metadata: MetaData, *, pool_size: int
) -> AsyncEngine:
    """Create the simulator's database and tables if missing, and an engine on it."""
    await _on_server(
        settings,
        database,
        "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    )
    engine = make_engine(settings.db.url_for(database), pool_size=pool_size)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return engine


async def drop_database(settings: Settings, database: str) -> None:
    await _on_server(settings, database, "DROP DATABASE IF EXISTS {}")
