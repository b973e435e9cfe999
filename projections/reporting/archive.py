"""The reporting projector: archive every event, as published (for analysts and for refilling
a wiped broker in the original order), and keep the star schema current from the same events
in the same transaction.

The archive is also what makes the star schema exact: an event whose id is already archived
(a relay's republication, a redelivery) changes nothing in the star schema, so its counters
can be maintained incrementally.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from sqlalchemy import select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from infra.pipeline.faults import is_transient
from projections.reporting import tables as t
from projections.reporting.star import StarImage, apply_writes, load_known
from schemas.envelope import Envelope, UndecodableMessage, decode_envelope
from schemas.registration import Message
from schemas.registry import MESSAGE_TYPES, payload_of

ID_LENGTH = 36
"""The width of the archive's `registration_id` column: a uuid's text."""


class EventArchiver:
    """`pseudonym_key` keys the account pseudonyms of the star schema; None archives only."""

    def __init__(self, pseudonym_key: str | None = None) -> None:
        self.pseudonym_key = pseudonym_key

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        dead_letters: list[DeadLetter] = []
        decoded: list[tuple[Record, Envelope]] = []
        for record in records:
            try:
                decoded.append((record, decode_envelope(record.value)))
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))
        if not decoded:
            return HandledBatch(dead_letters=dead_letters)
        fresh = await _not_archived(conn, decoded)
        await conn.execute(
            insert(t.event_archive).prefix_with("IGNORE"),
            [_archive_row(record, envelope) for record, envelope in decoded],
        )
        if self.pseudonym_key is not None and fresh:
            dead_letters += await self._project_apart(conn, fresh)
        return HandledBatch(dead_letters=dead_letters)

    async def _project_apart(
        self, conn: AsyncConnection, fresh: list[tuple[Record, Envelope]]
    ) -> list[DeadLetter]:
        """The star schema is written under a savepoint of the archive's transaction: a
        batch it cannot take is tried again event by event, and an event it cannot take at
        all is dead-lettered while the archive keeps it (the archive is what a wiped broker
        is restored from; the star schema is rebuilt from it). A transient fault (a lost
        connection, a deadlock) still fails the whole transaction, to be retried."""
        try:
            async with conn.begin_nested():
                return await self._project(conn, fresh)
        except Exception as exc:
            if is_transient(exc):
                raise
        dead_letters: list[DeadLetter] = []
        for one in fresh:
            try:
                async with conn.begin_nested():
                    dead_letters += await self._project(conn, [one])
            except Exception as exc:
                if is_transient(exc):
                    raise
                dead_letters.append(DeadLetter(one[0], exc))
        return dead_letters

    async def _project(
        self, conn: AsyncConnection, decoded: list[tuple[Record, Envelope]]
    ) -> list[DeadLetter]:
        """Fold the batch's new events into the star schema. An event archived but not
        understood (its payload fails validation) is dead-lettered too, so an operator sees
        it: the archive keeps it either way."""
        assert self.pseudonym_key is not None
        dead_letters: list[DeadLetter] = []
        typed: list[tuple[Envelope, Message]] = []
        for record, envelope in decoded:
            if envelope.type not in MESSAGE_TYPES:
                continue
            try:
                typed.append((envelope, payload_of(envelope)))
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))
        if typed:
            image = StarImage(
                self.pseudonym_key, await load_known(conn, [message for _, message in typed])
            )
            for envelope, message in typed:
                image.apply(envelope, message)
            await apply_writes(conn, image.result())
        return dead_letters


async def _not_archived(
    conn: AsyncConnection, decoded: list[tuple[Record, Envelope]]
) -> list[tuple[Record, Envelope]]:
    """The records whose event is not archived yet, the first of each id in the batch."""
    ids = sorted({str(envelope.message_id) for _, envelope in decoded})
    archived = set(
        (
            await conn.execute(
                select(t.event_archive.c.event_id).where(t.event_archive.c.event_id.in_(ids))
            )
        ).scalars()
    )
    fresh: list[tuple[Record, Envelope]] = []
    for record, envelope in decoded:
        event_id = str(envelope.message_id)
        if event_id not in archived:
            archived.add(event_id)
            fresh.append((record, envelope))
    return fresh


def _archive_row(record: Record, envelope: Envelope) -> dict[str, Any]:
    return {
        "event_id": str(envelope.message_id),
        "topic": record.topic,
        "partition_no": record.partition,
        "source_offset": record.offset,
        "event_type": envelope.type,
        "schema_version": envelope.schema_version,
        "message_key": envelope.key,
        "occurred_at": envelope.occurred_at.replace(tzinfo=None),
        "correlation_id": str(envelope.correlation_id),
        "causation_id": str(envelope.causation_id) if envelope.causation_id else None,
        "actor": envelope.actor,
        "payload": json.dumps(envelope.payload, sort_keys=True),
        "envelope": envelope.model_dump_json(),
        "registration_id": _registration_of(envelope.payload),
    }


def _registration_of(payload: dict[str, Any]) -> str | None:
    """The registration an event is about, when its payload names one: what the archive is
    looked up by for a registration's history."""
    value = payload.get("registration_id")
    if isinstance(value, str) and 0 < len(value) <= ID_LENGTH:
        return value
    return None
