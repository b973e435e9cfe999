"""How far behind each consumer is, when it last moved, and what it dead-lettered.

Each consumer stores, beside its offsets, when a partition last moved (`progress_at`) and how
many of its records went to the dead-letter topic; the broker says where each partition ends.
A partition is stalled when it has lag and has not moved for `stall_seconds`: `/health`
answers 503 naming it, and `butterfly status` prints it. A partition is consumed when its
owner's heartbeat (`seen_at`) is fresh: `/health/ready` asks that of every partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from producers.outbox import utcnow


@dataclass(frozen=True)
class WatchedGroup:
    """A consumer group, the topics it consumes, and where it keeps its positions."""

    group: str
    topics: tuple[str, ...]
    engine: AsyncEngine
    positions: Table


@dataclass(frozen=True)
class PartitionProgress:
    group: str
    topic: str
    partition: int
    next_offset: int
    end_offset: int
    progress_at: datetime | None
    dead_letters: int
    stalled: bool
    seen_at: datetime | None = None
    consuming: bool = False
    """Its owner stamped it within the last three heartbeats."""

    @property
    def lag(self) -> int:
        return max(self.end_offset - self.next_offset, 0)

    def as_json(self) -> dict[str, object]:
        return {
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "lag": self.lag,
            "last_progress": self.progress_at.replace(tzinfo=UTC).isoformat()
            if self.progress_at
            else None,
            "dead_letters": self.dead_letters,
            "stalled": self.stalled,
            "consuming": self.consuming,
        }


class ConsumerWatch:
    """Reads every watched group's progress. Kept alive (in a gateway), it also remembers
    since when it has seen a partition lag at one offset, so a partition that was idle for
    hours is not called stalled the moment a new record arrives."""

    def __init__(
        self,
        groups: Sequence[WatchedGroup],
        bootstrap_servers: str,
        stall_seconds: float,
        *,
        observe: bool = True,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        """With `observe` false (a one-shot reading, as `butterfly status` makes), a lagging
        partition is stalled when its stored last progress is older than the stall time."""
        self._observe = observe
        self._fresh = 3 * heartbeat_seconds
        self._groups = groups
        self._bootstrap = bootstrap_servers
        self._stall = stall_seconds
        self._consumer: AIOKafkaConsumer | None = None
        self._lagging_since: dict[tuple[str, str, int], tuple[int, float]] = {}

    async def close(self) -> None:
        """Stop the broker client and dispose of the watched groups' engines."""
        await self._stop_consumer()
        for engine in {id(g.engine): g.engine for g in self._groups}.values():
            await engine.dispose()

    async def _stop_consumer(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def progress(self) -> list[PartitionProgress]:
        ends = await self._end_offsets()
        rows = await asyncio.gather(*(self._positions(group) for group in self._groups))
        now_wall, now = utcnow(), time.monotonic()
        found: list[PartitionProgress] = []
        for group, stored in zip(self._groups, rows, strict=True):
            for tp, end in sorted(ends.items()):
                if tp.topic not in group.topics:
                    continue
                next_offset, progress_at, dead, seen_at = stored.get(
                    (tp.topic, tp.partition), (0, None, 0, None)
                )
                key = (group.group, tp.topic, tp.partition)
                stalled = False
                if end > next_offset:
                    quiet = float("inf")
                    if self._observe:
                        seen_offset, since = self._lagging_since.get(key, (-1, now))
                        if seen_offset != next_offset:
                            since = now
                            self._lagging_since[key] = (next_offset, now)
                        quiet = now - since
                    if progress_at is not None:
                        quiet = min(quiet, (now_wall - progress_at).total_seconds())
                    stalled = quiet >= self._stall
                else:
                    self._lagging_since.pop(key, None)
                found.append(
                    PartitionProgress(
                        group.group,
                        tp.topic,
                        tp.partition,
                        next_offset,
                        end,
                        progress_at,
                        dead,
                        stalled,
                        seen_at,
                        seen_at is not None and (now_wall - seen_at).total_seconds() < self._fresh,
                    )
                )
        return found

    async def _positions(
        self, group: WatchedGroup
    ) -> dict[tuple[str, int], tuple[int, datetime | None, int, datetime | None]]:
        p = group.positions.c
        async with group.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    p.topic, p.partition_no, p.next_offset, p.progress_at, p.dead_letters, p.seen_at
                ).where(p.group_name == group.group)
            )
            return {
                (row.topic, int(row.partition_no)): (
                    int(row.next_offset),
                    row.progress_at,
                    int(row.dead_letters),
                    row.seen_at,
                )
                for row in rows
            }

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, enable_auto_commit=False, request_timeout_ms=5000
            )
            await consumer.start()
            self._consumer = consumer
        try:
            topics = {topic for group in self._groups for topic in group.topics}
            partitions = [
                TopicPartition(topic, p)
                for topic in sorted(topics)
                for p in sorted(self._consumer.partitions_for_topic(topic) or ())
            ]
            ends = await self._consumer.end_offsets(partitions) if partitions else {}
        except BaseException:
            await self._stop_consumer()
            raise
        return {tp: int(offset) for tp, offset in ends.items()}
