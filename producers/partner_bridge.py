"""The bridge from the lodging partner's event feed to Butterfly's lodging commands.

The partner publishes its own format, not ours, to `partner.lodging.events`, keyed by its
convention id (our convention id as text):

    {"event_id", "type", "convention_id", "sequence", "occurred_at", "ack", "data"}

The bridge reads that feed, checks each record against a model of the partner's format, and
publishes the matching lodging command (`ApplyPartnerReservation`, `ApplyPartnerBlock`) in
our envelope to `lodging.commands`, keyed by the convention like every lodging command, so
the lodging decider applies partner changes exactly like any other command.

- The partner may publish an event twice. The command's id, correlation id and time all
  derive from the partner's event, so a repeat is the same message byte for byte and the
  lodging decider, which remembers the command ids it decided, decides it once.
- The partner may publish events out of order. The bridge does not reorder: it passes the
  partner's per-convention `sequence` on, and the decider ignores an event older than the
  last one it applied to the same reservation or block night.
- A record that is not the partner's format (not JSON, missing or invalid fields, an unknown
  type, a convention id that is not a UUID) or whose content our commands refuse (a guest
  name with control characters, a reference too long) goes to the dead-letter topic; the
  rest of the batch goes on.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from producers.kafka import OutgoingRecord, publish_all
from schemas.envelope import (
    HEADER_TYPE,
    Envelope,
    UndecodableMessage,
    describe_validation_error,
    header,
)
from schemas.lodging import (
    LODGING_NAMESPACE,
    ApplyPartnerBlock,
    ApplyPartnerReservation,
    Stay,
    partner_command_id,
)
from schemas.partner import (
    RESERVATION_CHANGES,
    RESERVATION_PREFIX,
    BlockData,
    Kind,
    PartnerEvent,
    RateData,
    ReservationData,
)
from schemas.registration import Command
from schemas.registry import wrap
from schemas.topics import Topics, lodging_key

log = structlog.get_logger(__name__)

ACTOR = "partner"
MAX_EVENT_BYTES = 64 * 1024
"""A partner event is a few hundred bytes; anything this large is refused unread."""


class UnreadablePartnerEvent(UndecodableMessage):
    """A partner record the bridge cannot translate: it belongs in the dead-letter topic."""


def translate(value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> Envelope:
    """The lodging command, in our envelope, that one record of the partner's feed becomes;
    raises `UnreadablePartnerEvent` for a record that is not a valid partner event or that
    our command schema refuses. Pure: the same record always gives the same envelope."""
    if value is None:
        raise UnreadablePartnerEvent("record has no value")
    if len(value) > MAX_EVENT_BYTES:
        raise UnreadablePartnerEvent(
            f"record of {len(value)} bytes is larger than a partner event can be "
            f"({MAX_EVENT_BYTES})"
        )
    kind = _parse(Kind, value).type
    sent_as = header(headers, HEADER_TYPE)
    if sent_as is not None and sent_as != kind:
        raise UnreadablePartnerEvent(
            f"the type header {sent_as[:100]!r} differs from the event's type {kind!r}"
        )
    translator = TRANSLATORS.get(kind)
    if translator is None:
        raise UnreadablePartnerEvent(
            f"unknown partner event type {kind!r}; this bridge knows {', '.join(TRANSLATORS)}"
        )
    return translator(value)


def _reservation(value: bytes) -> Envelope:
    event = _parse(PartnerEvent[ReservationData], value)
    data = event.data
    if event.ack != data.ack:
        raise UnreadablePartnerEvent(
            f"the event's ack {event.ack!r} differs from its reservation's {data.ack[:64]!r}"
        )
    change = event.type.removeprefix(RESERVATION_PREFIX)
    command = _command(
        ApplyPartnerReservation,
        convention_id=event.convention_id,
        partner_event_id=event.event_id,
        sequence=event.sequence,
        change=change,
        by=data.by,
        ack=data.ack,
        reference=data.reference,
        hotel=data.hotel,
        stay=_command(
            Stay,
            room_type=data.room_type,
            check_in=data.check_in,
            check_out=data.check_out,
            guests=tuple(data.guests),
        ),
        total_cents=data.total_cents,
    )
    return _envelope(event, command)


def _block(value: bytes) -> Envelope:
    event = _parse(PartnerEvent[BlockData], value)
    data = event.data
    command = _command(
        ApplyPartnerBlock,
        convention_id=event.convention_id,
        partner_event_id=event.event_id,
        sequence=event.sequence,
        hotel=data.hotel,
        room_type=data.room_type,
        night=data.night,
        size=data.size,
    )
    return _envelope(event, command)


def _rate(value: bytes) -> Envelope:
    event = _parse(PartnerEvent[RateData], value)
    data = event.data
    command = _command(
        ApplyPartnerBlock,
        convention_id=event.convention_id,
        partner_event_id=event.event_id,
        sequence=event.sequence,
        hotel=data.hotel,
        room_type=data.room_type,
        night=data.night,
        rate_cents=data.rate_cents,
    )
    return _envelope(event, command)


TRANSLATORS: dict[str, Callable[[bytes], Envelope]] = {
    **{f"{RESERVATION_PREFIX}{change}": _reservation for change in RESERVATION_CHANGES},
    "block.changed": _block,
    "rate.changed": _rate,
}


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], value: bytes) -> M:
    """`model` read from the record's JSON, or the reason it is not the partner's format."""
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise UnreadablePartnerEvent(f"not JSON: {first['msg']}") from exc
        raise UnreadablePartnerEvent(
            f"not a partner event: {describe_validation_error(exc)}"
        ) from exc


def _command(model: type[M], **fields: Any) -> M:
    """Our command (or part of one) from the partner's values, or why our schema refuses
    them: the partner's format allows what our domain may not (say, a control character in
    a guest name)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise UnreadablePartnerEvent(
            f"{model.__name__} refuses the partner's values: {describe_validation_error(exc)}"
        ) from exc


