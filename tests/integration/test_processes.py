"""Roles as real OS processes (`python -m infra.cli …`), the way `make run` runs them: the
relay republishing what a dead decider left in the outbox, and two deciders of one consumer
group splitting the partitions and taking over from each other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.registration import tables as w
from infra.bootstrap import build_decider, build_projector, decider_group
from infra.pipeline.exactly_once import BatchHandler, HandledBatch, Record
from infra.settings import Settings
from infra.supervisor import die_with_parent
from schemas.envelope import Envelope
from schemas.topics import Topics, registration_key
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    new_convention,
    open_convention,
    read_topic,
    registration,
    running,
    send_commands,
    sold,
    statuses,
)

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
STOP_DEADLINE = 15.0


# a role as its own process -------------------------------------------------------------------


class RoleProcess:
    """One `python -m infra.cli …` process of this test's settings; its JSON log (stderr) is
    kept in a file, so a chatty role can never block on a full pipe."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    lines.append(entry)
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.log() if entry.get("message") == name]

    def owned(self) -> set[int]:
        """The partitions this process holds now, by its own log."""
        owned: set[int] = set()
        for entry in self.log():
            message = entry.get("message")
            if message == "partitions_claimed":
                owned |= _partitions(entry["partitions"])
            elif message == "partitions_revoked":
                owned -= _partitions(entry["partitions"])
            elif message == "fenced_out":
                owned -= _partitions([entry["partition"]])
        return owned

    async def terminate(self, timeout: float = STOP_DEADLINE) -> int | None:
        """SIGTERM, and SIGKILL if it has not exited within `timeout`; the exit code of the
        SIGTERM, or None if it had to be killed."""
        if self.process.returncode is not None:
            return self.process.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), timeout)
            return None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _partitions(names: Sequence[str]) -> set[int]:
    return {int(name.rsplit("[", 1)[1].rstrip("]")) for name in names}


def role_env(settings: Settings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
        "BUTTERFLY_DB_PREFIX": settings.db_prefix,
        "BUTTERFLY_LOG_LEVEL": "INFO",
    }


@contextlib.asynccontextmanager
async def role_processes(
    settings: Settings, log_dir: Path, *argvs: Sequence[str]
) -> AsyncIterator[list[RoleProcess]]:
    """Start one process per argv (`infra.cli` arguments); whatever still runs at the end is
    terminated, then killed."""
    started: list[RoleProcess] = []
    try:
        for argv in argvs:
            log_path = log_dir / f"{'-'.join(argv)}-{len(started)}.log"
            with log_path.open("wb") as log_file:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "infra.cli",
                    *argv,
                    cwd=PROJECT,
                    env={**os.environ, **role_env(settings)},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log_file,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            started.append(RoleProcess(process, log_path))
        yield started
    finally:
        await asyncio.gather(*(role.terminate() for role in started), return_exceptions=True)


# the relay ------------------------------------------------------------------------------------


class NeverPublishes:
    """A decider that dies after each commit and before publishing: its decisions stay in the
    outbox, unpublished."""

    def __init__(self, inner: BatchHandler) -> None:
        self.inner = inner

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        handled = await self.inner.handle(conn, tp, records)
        return HandledBatch(handled.dead_letters, None)


async def outbox(settings: Settings) -> list[Any]:
    o = w.outbox.c
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(o.seq, o.event_id, o.published_at, o.message_key).order_by(o.seq)
                )
            ).all()
        )


async def decided_commands(settings: Settings) -> int:
    async with engine_for(settings.db.write_url) as engine:
        return await count(engine, w.decided_commands)


async def all_statuses(
    settings: Settings, conventions: Sequence[uuid.UUID]
) -> list[dict[str, int]]:
    return [await statuses(settings, cid) for cid in conventions]


