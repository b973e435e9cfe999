"""Operations over HTTP, for the administration app: the dead letters (what `butterfly dlq
list|replay` does on the command line) and a registration's full history, read from the
reporting database's event archive.

The dead-letter topic is read whole on each call, without a consumer group, and within
`BROKER_SECONDS`: a broker that does not answer in time is a 503. A registration's history
trails the events by the reporting projector's lag (seconds).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from litestar import Controller, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Parameter, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED
from pydantic import BaseModel, Field
from sqlalchemy import select

from gateway.accounts import admin_guard, principal, refuse
from gateway.deps import Gateway
from gateway.problems import Problem
from producers.dead_letters import DeadLetterEntry, read_dead_letters, replay
from projections.reporting import tables as reporting

BROKER_SECONDS = 10.0
"""How long reading the dead-letter topic, or sending one record back, may take."""
STOP_SECONDS = 5.0
"""Beyond `BROKER_SECONDS`, for the Kafka client to close."""
VALUE_BYTES = 4096
"""How much of a dead letter's value a listing shows."""

Limit = Annotated[
    int, QueryParameter(ge=1, le=500, description="How many dead letters, newest first.")
]
DeadLetterId = Annotated[
    str,
    Parameter(
        pattern=r"^[0-9]{1,9}:[0-9]{1,19}$",
        description="`PARTITION:OFFSET` of the record in the dead-letter topic.",
    ),
]


class DeadLetterView(BaseModel):
    id: str = Field(description="`PARTITION:OFFSET` in the dead-letter topic.")
    timestamp: datetime
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    consumer_group: str | None
    type: str | None = Field(description="The original record's `type` header.")
    error_class: str | None
    error: str | None
    key: str | None
    value: str = Field(description="The original value as text, cut at 4 KB.")
    value_truncated: bool
    headers: dict[str, str] = Field(description="The original record's headers.")


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView]
    topic: str
    total: int = Field(description="How many dead letters the topic holds.")


class RetryAnswer(BaseModel):
    id: str
    replayed_to: str = Field(description="The topic the record was sent back to.")


class HistoryEvent(BaseModel):
    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    actor: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    topic: str
    partition: int
    offset: int
    payload: dict[str, Any]


class RegistrationHistory(BaseModel):
    registration_id: uuid.UUID
    events: list[HistoryEvent]


