"""`butterfly trace CORRELATION_ID`: everything one request caused, in causal order, timed.

The pieces live in three places, and each is the authority for its part:
- commands (and dead letters) only on the broker: the command topics and the dead-letter
  topic are read from the beginning and filtered on the `correlation_id` header, without a
  consumer group, so tracing commits nothing and disturbs no consumer;
- events in the reporting database's event archive (the reporting projector writes every
  event there with its correlation and causation ids); the time each was published is read
  back from the broker at the archived topic, partition and offset, since an event's own
  `occurred_at` is the time of the command that caused it;
- log lines in a JSON-lines log file, when one is given.

Items are arranged as a tree by causation id (a command, the events it decided, a command a
process manager sent on an event, ...); a log line hangs under the message it names
(`command_id`, `message_id`, `event_id`), or at the top. Times are offsets from the first
item, so the gaps show where a request spent its time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from infra.db import make_engine
from infra.settings import Settings
from projections.reporting.tables import event_archive
from schemas.envelope import (
    HEADER_CORRELATION_ID,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_TOPIC,
    HEADER_TYPE,
    UndecodableMessage,
    decode_envelope,
    header,
)
from schemas.topics import Topics

Kind = Literal["command", "event", "dead-letter", "log"]
Record: TypeAlias = ConsumerRecord[bytes, bytes]
Place: TypeAlias = tuple[str, int, int]
"""Where a record is: topic, partition, offset."""
LOG_REFERENCE_FIELDS = ("command_id", "message_id", "event_id")
"""Fields of a log line that name the message it is about."""
LOG_OWN_FIELDS = frozenset({"timestamp", "level", "role", "message", "event", "correlation_id"})
"""Fields every log line has; the rest are shown as the line's details."""


@dataclass(frozen=True)
class TraceItem:
    """One command, event, dead letter or log line of a request."""

    at: datetime
    """When it happened (UTC): a record's broker timestamp, a log line's own timestamp."""
    kind: Kind
    type: str
    """The message type, or a log line's message."""
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    message_id: str | None = None
    causation_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    depth: int = 0

    @property
    def place(self) -> Place | None:
        if self.topic is None or self.partition is None or self.offset is None:
            return None
        return (self.topic, self.partition, self.offset)

    @property
    def where(self) -> str:
        if self.topic is None:
            return ""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class Trace:
    correlation_id: str
    items: list[TraceItem]

    @property
    def start(self) -> datetime | None:
        return min((item.at for item in self.items), default=None)

    def count(self, kind: Kind) -> int:
        return sum(1 for item in self.items if item.kind == kind)


async def collect_trace(
    settings: Settings,
    correlation_id: str,
    *,
    log_file: Path | None = None,
    timeout: float = 60.0,
) -> Trace:
    """Everything carrying `correlation_id`, arranged (see the module docstring)."""
    events = await archived_events(settings, correlation_id)
    topics = Topics(settings.topic_prefix)
    scanned = (
        topics.registration_commands,
        topics.lodging_commands,
        topics.account_commands,
        topics.dead_letter,
    )
    async with asyncio.timeout(timeout):
        messages, published = await _read_broker(
            settings.kafka_bootstrap_servers, scanned, topics.dead_letter, correlation_id, events
        )
    events = [
        replace(event, at=published[event.place]) if event.place in published else event
        for event in events
    ]
    lines = log_lines(log_file.read_text(errors="replace"), correlation_id) if log_file else []
    return Trace(correlation_id, arrange([*messages, *events, *lines]))


async def archived_events(settings: Settings, correlation_id: str) -> list[TraceItem]:
    """The archived events of `correlation_id`, timed by their `occurred_at` until the
    broker says when each was published."""
    engine = make_engine(settings.db.reporting_url, pool_size=1)
    t = event_archive.c
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        t.event_id,
                        t.event_type,
                        t.topic,
                        t.partition_no,
                        t.source_offset,
                        t.occurred_at,
                        t.causation_id,
                        t.message_key,
                        t.actor,
                    )
                    .where(t.correlation_id == correlation_id)
                    .order_by(t.occurred_at, t.topic, t.partition_no, t.source_offset)
                )
            ).all()
    finally:
        await engine.dispose()
    return [
        TraceItem(
            at=_utc(row.occurred_at),
            kind="event",
            type=row.event_type,
            topic=row.topic,
            partition=int(row.partition_no),
            offset=int(row.source_offset),
            message_id=row.event_id,
            causation_id=row.causation_id,
            details={"key": row.message_key, "actor": row.actor},
        )
        for row in rows
    ]


