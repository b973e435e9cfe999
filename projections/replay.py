"""Replaying a projection into fresh tables and swapping them in while its projector runs.

A replay never shows readers an empty or half-built read model: it builds a "green" copy of
the projection's tables in a scratch database, with the projector's own handler (the code the
live role runs) reading every record of its topics from the start. To swap, it fences the live
projector by holding the row locks of its positions: every batch transaction of the runtime
first locks its position row (`PositionStore.check_epoch`), so while the lock is held nothing
commits, and the projector waits instead of giving its partitions up, as a bumped epoch would
make it do (the runtime pauses a fenced partition until the next rebalance). With the live
tables still, the green ones are caught up to exactly the positions the live ones are at, both
are checksummed table by table, and one multi-table `RENAME TABLE` (atomic in MariaDB) moves
the live tables aside and the green ones in. Releasing the lock lets the waiting projector go
on from its unchanged positions, now on the swapped tables.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, literal_column, select, text
from sqlalchemy import table as table_clause
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from infra.bootstrap import PROJECTORS, group_name, projector_handler
from infra.db import make_engine
from infra.pipeline.exactly_once import BatchHandler, PositionStore, Record
from infra.pipeline.faults import backoff_delay, is_transient
from infra.settings import Settings
from projections.progress import Progress
from projections.rebuild import QUIET_SECONDS, projection_store
from projections.website import tables as website_tables

REPLAYABLE = PROJECTORS
"""Every projection: its tables are all its own and live beside its database's
`consumer_positions` table. The reporting database's `analyst` user is granted its tables by
name, so the grants hold for the tables swapped in."""

POSITIONS = "consumer_positions"
HOLD_ATTEMPTS = 5


class ReplayError(RuntimeError):
    """The replay cannot go on (nothing was swapped)."""


@dataclass(frozen=True)
class TableCheck:
    table: str
    live_rows: int
    live_checksum: int | None
    green_rows: int
    green_checksum: int | None

    @property
    def equal(self) -> bool:
        return (self.live_rows, self.live_checksum) == (self.green_rows, self.green_checksum)


@dataclass(frozen=True)
class ReplayReport:
    projection: str
    records: int
    """Records the green tables were built from, over every source topic."""
    set_aside: int
    """Records the projector could not apply (the live one dead-lettered them)."""
    seconds: float
    checks: tuple[TableCheck, ...]
    comparable: bool
    """Whether the green tables were checked at the live ones' positions (the live projector
    was not behind the replay)."""
    swapped: bool
    green: str | None
    """The scratch database kept for inspection when nothing was swapped."""
    old: str | None
    """Where the replaced tables were kept (None when dropped or not swapped)."""

    @property
    def equal(self) -> bool:
        return self.comparable and all(check.equal for check in self.checks)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def replay(
    settings: Settings,
    name: str,
    *,
    progress: Progress | None = None,
    force: bool = False,
    drop_old: bool = False,
    wait_seconds: float = 60.0,
) -> ReplayReport:
    """Rebuild projection `name` into green tables and swap them in if every table's rows and
    checksum equal the live one's (or `force`). The live projector may keep running; it is
    held for the catch-up, the checksums and the swap only."""
    if name not in REPLAYABLE:
        raise ValueError(f"cannot replay {name!r}; replayable: {', '.join(REPLAYABLE)}")
    started = time.monotonic()
    metadata, url = projection_store(settings, name)
    live_db = url.database
    if live_db is None:
        raise ValueError(f"the {name} projection's database URL names no database")
    tables = [t.name for t in metadata.sorted_tables if t.name != POSITIONS]
    tag = secrets.token_hex(4)
    green_db = f"{live_db}_green_{tag}"
    old_db = f"{live_db}_old_{datetime.now(UTC):%Y%m%d%H%M%S}_{tag}"
    bar = progress or Progress(stream=None)
    admin = make_engine(url, pool_size=2)
    green = make_engine(url.set(database=green_db), pool_size=2)
    keep_green = False
    try:
        async with admin.begin() as conn:
            await _create_green(conn, live_db, green_db, [*tables, POSITIONS])
        handler, sources = projector_handler(settings, name)
        runner = _Replayer(
            handler,
            sources,
            green,
            PositionStore(website_tables.consumer_positions, f"replay.{name}.{tag}"),
            settings.kafka_bootstrap_servers,
            bar,
        )
        await runner.start()
        try:
            await runner.to_ends()
            live_group = group_name(settings, f"projector.{name}")
            bar.phase("waiting for the live projector")
            await _wait_for(admin, live_group, runner.positions, wait_seconds)
            bar.phase("fencing the live projector")
            report = await _check_and_swap(
                admin,
                runner,
                live_group=live_group,
                live_db=live_db,
                green_db=green_db,
                old_db=old_db,
                tables=tables,
                force=force,
                started=started,
                name=name,
            )
        finally:
            await runner.stop()
        if report.swapped and drop_old:
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP DATABASE {_quote(conn, old_db)}"))
            report = replace(report, old=None)
        keep_green = not report.swapped
        bar.finish(report.records, report.seconds)
        return report
    finally:
        await green.dispose()
        if not keep_green:
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {_quote(conn, green_db)}"))
        await admin.dispose()


class _Replayer:
    """Drives a projector's handler over its topics into the green tables, partition batches
    in the order the runtime applies them, each in one transaction with its position."""

    def __init__(
        self,
        handler: BatchHandler,
        sources: Sequence[str],
        engine: AsyncEngine,
        positions: PositionStore,
        bootstrap_servers: str,
        bar: Progress,
    ) -> None:
        self._handler = handler
        self._sources = tuple(sources)
        self._engine = engine
        self._store = positions
        self._bar = bar
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self.positions: dict[TopicPartition, int] = {}
        self.records = 0
        self.set_aside = 0

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await self._partitions()
        starts = await self._consumer.beginning_offsets(partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._consumer.assign(partitions)
        for tp in partitions:
            async with self._engine.begin() as conn:
                await self._store.claim(conn, tp)
            self._consumer.seek(tp, starts[tp])
            self.positions[tp] = starts[tp]
        self._bar.start(sum(ends[tp] - starts[tp] for tp in partitions))

    async def stop(self) -> None:
        await self._consumer.stop()

    async def to_ends(self) -> None:
        """Up to every partition's current end: the reported end, and past it whatever one
        more fetch brings within `QUIET_SECONDS` (the embedded broker reports the start of a
        partition's last batch as its end)."""
        ends = await self._consumer.end_offsets(list(self.positions))
        heard = dict.fromkeys(self.positions, time.monotonic())

        def done(tp: TopicPartition, now: float) -> bool:
            at = self.positions[tp]
            return at >= ends[tp] and (at > ends[tp] or now - heard[tp] > QUIET_SECONDS)

        await self._read(done, None, heard)

    async def to(self, targets: dict[TopicPartition, int]) -> None:
        """Exactly up to `targets` (records beyond are left for later)."""
        for tp, at in self.positions.items():
            self._consumer.seek(tp, at)
        await self._read(lambda tp, _: self.positions[tp] >= targets[tp], targets, {})

    async def _read(
        self,
        done: Callable[[TopicPartition, float], bool],
        limits: dict[TopicPartition, int] | None,
        heard: dict[TopicPartition, float],
    ) -> None:
        open_ = {tp for tp in self.positions if not done(tp, time.monotonic())}
        while open_:
            fetched: dict[TopicPartition, list[Record]] = await self._consumer.getmany(
                *open_, timeout_ms=100, max_records=5000
            )
            for tp in sorted(fetched, key=self._priority):
                records = fetched[tp]
                if limits is not None and records[-1].offset >= limits[tp]:
                    records = [r for r in records if r.offset < limits[tp]]
                    self._consumer.seek(tp, limits[tp])
                if records:
                    heard[tp] = time.monotonic()
                    await self._apply(tp, records)
            now = time.monotonic()
            open_ = {tp for tp in open_ if not done(tp, now)}

    def _priority(self, tp: TopicPartition) -> tuple[int, int]:
        return self._sources.index(tp.topic), tp.partition

    async def _apply(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        """Like the runtime: a batch that fails is applied a record at a time, and a record
        that fails alone for any reason but a transient one is set aside (the live projector
        dead-lettered it; the replay publishes nothing)."""
        try:
            await self._transaction(tp, records)
        except Exception as exc:
            if is_transient(exc):
                raise
            for record in records:
                try:
                    await self._transaction(tp, [record])
                except Exception as alone:
                    if is_transient(alone):
                        raise
                    async with self._engine.begin() as conn:
                        await self._store.advance(conn, tp, record.offset + 1, dead_letters=1)
                    self.set_aside += 1
        self.positions[tp] = records[-1].offset + 1
        self.records += len(records)
        self._bar.advance(len(records))

    async def _transaction(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        async with self._engine.begin() as conn:
            handled = await self._handler.handle(conn, tp, records)
            await self._store.advance(
                conn, tp, records[-1].offset + 1, dead_letters=len(handled.dead_letters)
            )
        self.set_aside += len(handled.dead_letters)
        if handled.committed is not None:
            handled.committed()

    async def _partitions(self) -> list[TopicPartition]:
        found: list[TopicPartition] = []
        for topic in self._sources:
            numbers = self._consumer.partitions_for_topic(topic)
            if not numbers:
                await self._consumer.client.force_metadata_update()
                numbers = self._consumer.partitions_for_topic(topic)
            if not numbers:
                raise ReplayError(f"topic {topic} does not exist; run `butterfly topics`")
            found.extend(TopicPartition(topic, p) for p in sorted(numbers))
        return found


async def _create_green(
    conn: AsyncConnection, live_db: str, green_db: str, tables: Sequence[str]
) -> None:
    """Tables `LIKE` the live ones: the same definitions (as migrated), so the same rows give
    the same checksums and the swapped-in tables are what the migrations expect."""
    await conn.execute(text(f"CREATE DATABASE {_quote(conn, green_db)}"))
    for table in tables:
        await conn.execute(
            text(
                f"CREATE TABLE {_qualified(conn, green_db, table)} "
                f"LIKE {_qualified(conn, live_db, table)}"
            )
        )


async def _wait_for(
    engine: AsyncEngine, group: str, reached: dict[TopicPartition, int], seconds: float
) -> None:
    """Until the live projector has got as far as the replay on every partition (the tables
    can only be compared where both stand at the same positions), or `seconds` have passed:
    a projector that is stopped behind the replay leaves the tables not comparable."""
    deadline = time.monotonic() + seconds
    while True:
        async with engine.connect() as conn:
            live = await _live_positions(conn, group, list(reached))
        if all(live.get(tp, 0) >= at for tp, at in reached.items()):
            return
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.1)


async def _check_and_swap(
    admin: AsyncEngine,
    runner: _Replayer,
    *,
    live_group: str,
    live_db: str,
    green_db: str,
    old_db: str,
    tables: Sequence[str],
    force: bool,
    started: float,
    name: str,
) -> ReplayReport:
    async with admin.connect() as fence, admin.connect() as work:
        transaction, live = await _hold(fence, live_group, list(runner.positions))
        try:
            comparable = all(live[tp] >= at for tp, at in runner.positions.items())
            await runner.to({tp: max(at, live[tp]) for tp, at in runner.positions.items()})
            checks = tuple([await _check(work, live_db, green_db, table) for table in tables])
            swap = force or (comparable and all(check.equal for check in checks))
            if swap:
                await _swap(work, live_db, green_db, old_db, tables)
                if not comparable:
                    await _set_positions(fence, live_group, runner.positions)
            await transaction.commit()
        except BaseException:
            await transaction.rollback()
            raise
    return ReplayReport(
        projection=name,
        records=runner.records,
        set_aside=runner.set_aside,
        seconds=time.monotonic() - started,
        checks=checks,
        comparable=comparable,
        swapped=swap,
        green=None if swap else green_db,
        old=old_db if swap else None,
    )


async def _hold(
    conn: AsyncConnection, group: str, partitions: list[TopicPartition]
) -> tuple[AsyncTransaction, dict[TopicPartition, int]]:
    """Lock the live group's position rows (made first where the group has none yet), so
    none of its batch transactions can commit until the returned transaction ends; returns
    it with the positions the rows hold. A deadlock with the runtime's heartbeat (which
    updates all a member's rows at once) is retried."""
    positions = website_tables.consumer_positions
    failures = 0
    while True:
        transaction = await conn.begin()
        try:
            await conn.execute(
                insert(positions).prefix_with("IGNORE"),
                [
                    {
                        "group_name": group,
                        "topic": tp.topic,
                        "partition_no": tp.partition,
                        "next_offset": 0,
                        "epoch": 0,
                    }
                    for tp in sorted(partitions)
                ],
            )
            found = await _live_positions(conn, group, partitions, lock=True)
        except Exception as exc:
            await transaction.rollback()
            if not is_transient(exc) or failures >= HOLD_ATTEMPTS:
                raise
            failures += 1
            await asyncio.sleep(backoff_delay(failures))
            continue
        return transaction, {tp: found.get(tp, 0) for tp in partitions}


async def _live_positions(
    conn: AsyncConnection, group: str, partitions: list[TopicPartition], *, lock: bool = False
) -> dict[TopicPartition, int]:
    p = website_tables.consumer_positions.c
    query = select(p.topic, p.partition_no, p.next_offset).where(
        p.group_name == group, p.topic.in_({tp.topic for tp in partitions})
    )
    rows = await conn.execute(query.with_for_update() if lock else query)
    return {TopicPartition(row.topic, row.partition_no): int(row.next_offset) for row in rows}


async def _check(conn: AsyncConnection, live_db: str, green_db: str, table: str) -> TableCheck:
    live_rows, live_sum = await _table_sum(conn, live_db, table)
    green_rows, green_sum = await _table_sum(conn, green_db, table)
    return TableCheck(table, live_rows, live_sum, green_rows, green_sum)


async def _table_sum(conn: AsyncConnection, database: str, table: str) -> tuple[int, int | None]:
    name = _qualified(conn, database, table)
    rows = (
        await conn.execute(select(func.count()).select_from(table_clause(table, schema=database)))
    ).scalar_one()
    result = (await conn.execute(text(f"CHECKSUM TABLE {name} EXTENDED"))).one()
    return int(rows), None if result[1] is None else int(result[1])


async def _swap(
    conn: AsyncConnection, live_db: str, green_db: str, old_db: str, tables: Sequence[str]
) -> None:
    """One statement, so readers see either every old table or every new one."""
    await conn.execute(text(f"CREATE DATABASE {_quote(conn, old_db)}"))
    moves = [
        f"{_qualified(conn, live_db, t)} TO {_qualified(conn, old_db, t)}, "
        f"{_qualified(conn, green_db, t)} TO {_qualified(conn, live_db, t)}"
        for t in tables
    ]
    await conn.execute(text(f"RENAME TABLE {', '.join(moves)}"))


async def _set_positions(
    conn: AsyncConnection, group: str, reached: dict[TopicPartition, int]
) -> None:
    """Where the swapped tables stand, for a live projector that was behind them: its epochs
    are bumped, so a member still running from before gives those partitions up rather than
    applying again what the green tables already hold."""
    positions = website_tables.consumer_positions
    stmt = insert(positions)
    await conn.execute(
        stmt.on_duplicate_key_update(
            next_offset=stmt.inserted.next_offset,
            epoch=positions.c.epoch + literal_column("1"),
        ),
        [
            {
                "group_name": group,
                "topic": tp.topic,
                "partition_no": tp.partition,
                "next_offset": offset,
                "epoch": 1,
            }
            for tp, offset in sorted(reached.items())
        ],
    )


def _quote(conn: AsyncConnection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote_identifier(name))


def _qualified(conn: AsyncConnection, database: str, table: str) -> str:
    return f"{_quote(conn, database)}.{_quote(conn, table)}"
