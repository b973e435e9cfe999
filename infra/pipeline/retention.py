"""Forgetting old de-duplication records without giving up exactly-once.

`decided_commands`, `applied_events` and `command_outcomes` grow with every message. A row may
go only once no copy of its message can come back: never before the command topic's own
retention has passed (a redelivery can come from anywhere in the topic), and never before the
configured retention. A topic that keeps its records for ever keeps these rows for ever.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import Column, Table, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from producers.outbox import utcnow

log = structlog.get_logger(__name__)


async def topic_retention(bootstrap_servers: str, topic: str) -> timedelta | None:
    """How long `topic` keeps its records; None for ever, or when the broker does not say."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "retention.ms" and entry[1] is not None:
                    millis = int(entry[1])
                    return None if millis < 0 else timedelta(milliseconds=millis)
    return None


def dedup_horizon(keep: timedelta, topic_keeps: timedelta | None) -> timedelta | None:
    """How old a de-duplication row must be to go: None (never) while the command topic
    keeps its records for ever or does not say how long."""
    if topic_keeps is None:
        return None
    return max(keep, topic_keeps)


@dataclass(frozen=True)
class Purge:
    table: Table
    stamped: Column[object]
    """The column saying when the row was written."""


class DedupRetention:
    """Purges rows past the horizon, at most once per `every`, from a role's idle time."""

    def __init__(
        self,
        engine: AsyncEngine,
        purges: Sequence[Purge],
        *,
        bootstrap_servers: str,
        command_topic: str,
        keep: timedelta,
        every: timedelta = timedelta(hours=1),
        batch: int = 5000,
    ) -> None:
        self._engine = engine
        self._purges = purges
        self._bootstrap = bootstrap_servers
        self._command_topic = command_topic
        self._keep = keep
        self._every = every.total_seconds()
        self._batch = batch
        self._next_run = time.monotonic() + min(self._every, 60.0)

    async def horizon(self) -> timedelta | None:
        """How old a row must be to go, or None while it must stay."""
        try:
            topic_keeps = await topic_retention(self._bootstrap, self._command_topic)
        except Exception as exc:  # the broker cannot say: keep everything
            log.warning("retention_unknown", topic=self._command_topic, error=repr(exc))
            return None
        return dedup_horizon(self._keep, topic_keeps)

    async def purge(self) -> int:
        horizon = await self.horizon()
        return 0 if horizon is None else await self.purge_older_than(horizon)

    async def purge_older_than(self, horizon: timedelta) -> int:
        cutoff = utcnow() - horizon
        purged = 0
        for purge in self._purges:
            while True:
                async with self._engine.begin() as conn:
                    result = await conn.execute(
                        delete(purge.table)
                        .where(purge.stamped < cutoff)
                        .with_dialect_options(mysql_limit=self._batch)
                    )
                count = int(result.rowcount or 0)
                purged += count
                if count < self._batch:
                    break
        if purged:
            log.info("dedup_records_purged", count=purged, older_than=str(horizon))
        return purged

    async def when_idle(self) -> None:
        if time.monotonic() < self._next_run:
            return
        self._next_run = time.monotonic() + self._every
        await self.purge()