async def test_the_relay_process_publishes_what_a_dead_decider_left(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    conventions = [new_convention(quota=2) for _ in range(3)]
    envelopes: list[Envelope] = []
    for create in conventions:
        envelopes += [
            command_envelope(create),
            command_envelope(open_convention(create.convention_id)),
        ]
        envelopes += [
            command_envelope(registration(create.convention_id, f"r{i}@example.org")[0])
            for i in range(3)
        ]
    await send_commands(settings, *envelopes)

    async with running(build_decider(settings, wrap_handler=NeverPublishes)):
        await eventually(
            lambda: decided_commands(settings),
            lambda n: n == len(envelopes),
            what="every command decided by the decider that never publishes",
        )
    left = await outbox(settings)
    # created, opened, 2 confirmed and 1 sold out per convention
    assert len(left) == 5 * len(conventions)
    assert all(row.published_at is None for row in left)
    assert await read_topic(settings, topics.registration_events) == []

    async with (
        running(build_projector(settings, "website")),
        role_processes(settings, tmp_path, ["relay"]) as (relay,),
    ):
        await eventually(
            lambda: outbox(settings),
            lambda rows: all(row.published_at is not None for row in rows),
            timeout=30,
            interval=0.2,
            what="every outbox row marked published by the relay",
        )
        events = await read_topic(settings, topics.registration_events)
        await eventually(
            lambda: all_statuses(settings, [c.convention_id for c in conventions]),
            lambda found: found == [{"confirmed": 2, "rejected:sold_out": 1}] * len(conventions),
            what="the relayed events projected",
        )
        assert relay.process.returncode is None, relay.tail()
        assert await relay.terminate() == 0, relay.tail()

    on_topic = [json.loads(record.value)["message_id"] for record in events]
    assert set(on_topic) == {row.event_id for row in left}, "every event id, none other"
    # Per partition, the events first appear in the order they were decided.
    seq = {row.event_id: row.seq for row in left}
    by_partition: dict[int, list[int]] = {}
    for record in events:
        event_id = json.loads(record.value)["message_id"]
        firsts = by_partition.setdefault(record.partition, [])
        if seq[event_id] not in firsts:
            firsts.append(seq[event_id])
    for partition, order in by_partition.items():
        assert order == sorted(order), (partition, order)
    assert relay.events("outbox_relayed"), relay.tail()
    assert relay.events("relay_stopped"), relay.tail()
    for create in conventions:
        assert await sold(settings, create.convention_id) == 2


# two deciders in one group -----------------------------------------------------------------


def conventions_on_every_partition(partitions: int, per_partition: int) -> list[uuid.UUID]:
    """Convention ids whose commands land on each partition `per_partition` times (keys are
    placed by the producers' default partitioner)."""
    place = DefaultPartitioner()
    everyone = list(range(partitions))
    chosen: dict[int, list[uuid.UUID]] = {p: [] for p in everyone}
    while any(len(ids) < per_partition for ids in chosen.values()):
        convention_id = uuid.uuid4()
        p = place(registration_key(convention_id).encode(), everyone, everyone)
        if len(chosen[p]) < per_partition:
            chosen[p].append(convention_id)
    return [cid for ids in chosen.values() for cid in ids]


def rush_for(convention_id: uuid.UUID) -> list[Envelope]:
    """Create and open with quota 3, then five requests: three confirmed, one e-mail again,
    one sold out (one partition decides them in this order)."""
    create = new_convention(quota=3, convention_id=convention_id)
    emails = ["a@example.org", "b@example.org", "c@example.org", "A@example.org", "d@example.org"]
    return [
        command_envelope(create),
        command_envelope(open_convention(convention_id)),
        *(command_envelope(registration(convention_id, email)[0]) for email in emails),
    ]


EXPECTED = {"confirmed": 3, "rejected:already_registered": 1, "rejected:sold_out": 1}
TAKEOVER_BOUND = 6.0 + 3.0 + 3.0
"""The session timeout (ConsumerConfig), the broker's wait for members to join a rebalance
(3 s on the embedded broker), and slack. A member stopped in the group's first generation
does not send LeaveGroup: the embedded broker numbers that generation 0 and aiokafka leaves
only from generation 1 on, so the survivor learns of it when the session expires."""


async def epochs(settings: Settings) -> dict[int, int]:
    p = w.consumer_positions.c
    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        rows = (
            await conn.execute(
                select(p.partition_no, p.epoch).where(
                    p.group_name == decider_group(settings),
                    p.topic == Topics(settings.topic_prefix).registration_commands,
                )
            )
        ).all()
    return {int(row.partition_no): int(row.epoch) for row in rows}


async def test_two_decider_processes_split_the_partitions_and_take_over(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings(partitions=3)
    everyone = {0, 1, 2}
    decider = ["decider", "registration"]
    async with (
        running(build_projector(settings, "website")),
        role_processes(settings, tmp_path, decider, decider) as (first, second),
    ):

        async def split() -> tuple[set[int], set[int]]:
            return first.owned(), second.owned()

        mine, theirs = await eventually(
            split,
            lambda owned: (
                all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == everyone
            ),
            timeout=30,
            interval=0.2,
            what="the two deciders splitting the three partitions",
        )

        before = conventions_on_every_partition(3, per_partition=2)
        envelopes = [e for cid in before for e in rush_for(cid)]
        await send_commands(settings, *envelopes)
        await eventually(
            lambda: all_statuses(settings, before),
            lambda found: found == [EXPECTED] * len(before),
            timeout=30,
            interval=0.2,
            what="every registration decided once",
        )
        assert await decided_commands(settings) == len(envelopes)
        assert (first.owned(), second.owned()) == (mine, theirs), "no rebalance meanwhile"
        assert first.events("command_decided"), first.tail()
        assert second.events("command_decided"), second.tail()
        decided_by = {
            p.pid: {entry["command_id"] for entry in p.events("command_decided")}
            for p in (first, second)
        }
        assert not decided_by[first.pid] & decided_by[second.pid], "no command decided twice"
        assert decided_by[first.pid] | decided_by[second.pid] == {
            str(e.message_id) for e in envelopes
        }

        held = await epochs(settings)
        stopped_at = time.monotonic()
        assert await first.terminate() == 0, first.tail()

        async def survivor() -> set[int]:
            return second.owned()

        await eventually(
            survivor,
            lambda owned: owned == everyone,
            timeout=TAKEOVER_BOUND,
            interval=0.1,
            what="the survivor holding every partition",
        )
        took = time.monotonic() - stopped_at
        assert took < TAKEOVER_BOUND, f"the survivor took {took:.1f} s to take over"
        now_held = await epochs(settings)
        assert all(now_held[p] > held[p] for p in mine), (held, now_held)

        after = conventions_on_every_partition(3, per_partition=1)
        later = [e for cid in after for e in rush_for(cid)]
        await send_commands(settings, *later)
        await eventually(
            lambda: all_statuses(settings, after),
            lambda found: found == [EXPECTED] * len(after),
            timeout=30,
            interval=0.2,
            what="the commands sent after the takeover decided",
        )
        assert await decided_commands(settings) == len(envelopes) + len(later)
        assert {e["command_id"] for e in second.events("command_decided")} >= {
            str(e.message_id) for e in later
        }
        assert second.process.returncode is None, second.tail()
        assert await second.terminate() == 0, second.tail()

    for cid in before + after:
        assert await sold(settings, cid) == 3
    events = await read_topic(settings, Topics(settings.topic_prefix).registration_events)
    ids = {json.loads(record.value)["message_id"] for record in events}
    # created, opened and five decisions per convention, each once
    assert len(ids) == 7 * len(before + after)
