"""Rebuilding a projection: empty its tables and forget its positions, so the projector
replays every event from the start of the topics and writes the same rows again."""

from __future__ import annotations

from sqlalchemy import MetaData, delete
from sqlalchemy.engine import URL

from infra.db import make_engine
from infra.settings import Settings
from projections.reporting import tables as reporting_tables
from projections.website import tables as website_tables


def projection_store(settings: Settings, name: str) -> tuple[MetaData, URL]:
    if name == "website":
        return website_tables.metadata, settings.db.read_url
    if name == "reporting":
        return reporting_tables.metadata, settings.db.reporting_url
    raise ValueError(f"unknown projection {name!r}")


async def reset_projection(settings: Settings, name: str) -> None:
    metadata, url = projection_store(settings, name)
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))
    finally:
        await engine.dispose()
