"""`butterfly rebuild write`: the decider tables, proved to be a cache of the event topics.

Every decider's state is folded in memory from its event topic, read from the start to its
end, with the decider's own code (`RegistrationBook.apply` and `state_rows` for
registration, `observe` and `evolve` and the row builders `save_state` uses for lodging),
and the rows it gives are compared, key by key and column by column, with the live tables.
Nothing is written.

Left out, because no event carries them: a refund's `issued_at` (the moment its row was
written); the partner's event `sequence` on lodging requests and blocks (partner commands
set it, not events); an account's `password_hash` and every mailed token (`account_tokens`
holds hashes of tokens that only commands carry). Each table's report names what it leaves
out.
"""

from __future__ import annotations

import heapq
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import Table, select

from consumers.accounts import tables as account_tables
from consumers.lodging import tables as lodging_tables
from consumers.lodging.decider import OBSERVED, evolve, observe
from consumers.lodging.handler import block_row, convention_row, entry_row, request_row
from consumers.lodging.state import LodgingState
from consumers.registration import tables as registration_tables
from consumers.registration.book import RegistrationBook, state_rows
from infra.bootstrap import topics_of
from infra.db import make_engine
from infra.pipeline.exactly_once import Record
from infra.settings import Settings
from projections.rebuild import read_to_ends, topic_partitions
from schemas.accounts import (
    AccountCreated,
    EmailVerified,
    PasswordChanged,
    RoleGranted,
    RoleRevoked,
    decode_account_message,
)
from schemas.envelope import HEADER_TYPE, UndecodableMessage, header
from schemas.lodging import LODGING_EVENTS
from schemas.registration import Event
from schemas.registry import decode_message

EXAMPLES = 3
"""Keys (and differing columns) shown per table and kind of difference."""

Row = dict[str, Any]
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Compared:
    """A decider table as compared: its key, and the columns events cannot restore."""

    table: Table
    key: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    json_columns: frozenset[str] = frozenset()
    """Columns holding JSON text, compared as the values they encode."""

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.table.columns if c.name not in self.key + self.ignored)


_r, _l, _a = registration_tables, lodging_tables, account_tables

REGISTRATION_TABLES = (
    Compared(_r.conventions, ("convention_id",), json_columns=frozenset({"catalogue"})),
    Compared(_r.badge_types, ("convention_id", "code")),
    Compared(_r.registrations, ("registration_id",)),
    Compared(_r.orders, ("order_id",), json_columns=frozenset({"terms", "settled_payments"})),
    Compared(_r.waitlist_entries, ("entry_id",)),
    Compared(_r.refunds, ("refund_id",), ignored=("issued_at",)),
)
LODGING_TABLES = (
    Compared(_l.conventions, ("convention_id",)),
    Compared(_l.registrations, ("registration_id",)),
    Compared(
        _l.requests,
        ("request_id",),
        ignored=("sequence",),
        json_columns=frozenset({"hotels", "stay"}),
    ),
    Compared(_l.blocks, ("convention_id", "hotel", "room_type", "night"), ignored=("sequence",)),
    Compared(
        _l.lottery_entries,
        ("convention_id", "registration_id"),
        json_columns=frozenset({"hotels", "stay"}),
    ),
)
ACCOUNT_TABLES = (
    Compared(_a.accounts, ("account_id",), ignored=("password_hash",)),
    Compared(_a.account_roles, ("account_id", "role", "scope")),
)
NOT_FROM_EVENTS = {
    "account_tokens": "hashes of mailed tokens, which only commands carry",
}
"""Decider tables not compared at all, and why."""