async def registration_staff_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Admins, and staff of the convention of the registration the path names: anyone else,
    whether or not the registration exists, is refused (401 when not logged in, else 403)."""
    who = await principal(connection)
    if who.is_admin:
        return
    registration_id = connection.path_params.get("registration_id")
    if who.signed_in and isinstance(registration_id, uuid.UUID):
        gateway: Gateway = connection.app.state.gateway
        found = await gateway.reads.registration(registration_id)
        if found is not None and who.staff_of(found[0].convention_id):
            return
    raise refuse(who, "This needs the admin role, or staff of the registration's convention.")


class OperationsController(Controller):
    path = "/api/v1/admin"
    tags = ["admin", "operations"]

    @get(
        "/dead-letters",
        operation_id="adminListDeadLetters",
        guards=[admin_guard],
        summary="What the consumers set aside, newest first",
        description="Each record of the dead-letter topic with the error that set it aside "
        "and where it came from; `POST /api/v1/admin/dead-letters/{id}/retry` sends one back.",
    )
    async def dead_letters(self, gateway: Gateway, limit: Limit = 100) -> DeadLetterPage:
        entries = await read_dead_letter_topic(gateway)
        newest = sorted(entries, key=lambda e: (e.timestamp, e.partition, e.offset), reverse=True)
        return DeadLetterPage(
            items=[_view(entry) for entry in newest[:limit]],
            topic=gateway.topics.dead_letter,
            total=len(entries),
        )

    @post(
        "/dead-letters/{dead_letter_id:str}/retry",
        operation_id="adminRetryDeadLetter",
        guards=[admin_guard],
        status_code=HTTP_202_ACCEPTED,
        summary="Send a dead letter back to the topic it came from",
        description="The original record (key, value, headers) goes back to its source topic "
        "with a `replayed_from` header; the dead letter stays where it is. 404 for an id the "
        "topic does not hold, 409 for a dead letter that names no source topic.",
    )
    async def retry(self, gateway: Gateway, dead_letter_id: DeadLetterId) -> RetryAnswer:
        partition, offset = (int(part) for part in dead_letter_id.split(":"))
        entry = next(
            (
                e
                for e in await read_dead_letter_topic(gateway)
                if (e.partition, e.offset) == (partition, offset)
            ),
            None,
        )
        if entry is None:
            raise Problem(
                404,
                "dead-letter-not-found",
                "Dead letter not found",
                f"There is no dead letter {partition}:{offset} in {gateway.topics.dead_letter}.",
            )
        if not entry.source_topic:
            raise Problem(
                409,
                "dead-letter-without-source",
                "Nowhere to send it back",
                f"Dead letter {entry.id} names no source topic: no Butterfly consumer wrote it.",
            )
        try:
            async with asyncio.timeout(BROKER_SECONDS):
                await replay(gateway.kafka_bootstrap_servers, [entry])
        except (TimeoutError, KafkaError) as exc:
            raise _broker_unavailable(
                "The broker did not acknowledge in time: the record may or may not have been "
                "sent back; the dead-letter list does not say which."
            ) from exc
        return RetryAnswer(id=entry.id, replayed_to=entry.source_topic)

    @get(
        "/registrations/{registration_id:uuid}/history",
        operation_id="adminRegistrationHistory",
        guards=[registration_staff_guard],
        summary="Every event about a registration, in the order they happened",
        description="From the event archive: trails the events by the reporting projector's "
        "lag. For admins and staff of the registration's convention.",
    )
    async def history(self, gateway: Gateway, registration_id: uuid.UUID) -> RegistrationHistory:
        if await gateway.reads.registration(registration_id) is None:
            raise Problem(
                404,
                "registration-not-found",
                "Registration not found",
                f"There is no registration {registration_id}.",
            )
        if gateway.reporting_engine is None:
            raise Problem(
                503,
                "history-unavailable",
                "History unavailable",
                "No reporting database is set up.",
            )
        a = reporting.event_archive.c
        query = (
            select(
                a.event_id,
                a.event_type,
                a.schema_version,
                a.occurred_at,
                a.actor,
                a.correlation_id,
                a.causation_id,
                a.topic,
                a.partition_no,
                a.source_offset,
                a.payload,
            )
            .where(a.registration_id == str(registration_id))
            .order_by(a.occurred_at, a.topic, a.partition_no, a.source_offset)
        )
        async with gateway.reporting_engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return RegistrationHistory(
            registration_id=registration_id,
            events=[
                HistoryEvent(
                    event_id=uuid.UUID(row.event_id),
                    type=row.event_type,
                    version=row.schema_version,
                    occurred_at=row.occurred_at.replace(tzinfo=UTC),
                    actor=row.actor,
                    correlation_id=uuid.UUID(row.correlation_id),
                    causation_id=None if row.causation_id is None else uuid.UUID(row.causation_id),
                    topic=row.topic,
                    partition=row.partition_no,
                    offset=row.source_offset,
                    payload=json.loads(row.payload),
                )
                for row in rows
            ],
        )


async def read_dead_letter_topic(gateway: Gateway) -> list[DeadLetterEntry]:
    """Every dead letter, or a 503 problem when the broker does not give them in time."""
    if not gateway.kafka_bootstrap_servers:
        raise Problem(
            503, "dead-letters-unavailable", "Dead letters unavailable", "No broker is set up."
        )
    try:
        async with asyncio.timeout(BROKER_SECONDS + STOP_SECONDS):
            return await read_dead_letters(
                gateway.kafka_bootstrap_servers, gateway.topics.dead_letter, timeout=BROKER_SECONDS
            )
    except (TimeoutError, KafkaError) as exc:
        raise _broker_unavailable(
            f"The dead-letter topic could not be read within {BROKER_SECONDS:g}s."
        ) from exc


def _broker_unavailable(detail: str) -> Problem:
    return Problem(503, "unavailable", "Broker unavailable", detail, headers={"Retry-After": "2"})


def _view(entry: DeadLetterEntry) -> DeadLetterView:
    return DeadLetterView(
        id=entry.id,
        timestamp=entry.timestamp,
        source_topic=entry.source_topic,
        source_partition=entry.source_partition,
        source_offset=entry.source_offset,
        consumer_group=entry.consumer_group,
        type=entry.message_type,
        error_class=entry.error_class,
        error=entry.error,
        key=entry.key,
        value=entry.value[:VALUE_BYTES].decode(errors="replace"),
        value_truncated=len(entry.value) > VALUE_BYTES,
        headers={name: value.decode(errors="replace") for name, value in entry.headers},
    )
