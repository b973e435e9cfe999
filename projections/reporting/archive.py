"""The reporting projector's first duty: archive every event, as published, for analysts and
for refilling a wiped broker in the original order."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aiokafka import TopicPartition
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from projections.reporting import tables as t
from schemas.envelope import UndecodableMessage, decode_envelope


class EventArchiver:
    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        dead_letters: list[DeadLetter] = []
        rows = []
        for record in records:
            try:
                envelope = decode_envelope(record.value)
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            rows.append(
                {
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
                }
            )
        if rows:
            await conn.execute(insert(t.event_archive).prefix_with("IGNORE"), rows)
        return HandledBatch(dead_letters=dead_letters)
