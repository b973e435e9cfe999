"""The dead-letter topic as operators see it: list what the consumers set aside, and send
chosen records back to the topic they came from once whatever rejected them is fixed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from producers.kafka import make_producer
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    HEADER_TYPE,
    Headers,
    header,
)

HEADER_REPLAYED_FROM = "replayed_from"

DEAD_LETTER_HEADERS = frozenset(
    {
        HEADER_ERROR,
        HEADER_ERROR_CLASS,
        HEADER_SOURCE_TOPIC,
        HEADER_SOURCE_PARTITION,
        HEADER_SOURCE_OFFSET,
        HEADER_CONSUMER_GROUP,
    }
)


@dataclass(frozen=True)
class DeadLetterEntry:
    """One record of the dead-letter topic, with the consumer's headers parsed out and the
    original record (key, value, headers) kept byte for byte so it can be replayed."""

    dead_letter_topic: str
    partition: int
    offset: int
    timestamp: datetime
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    consumer_group: str | None
    error_class: str | None
    error: str | None
    message_type: str | None
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    """The original record's headers: the dead-letter ones removed."""

    @property
    def id(self) -> str:
        """`PARTITION:OFFSET` of this record in the dead-letter topic."""
        return f"{self.partition}:{self.offset}"

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetterEntry:
        original, added = split_dead_letter_headers(record.headers or ())
        return cls(
            dead_letter_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            source_topic=header(added, HEADER_SOURCE_TOPIC),
            source_partition=_int_or_none(header(added, HEADER_SOURCE_PARTITION)),
            source_offset=_int_or_none(header(added, HEADER_SOURCE_OFFSET)),
            consumer_group=header(added, HEADER_CONSUMER_GROUP),
            error_class=header(added, HEADER_ERROR_CLASS),
            error=header(added, HEADER_ERROR),
            message_type=header(original, HEADER_TYPE),
            key=None if record.key is None else record.key.decode(errors="replace"),
            value=record.value or b"",
            headers=tuple(original),
        )


def split_dead_letter_headers(
    headers: Sequence[tuple[str, bytes]],
) -> tuple[Headers, Headers]:
    """(original headers, dead-letter headers). The consumer appends its headers after the
    record's own, so they are the trailing run of dead-letter names, each at most once: an
    original header that happens to share a name (say `error`) stays with the original."""
    split = len(headers)
    seen: set[str] = set()
    while split > 0:
        name = headers[split - 1][0]
        if name not in DEAD_LETTER_HEADERS or name in seen:
            break
        seen.add(name)
        split -= 1
    return list(headers[:split]), list(headers[split:])


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


async def read_dead_letters(
    bootstrap_servers: str, topic: str, *, timeout: float = 30.0
) -> list[DeadLetterEntry]:
    """Every record now in the dead-letter `topic`, ordered by partition then offset, read
    without a consumer group (nothing is committed). A missing or empty topic gives [].

    Reported end offsets can lag behind the log (the embedded broker reports the start of
    its last batch), so reading goes on past them until a fetch comes back empty. Raises
    TimeoutError if the whole topic cannot be read within `timeout` seconds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            # Let aiokafka's no-group coordinator task begin: cancelled before its first
            # step, it makes stop() raise CancelledError.
            await asyncio.sleep(0)
            records = await _read_whole_topic(consumer, topic)
    except TimeoutError as exc:
        raise TimeoutError(f"could not read all of {topic} within {timeout:g}s") from exc
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return [DeadLetterEntry.of(record) for record in records]


async def _read_whole_topic(
    consumer: AIOKafkaConsumer, topic: str
) -> list[ConsumerRecord[bytes, bytes]]:
    # A freshly started consumer holds the metadata of every topic: unknown means missing.
    numbers = consumer.partitions_for_topic(topic) or ()
    partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
    if not partitions:
        return []
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    behind = {tp for tp in partitions if ends[tp] > 0}
    records: list[ConsumerRecord[bytes, bytes]] = []
    while True:
        batch = await consumer.getmany(timeout_ms=300)
        for tp, items in batch.items():
            records.extend(items)
            if items and items[-1].offset + 1 >= ends[tp]:
                behind.discard(tp)
        if not batch and not behind:
            return records


async def replay(
    bootstrap_servers: str, entries: Sequence[DeadLetterEntry], *, idempotence: bool = False
) -> int:
    """Republish each entry's original record (key, value, headers) to its source topic and
    wait for every acknowledgement; returns how many were sent.

    Entries go out in dead-letter order (partition, then offset), so records of one key keep
    their order. Each carries a `replayed_from` header, `<dead-letter topic>:<id>`, replacing
    any from an earlier replay. Raises ValueError, before sending anything, if an entry has
    no source topic: it was not written by a Butterfly consumer and has nowhere to go back to.
    A record that had no key went to the dead-letter topic keyed `<topic>-<partition>`, and
    is replayed with that key."""
    targets: list[tuple[str, DeadLetterEntry]] = []
    orphans: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.dead_letter_topic, e.partition, e.offset)):
        if entry.source_topic:
            targets.append((entry.source_topic, entry))
        else:
            orphans.append(entry.id)
    if orphans:
        raise ValueError(f"dead letters without a source topic cannot be replayed: {orphans}")
    if not targets:
        return 0
    producer = make_producer(bootstrap_servers, idempotence=idempotence)
    await producer.start()
    try:
        pending = [
            await producer.send(
                topic,
                value=entry.value,
                key=None if entry.key is None else entry.key.encode(),
                headers=_replay_headers(entry),
            )
            for topic, entry in targets
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(targets)


def _replay_headers(entry: DeadLetterEntry) -> Headers:
    headers = [(name, value) for name, value in entry.headers if name != HEADER_REPLAYED_FROM]
    headers.append((HEADER_REPLAYED_FROM, f"{entry.dead_letter_topic}:{entry.id}".encode()))
    return headers