def _envelope(event: PartnerEvent[Any], command: Command) -> Envelope:
    """Everything but the payload derives from the partner's event, so a repeat of the event
    is the same message with the same id."""
    return wrap(
        command,
        message_id=partner_command_id(event.event_id),
        occurred_at=event.occurred_at,
        correlation_id=partner_correlation_id(event.event_id),
        causation_id=None,
        key=lodging_key(event.convention_id),
        actor=ACTOR,
    )


def partner_correlation_id(partner_event_id: str) -> uuid.UUID:
    """A partner event starts its own chain of messages; its correlation id is derived, not
    drawn, so a repeat of the event is correlated the same way."""
    return uuid.uuid5(LODGING_NAMESPACE, f"partner-correlation:{partner_event_id}")


class PartnerBridge:
    """The handler of the partner's feed in an `ExactlyOnceConsumer`.

    It has no state in the database: its only effect is publishing, which happens inside
    `handle` and is awaited there, so the offset the consumer stores after `handle` only
    moves past records whose commands the broker holds. The consumer loop stores that offset
    through `conn`; the bridge itself never uses the connection. A crash between publishing
    and storing the offset republishes the same messages (same ids), which the lodging
    decider decides once."""

    def __init__(self, topics: Topics, producer: AIOKafkaProducer) -> None:
        self._topics = topics
        self._producer = producer

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        dead_letters: list[DeadLetter] = []
        outgoing: list[OutgoingRecord] = []
        types: Counter[str] = Counter()
        for record in records:
            try:
                envelope = translate(record.value, record.headers)
            except UnreadablePartnerEvent as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            outgoing.append(OutgoingRecord.of(self._topics.lodging_commands, envelope))
            types[envelope.type] += 1
        await publish_all(self._producer, outgoing)
        log.info(
            "partner_events_bridged",
            partition=f"{tp.topic}[{tp.partition}]",
            first_offset=records[0].offset if records else None,
            records=len(records),
            bridged=len(outgoing),
            dead_lettered=len(dead_letters),
            commands=dict(types),
        )
        return HandledBatch(dead_letters=dead_letters)