async def _read_broker(
    bootstrap_servers: str,
    scanned: Sequence[str],
    dead_letter_topic: str,
    correlation_id: str,
    events: Sequence[TraceItem],
) -> tuple[list[TraceItem], dict[Place, datetime]]:
    """(the commands and dead letters of `correlation_id` in `scanned`, the time each of
    `events` was published), with one consumer that belongs to no group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # Let aiokafka's no-group coordinator task begin: cancelled before its first step,
        # it makes stop() raise CancelledError.
        await asyncio.sleep(0)
        wanted = correlation_id.encode()
        records = await _scan(consumer, scanned, lambda r: _carries(r, correlation_id, wanted))
        published = await _publish_times(consumer, events)
    finally:
        await consumer.stop()
    return [_message_item(record, dead_letter_topic) for record in records], published


def _carries(record: Record, correlation_id: str, wanted: bytes) -> bool:
    for name, value in record.headers or ():
        if name == HEADER_CORRELATION_ID:
            return bool(value == wanted)
    try:
        return str(decode_envelope(record.value).correlation_id) == correlation_id
    except UndecodableMessage:
        return False


async def _scan(
    consumer: AIOKafkaConsumer, topics: Iterable[str], keep: Callable[[Record], bool]
) -> list[Record]:
    """The records of `topics` that `keep` keeps, reading each partition to its end. Reported
    end offsets can lag behind the log (the embedded broker reports the start of its last
    batch), so reading goes on until a fetch comes back empty."""
    partitions = [
        TopicPartition(topic, number)
        for topic in topics
        for number in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return []
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    behind = {tp for tp in partitions if ends[tp] > 0}
    kept: list[Record] = []
    while True:
        batch = await consumer.getmany(timeout_ms=300)
        for tp, records in batch.items():
            kept.extend(record for record in records if keep(record))
            if records and records[-1].offset + 1 >= ends[tp]:
                behind.discard(tp)
        if not batch and not behind:
            return kept


async def _publish_times(
    consumer: AIOKafkaConsumer, events: Sequence[TraceItem]
) -> dict[Place, datetime]:
    """The broker timestamp of each event's record, for those the broker still holds."""
    wanted = {place for place in (event.place for event in events) if place is not None}
    if not wanted:
        return {}
    first: dict[TopicPartition, int] = {}
    for topic, partition, offset in wanted:
        tp = TopicPartition(topic, partition)
        first[tp] = min(offset, first.get(tp, offset))
    consumer.assign(list(first))
    for tp, offset in first.items():
        consumer.seek(tp, offset)
    found: dict[Place, datetime] = {}
    while len(found) < len(wanted):
        batch = await consumer.getmany(timeout_ms=1000)
        if not batch:
            break
        for tp, records in batch.items():
            for record in records:
                place = (tp.topic, tp.partition, record.offset)
                if place in wanted:
                    found[place] = _from_millis(record.timestamp)
    return found


def _message_item(record: Record, dead_letter_topic: str) -> TraceItem:
    dead = record.topic == dead_letter_topic
    details: dict[str, Any] = {}
    if dead:
        details = {
            "source_topic": header(record.headers, HEADER_SOURCE_TOPIC),
            "error": f"{header(record.headers, HEADER_ERROR_CLASS)}: "
            f"{header(record.headers, HEADER_ERROR)}",
        }
    try:
        envelope = decode_envelope(record.value)
    except UndecodableMessage as exc:
        return TraceItem(
            at=_from_millis(record.timestamp),
            kind="dead-letter" if dead else "command",
            type=header(record.headers, HEADER_TYPE) or "(undecodable)",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            details={**details, "undecodable": str(exc)},
        )
    return TraceItem(
        at=_from_millis(record.timestamp),
        kind="dead-letter" if dead else "command",
        type=envelope.type,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        # A dead letter is a copy of a message, not a message of its own: it hangs under it.
        message_id=None if dead else str(envelope.message_id),
        causation_id=str(envelope.message_id) if dead else _str_or_none(envelope.causation_id),
        details={
            **details,
            "key": envelope.key,
            "actor": envelope.actor,
            "occurred_at": envelope.occurred_at.isoformat(),
        },
    )