@dataclass
class TableReport:
    table: str
    live: int
    folded: int
    ignored: tuple[str, ...]
    missing: list[Key] = field(default_factory=list)
    """Keys folded from the events that the live table lacks."""
    extra: list[Key] = field(default_factory=list)
    """Keys the live table holds that no event accounts for."""
    differing: list[tuple[Key, dict[str, tuple[Any, Any]]]] = field(default_factory=list)
    """Keys in both whose columns differ: column -> (live, folded)."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "live": self.live,
            "folded": self.folded,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "differing": len(self.differing),
            "ignored_columns": list(self.ignored),
            "examples": {
                "missing": [_plain(k) for k in self.missing[:EXAMPLES]],
                "extra": [_plain(k) for k in self.extra[:EXAMPLES]],
                "differing": [
                    {
                        "key": _plain(key),
                        "columns": {c: _plain(list(pair)) for c, pair in columns.items()},
                    }
                    for key, columns in self.differing[:EXAMPLES]
                ],
            },
        }


@dataclass
class WriteReport:
    tables: list[TableReport]
    events: dict[str, int]
    """Records read per event topic."""
    set_aside: int
    """Records that did not decode (the deciders dead-letter those; they change nothing)."""
    repeats: int = 0
    """Records carrying a message already read: the relay publishes at least once, so an
    event can be written twice under one message id; the deciders took it once."""

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "set_aside": self.set_aside,
            "repeats": self.repeats,
            "tables": [t.as_json() for t in self.tables],
            "not_compared": NOT_FROM_EVENTS,
        }

    def lines(self) -> Iterator[str]:
        yield f"{'table':<26}{'live':>8}{'folded':>8}{'missing':>9}{'extra':>7}{'differing':>11}"
        for t in self.tables:
            yield (
                f"{t.table:<26}{t.live:>8}{t.folded:>8}{len(t.missing):>9}{len(t.extra):>7}"
                f"{len(t.differing):>11}"
            )
        for t in self.tables:
            for key in t.missing[:EXAMPLES]:
                yield f"  {t.table}: missing {_shown(key)}"
            for key in t.extra[:EXAMPLES]:
                yield f"  {t.table}: extra {_shown(key)}"
            for key, columns in t.differing[:EXAMPLES]:
                changes = ", ".join(
                    f"{c} live={_plain(live)!r} folded={_plain(folded)!r}"
                    for c, (live, folded) in columns.items()
                )
                yield f"  {t.table}: differing {_shown(key)}: {changes}"
        for t in self.tables:
            if t.ignored:
                yield f"not from events, not compared: {t.table}.{', '.join(t.ignored)}"
        for name, why in NOT_FROM_EVENTS.items():
            yield f"not from events, not compared: {name} ({why})"
        topics = ", ".join(f"{topic} {n}" for topic, n in self.events.items())
        yield (
            f"events read: {topics}; undecodable set aside: {self.set_aside}; "
            f"repeats skipped: {self.repeats}"
        )
        yield "no difference" if self.ok else "DIFFERENCES FOUND"


def compare(spec: Compared, live: Iterable[Row], folded: Iterable[Row]) -> TableReport:
    """Row by row, by key: what the folded state has that the table lacks, what the table
    has that the events do not account for, and the columns that differ."""
    live_rows = {_key(spec, row): row for row in live}
    folded_rows = {_key(spec, row): row for row in folded}
    report = TableReport(spec.name, len(live_rows), len(folded_rows), spec.ignored)
    for key in sorted(folded_rows.keys() - live_rows.keys(), key=repr):
        report.missing.append(key)
    for key in sorted(live_rows.keys() - folded_rows.keys(), key=repr):
        report.extra.append(key)
    for key in sorted(live_rows.keys() & folded_rows.keys(), key=repr):
        columns = {}
        for column in spec.columns:
            was = _value(spec, column, live_rows[key].get(column))
            wants = _value(spec, column, folded_rows[key].get(column))
            if was != wants:
                columns[column] = (was, wants)
        if columns:
            report.differing.append((key, columns))
    return report


def _key(spec: Compared, row: Mapping[str, Any]) -> Key:
    return tuple(_value(spec, column, row[column]) for column in spec.key)


def _value(spec: Compared, column: str, value: Any) -> Any:
    if value is not None and column in spec.json_columns:
        return json.loads(value) if isinstance(value, str | bytes) else value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _shown(key: Key) -> str:
    return "/".join(str(_plain(part)) for part in key)


# --- folding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """One record of an event topic, decoded."""

    topic_rank: int
    partition: int
    at: datetime
    message: Any


def fold_registration(events: Iterable[Event]) -> dict[str, list[Row]]:
    """The registration decider's rows from its events, in the topic's order (a convention's
    events are all on one partition, in order)."""
    book = RegistrationBook()
    for event in events:
        book.apply(event)
    return state_rows(book.conventions.values(), book.registrations.values())


def fold_lodging(reads: Iterable[Read]) -> dict[str, list[Row]]:
    """The lodging decider's rows from the registration events it observes and its own
    events, taken as the decider took them: each partition in order, the two topics
    interleaved by time (a lodging event caused by a registration event carries that
    event's time, and comes after it)."""
    state = LodgingState()
    for read in reads:
        message = read.message
        if read.topic_rank == 0:
            observe(state, message, read.at)
        else:
            evolve(state, message, read.at, read.partition)
        convention = state.conventions.get(message.convention_id)
        if convention is not None:
            convention.partition_no = read.partition
    return {
        _l.conventions.name: [convention_row(c) for c in state.conventions.values()],
        _l.registrations.name: [
            {"registration_id": str(rid), "convention_id": str(cid), "status": status}
            for rid, (cid, status) in state.registrations.items()
        ],
        _l.requests.name: [request_row(r) for r in state.requests.values()],
        _l.blocks.name: [
            block_row(cid, block)
            for cid, blocks in state.blocks.items()
            for block in blocks.values()
        ],
        _l.lottery_entries.name: [
            entry_row(cid, entry)
            for cid, entries in state.entries.items()
            for entry in entries.values()
        ],
    }


def fold_accounts(reads: Iterable[Read]) -> dict[str, list[Row]]:
    """The account rows from the account events alone. The decider's own `apply` takes the
    deciding command too, for what events must not carry (a password hash, a token), which
    is exactly what is left out here."""
    accounts: dict[uuid.UUID, Row] = {}
    roles: dict[tuple[uuid.UUID, str, str], datetime] = {}
    for read in reads:
        event, at = read.message, read.at
        account = accounts.get(event.account_id)
        if isinstance(event, AccountCreated):
            accounts[event.account_id] = {
                "account_id": str(event.account_id),
                "email_key": event.email_key,
                "email": event.email,
                "name": event.name,
                "verified": False,
                "created_at": at,
                "password_changed_at": at,
            }
        elif isinstance(event, EmailVerified) and account is not None:
            account["verified"] = True
        elif isinstance(event, PasswordChanged) and account is not None:
            account["password_changed_at"] = at
        elif isinstance(event, RoleGranted | RoleRevoked):
            scope = "" if event.convention_id is None else str(event.convention_id)
            key = (event.account_id, event.role.value, scope)
            if isinstance(event, RoleGranted):
                roles[key] = at
            else:
                roles.pop(key, None)
    return {
        _a.accounts.name: list(accounts.values()),
        _a.account_roles.name: [
            {"account_id": str(a), "role": role, "scope": scope, "granted_at": at}
            for (a, role, scope), at in roles.items()
        ],
    }


# --- reading --------------------------------------------------------------------------------


async def read_to_end(settings: Settings, topic: str) -> list[Record]:
    """Every record of a topic, from its start to its end, each partition in order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, [topic])
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Record] = []
        async for records in read_to_ends(consumer, partitions, starts, ends):
            found.extend(records)
        return found
    finally:
        await consumer.stop()


def _naive(moment: datetime) -> datetime:
    """The time the deciders record for a message: its envelope's, as they read it."""
    return moment.replace(tzinfo=None)


def _by_partition(reads: Iterable[Read]) -> list[list[Read]]:
    streams: dict[tuple[int, int], list[Read]] = {}
    for read in reads:
        streams.setdefault((read.topic_rank, read.partition), []).append(read)
    return list(streams.values())


def _interleaved(reads: Sequence[Read]) -> Iterator[Read]:
    """Each partition's records in their order, the streams merged by time, registration
    events first at equal times."""
    return heapq.merge(*_by_partition(reads), key=lambda r: (r.at, r.topic_rank))


async def rebuild_write(settings: Settings) -> WriteReport:
    topics = topics_of(settings)
    counts: dict[str, int] = {}
    set_aside = 0
    seen: set[uuid.UUID] = set()
    repeats = 0
    registration_events: list[Event] = []
    lodging_reads: list[Read] = []
    for rank, topic in enumerate((topics.registration_events, topics.lodging_events)):
        records = await read_to_end(settings, topic)
        counts[topic] = len(records)
        for record in records:
            type_name = header(record.headers, HEADER_TYPE)
            try:
                envelope, message = decode_message(record.value, type_name)
            except UndecodableMessage:
                set_aside += 1
                continue
            if not isinstance(message, Event):
                continue
            if envelope.message_id in seen:
                repeats += 1
                continue
            seen.add(envelope.message_id)
            if rank == 0:
                registration_events.append(message)
                if type_name in OBSERVED:
                    lodging_reads.append(
                        Read(0, record.partition, _naive(envelope.occurred_at), message)
                    )
            elif isinstance(message, LODGING_EVENTS):
                lodging_reads.append(
                    Read(1, record.partition, _naive(envelope.occurred_at), message)
                )
    account_reads: list[Read] = []
    records = await read_to_end(settings, topics.account_events)
    counts[topics.account_events] = len(records)
    for record in records:
        try:
            envelope, account_message = decode_account_message(record.value)
        except UndecodableMessage:
            set_aside += 1
            continue
        if envelope.message_id in seen:
            repeats += 1
            continue
        seen.add(envelope.message_id)
        account_reads.append(
            Read(0, record.partition, _naive(envelope.occurred_at), account_message)
        )
    folded = {
        **fold_registration(registration_events),
        **fold_lodging(_interleaved(lodging_reads)),
        **fold_accounts(_interleaved(account_reads)),
    }
    reports: list[TableReport] = []
    engine = make_engine(settings.db.write_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            for spec in (*REGISTRATION_TABLES, *LODGING_TABLES, *ACCOUNT_TABLES):
                columns = [spec.table.c[name] for name in (*spec.key, *spec.columns)]
                live = [dict(row._mapping) for row in await conn.execute(select(*columns))]
                reports.append(compare(spec, live, folded[spec.name]))
    finally:
        await engine.dispose()
    return WriteReport(reports, counts, set_aside, repeats)