def log_lines(text: str, correlation_id: str) -> list[TraceItem]:
    """The JSON log lines of `text` that carry `correlation_id`; other lines (another
    request's, console-rendered ones, a process's stray output) are skipped."""
    found = []
    for line in text.splitlines():
        if correlation_id not in line:
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(fields, dict) or str(fields.get("correlation_id")) != correlation_id:
            continue
        at = _parse_time(fields.get("timestamp"))
        if at is None:
            continue
        reference = next(
            (str(fields[name]) for name in LOG_REFERENCE_FIELDS if fields.get(name)), None
        )
        found.append(
            TraceItem(
                at=at,
                kind="log",
                type=str(fields.get("message", fields.get("event", ""))),
                causation_id=reference,
                details=fields,
            )
        )
    return found


def arrange(items: Sequence[TraceItem]) -> list[TraceItem]:
    """Depth-first by causation: each root (a message whose cause is not in the trace, or a
    log line about none of them) in time order, followed by what it caused, in time order."""
    ids = {item.message_id for item in items if item.message_id is not None}
    children: dict[str, list[TraceItem]] = {}
    roots: list[TraceItem] = []
    for item in items:
        if item.causation_id is not None and item.causation_id in ids:
            children.setdefault(item.causation_id, []).append(item)
        else:
            roots.append(item)
    arranged: list[TraceItem] = []
    visited: set[str] = set()

    def visit(item: TraceItem, depth: int) -> None:
        arranged.append(replace(item, depth=depth))
        if item.message_id is None or item.message_id in visited:
            return
        visited.add(item.message_id)
        for child in sorted(children.get(item.message_id, ()), key=_order):
            visit(child, depth + 1)

    for root in sorted(roots, key=_order):
        visit(root, 0)
    return arranged


KIND_ORDER: dict[Kind, int] = {"command": 0, "event": 1, "dead-letter": 2, "log": 3}


def _order(item: TraceItem) -> tuple[datetime, int, str, int, int]:
    return (
        item.at,
        KIND_ORDER[item.kind],
        item.topic or "",
        item.partition if item.partition is not None else -1,
        item.offset if item.offset is not None else -1,
    )


def render_text(trace: Trace) -> str:
    start = trace.start
    assert start is not None
    end = max(item.at for item in trace.items)
    lines = [
        f"correlation {trace.correlation_id}: {trace.count('command')} command(s), "
        f"{trace.count('event')} event(s), {trace.count('dead-letter')} dead letter(s), "
        f"{trace.count('log')} log line(s); from {start.isoformat()} over "
        f"{(end - start).total_seconds():.3f} s"
    ]
    for item in trace.items:
        offset = f"+{(item.at - start).total_seconds():.3f}s"
        indent = "  " * item.depth
        if item.kind == "log":
            details = {k: v for k, v in item.details.items() if k not in LOG_OWN_FIELDS}
            extra = " ".join(f"{k}={_compact(v)}" for k, v in details.items())
            lines.append(
                f"{offset:>10}  {indent}log         {item.details.get('level', '?')} "
                f"{item.details.get('role', '?')}: {item.type}  {extra}".rstrip()
            )
            continue
        ident = f"id {item.message_id}" if item.message_id else ""
        error = f"  {item.details['error']}" if item.kind == "dead-letter" else ""
        head = f"{offset:>10}  {indent}{item.kind:<11} {item.type:<28}"
        lines.append(f"{head} {item.where}  {ident}{error}".rstrip())
    return "\n".join(lines)


def as_json(trace: Trace) -> list[dict[str, Any]]:
    start = trace.start
    return [
        {
            "correlation_id": trace.correlation_id,
            "offset_seconds": round((item.at - start).total_seconds(), 6) if start else 0.0,
            "at": item.at.isoformat(),
            "depth": item.depth,
            "kind": item.kind,
            "type": item.type,
            "topic": item.topic,
            "partition": item.partition,
            "offset": item.offset,
            "message_id": item.message_id,
            "causation_id": item.causation_id,
            "details": item.details,
        }
        for item in trace.items
    ]


def _compact(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


def _from_millis(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp / 1000, UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
