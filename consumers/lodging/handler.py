"""The lodging decider's runtime: one batch of one partition, decided in one transaction.

It reads two topics keyed by convention id, so one partition number holds one convention's
everything: `lodging.commands` (from the gateway, the process manager and the partner
bridge) and `registration.events`, of which it decodes only the conventions created and the
registrations cancelled (a cancelled registration cancels its room); a registration event
without a `type` header, which it cannot tell, is passed over like the others it does not
read. A batch loads only the rows its records
name, decides in order, writes back what changed with its decided command ids, its offsets
and its events in the outbox, and publishes the events once committed.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.lodging import tables as t
from consumers.lodging.decider import OBSERVED, decide, evolve, observe, remember_sequence
from consumers.lodging.state import (
    Block,
    ConventionLodging,
    LodgingState,
    LotteryEntry,
    RoomRequest,
)
from infra.db import decided_among, upsert
from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from producers import outbox
from producers.kafka import OutgoingRecord, publish_all
from schemas.envelope import HEADER_TYPE, Envelope, UndecodableMessage, correlation_of, header
from schemas.lodging import (
    LODGING_COMMANDS,
    ApplyPartnerReservation,
    EnterLottery,
    RecordReconciliation,
    RoomStatus,
    RunLottery,
    Stay,
)
from schemas.registration import Command, Event, Message
from schemas.registry import decode_message, event_id, wrap
from schemas.topics import Topics, lodging_key

log = structlog.get_logger(__name__)

LODGING_COMMAND_TYPES = tuple(LODGING_COMMANDS)


class LodgingDecider:
    def __init__(
        self,
        topics: Topics,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        *,
        decided: Callable[[], None] | None = None,
    ) -> None:
        """`decided` is called after every committed batch (the process manager looks for
        partner calls that became due)."""
        self._topics = topics
        self._engine = engine
        self._producer = producer
        self._decided = decided
        self._unmarked: set[str] = set()

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        marking = tuple(self._unmarked)
        await outbox.mark_published(conn, t.outbox, marking)
        dead_letters: list[DeadLetter] = []
        incoming: list[tuple[Record, Envelope, Message]] = []
        commands = tp.topic == self._topics.lodging_commands
        for record in records:
            type_name = header(record.headers, HEADER_TYPE)
            if not commands and type_name not in OBSERVED:
                continue
            try:
                envelope, message = decode_message(record.value, type_name)
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            if commands and not isinstance(message, LODGING_COMMAND_TYPES):
                dead_letters.append(
                    DeadLetter(
                        record, UndecodableMessage(f"{envelope.type} is not a lodging command")
                    )
                )
                continue
            if not commands and not isinstance(message, Event):
                continue
            incoming.append((record, envelope, message))

        if commands:
            incoming = await self._undecided(conn, incoming)
        state = await load_state(conn, [message for _, _, message in incoming])
        decided: list[Envelope] = []
        for record, envelope, message in incoming:
            at = envelope.occurred_at.replace(tzinfo=None)
            try:
                if isinstance(message, Command):
                    events = decide(state, message, at)
                else:
                    assert isinstance(message, Event)
                    events = observe(state, message, at)
            except (TypeError, ValueError) as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            for event in events:
                evolve(state, event, at, tp.partition)
            if isinstance(message, Command):
                remember_sequence(state, message)
            convention = state.conventions.get(message.convention_id)
            if convention is not None and convention.partition_no != tp.partition:
                convention.partition_no = tp.partition
                state.changed_conventions.add(convention.convention_id)
            decided.extend(
                wrap(
                    event,
                    message_id=event_id(envelope.message_id, index),
                    occurred_at=envelope.occurred_at,
                    correlation_id=envelope.correlation_id,
                    causation_id=envelope.message_id,
                    key=lodging_key(event.convention_id),
                    actor=envelope.actor,
                )
                for index, event in enumerate(events)
            )
            if commands or events:
                log.info(
                    "lodging_decided",
                    correlation_id=correlation_of(record.headers, envelope),
                    message=envelope.type,
                    message_id=str(envelope.message_id),
                    events=[e.message_type for e in events],
                )

        await save_state(conn, state)
        if commands and incoming:
            now = outbox.utcnow()
            await conn.execute(
                insert(t.decided_commands).prefix_with("IGNORE"),
                [
                    {"command_id": str(envelope.message_id), "decided_at": now}
                    for _, envelope, _ in incoming
                ],
            )
        staged = [
            (str(e.message_id), OutgoingRecord.of(self._topics.lodging_events, e)) for e in decided
        ]
        await outbox.stage(conn, t.outbox, staged, partition=tp.partition)

        async def after_commit() -> None:
            self._unmarked.difference_update(marking)
            if staged:
                await publish_all(self._producer, (record for _, record in staged))
                self._unmarked.update(event_id for event_id, _ in staged)
            if self._decided is not None and (staged or state.changed_requests):
                self._decided()

        return HandledBatch(dead_letters=dead_letters, after_commit=after_commit)

    async def _undecided(
        self, conn: AsyncConnection, incoming: list[tuple[Record, Envelope, Message]]
    ) -> list[tuple[Record, Envelope, Message]]:
        """Drop commands decided before (redeliveries, a partner event sent twice, a step
        the process manager recorded twice) and repeats within the batch."""
        ids = {str(envelope.message_id) for _, envelope, _ in incoming}
        seen = await decided_among(conn, t.decided_commands, ids)
        fresh = []
        for item in incoming:
            command_id = str(item[1].message_id)
            if command_id not in seen:
                seen.add(command_id)
                fresh.append(item)
        return fresh

    async def idle(self) -> None:
        """Nothing came in: mark what was published since the last batch."""
        if self._unmarked:
            marking = tuple(self._unmarked)
            async with self._engine.begin() as conn:
                await outbox.mark_published(conn, t.outbox, marking)
            self._unmarked.difference_update(marking)


# --- loading --------------------------------------------------------------------------------


def _ids(messages: Iterable[Message]) -> tuple[set[uuid.UUID], set[uuid.UUID], set[uuid.UUID]]:
    """The conventions, registrations and requests a batch's messages name."""
    conventions: set[uuid.UUID] = set()
    registrations: set[uuid.UUID] = set()
    requests: set[uuid.UUID] = set()
    for message in messages:
        conventions.add(message.convention_id)
        registration_id = getattr(message, "registration_id", None)
        if isinstance(registration_id, uuid.UUID):
            registrations.add(registration_id)
        request_id = getattr(message, "request_id", None)
        if isinstance(request_id, uuid.UUID):
            requests.add(request_id)
        if isinstance(message, ApplyPartnerReservation):
            with contextlib.suppress(ValueError):
                requests.add(uuid.UUID(message.reference))
        if isinstance(message, RecordReconciliation):
            requests.update(c.request_id for c in message.corrections)
    return conventions, registrations, requests


async def load_state(conn: AsyncConnection, messages: Sequence[Message]) -> LodgingState:
    state = LodgingState()
    if not messages:
        return state
    conventions, registrations, requests = _ids(messages)
    lottery = {m.convention_id for m in messages if isinstance(m, (EnterLottery, RunLottery))}
    needs_blocks = {m.convention_id for m in messages if isinstance(m, LODGING_COMMAND_TYPES)}
    drawing = {m.convention_id for m in messages if isinstance(m, RunLottery)}

    c = t.conventions.c
    for row in await conn.execute(
        select(t.conventions).where(c.convention_id.in_([str(i) for i in conventions]))
    ):
        state.conventions[uuid.UUID(row.convention_id)] = ConventionLodging(
            convention_id=uuid.UUID(row.convention_id),
            starts_on=row.starts_on,
            ends_on=row.ends_on,
            partition_no=row.partition_no,
            lottery=row.lottery,
            lottery_seed=row.lottery_seed,
            sync_id=_uuid(row.sync_id),
            synced_at=row.synced_at,
            reconciliation_id=_uuid(row.reconciliation_id),
        )
    for cid in lottery:
        await _load_entries(conn, state, cid)
    for cid in drawing:
        registrations.update(state.entries_of(cid))
    await _load_registrations(conn, state, registrations)
    await _load_requests(conn, state, requests, registrations)
    needs_blocks.update(r.convention_id for r in state.requests.values())
    await _load_blocks(conn, state, needs_blocks)
    return state


async def _load_registrations(
    conn: AsyncConnection, state: LodgingState, ids: set[uuid.UUID]
) -> None:
    if not ids:
        return
    r = t.registrations.c
    for row in await conn.execute(
        select(t.registrations).where(r.registration_id.in_([str(i) for i in ids]))
    ):
        state.registrations[uuid.UUID(row.registration_id)] = (
            uuid.UUID(row.convention_id),
            row.status,
        )


async def _load_requests(
    conn: AsyncConnection,
    state: LodgingState,
    request_ids: set[uuid.UUID],
    registration_ids: set[uuid.UUID],
) -> None:
    r = t.requests.c
    conditions = []
    if request_ids:
        conditions.append(r.request_id.in_([str(i) for i in request_ids]))
    if registration_ids:
        conditions.append(r.registration_id.in_([str(i) for i in registration_ids]))
    for condition in conditions:
        for row in await conn.execute(select(t.requests).where(condition)):
            request_id = uuid.UUID(row.request_id)
            if request_id not in state.requests:
                state.requests[request_id] = _request(row)


def _request(row: Any) -> RoomRequest:
    return RoomRequest(
        request_id=uuid.UUID(row.request_id),
        convention_id=uuid.UUID(row.convention_id),
        registration_id=uuid.UUID(row.registration_id),
        partition_no=row.partition_no,
        status=RoomStatus(row.status),
        hotels=tuple(json.loads(row.hotels)),
        stay=Stay.model_validate_json(row.stay),
        request_hash=row.request_hash,
        created_at=row.created_at,
        updated_at=row.updated_at,
        attempt=row.attempt,
        hotel=row.hotel,
        ack=row.ack,
        total_cents=row.total_cents,
        reason=row.reason,
        detail=row.detail,
        lottery_draw=row.lottery_draw,
        next_step=row.next_step,
        release_pending=bool(row.release_pending),
        parked_step=row.parked_step,
        parked_error=row.parked_error,
        retries=row.retries,
        sequence=row.sequence,
    )


async def _load_blocks(conn: AsyncConnection, state: LodgingState, ids: set[uuid.UUID]) -> None:
    if not ids:
        return
    b = t.blocks.c
    for row in await conn.execute(
        select(t.blocks).where(b.convention_id.in_([str(i) for i in ids]))
    ):
        block = Block(
            hotel=row.hotel,
            room_type=row.room_type,
            night=row.night,
            hotel_name=row.hotel_name,
            description=row.description,
            size=row.size,
            rate_cents=row.rate_cents,
            booked=row.booked,
            sequence=row.sequence,
        )
        state.blocks_of(uuid.UUID(row.convention_id))[block.key] = block


async def _load_entries(conn: AsyncConnection, state: LodgingState, cid: uuid.UUID) -> None:
    e = t.lottery_entries.c
    entries = state.entries_of(cid)
    for row in await conn.execute(select(t.lottery_entries).where(e.convention_id == str(cid))):
        entries[uuid.UUID(row.registration_id)] = LotteryEntry(
            registration_id=uuid.UUID(row.registration_id),
            hotels=tuple(json.loads(row.hotels)),
            stay=Stay.model_validate_json(row.stay),
            entered_at=row.entered_at,
        )


def _uuid(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


# --- saving ---------------------------------------------------------------------------------


async def save_state(conn: AsyncConnection, state: LodgingState) -> None:
    await upsert(
        conn,
        t.conventions,
        [convention_row(state.conventions[cid]) for cid in sorted(state.changed_conventions)],
    )
    await upsert(
        conn,
        t.registrations,
        [
            {
                "registration_id": str(rid),
                "convention_id": str(state.registrations[rid][0]),
                "status": state.registrations[rid][1],
            }
            for rid in sorted(state.changed_registrations)
        ],
    )
    await upsert(
        conn,
        t.requests,
        [request_row(state.requests[rid]) for rid in sorted(state.changed_requests)],
    )
    await upsert(
        conn,
        t.blocks,
        [
            block_row(cid, state.blocks_of(cid)[key])
            for cid, key in sorted(state.changed_blocks, key=lambda k: (str(k[0]), k[1]))
        ],
    )
    await upsert(
        conn,
        t.lottery_entries,
        [
            entry_row(cid, state.entries_of(cid)[rid])
            for cid, rid in sorted(state.changed_entries, key=str)
            if rid in state.entries_of(cid)
        ],
    )
    if state.removed_entries:
        e = t.lottery_entries.c
        await conn.execute(
            delete(t.lottery_entries).where(
                tuple_(e.convention_id, e.registration_id).in_(
                    [(str(cid), str(rid)) for cid, rid in state.removed_entries]
                )
            )
        )


def convention_row(convention: ConventionLodging) -> dict[str, Any]:
    return {
        "convention_id": str(convention.convention_id),
        "starts_on": convention.starts_on,
        "ends_on": convention.ends_on,
        "partition_no": convention.partition_no,
        "lottery": convention.lottery,
        "lottery_seed": convention.lottery_seed,
        "sync_id": _text(convention.sync_id),
        "synced_at": convention.synced_at,
        "reconciliation_id": _text(convention.reconciliation_id),
    }


def request_row(request: RoomRequest) -> dict[str, Any]:
    return {
        "request_id": str(request.request_id),
        "convention_id": str(request.convention_id),
        "registration_id": str(request.registration_id),
        "partition_no": request.partition_no,
        "status": request.status.value,
        "hotels": json.dumps(list(request.hotels)),
        "attempt": request.attempt,
        "hotel": request.hotel,
        "stay": request.stay.model_dump_json(),
        "ack": request.ack,
        "total_cents": request.total_cents,
        "reason": request.reason,
        "detail": request.detail,
        "request_hash": request.request_hash,
        "lottery_draw": request.lottery_draw,
        "next_step": request.next_step,
        "release_pending": request.release_pending,
        "parked_step": request.parked_step,
        "parked_error": request.parked_error,
        "retries": request.retries,
        "sequence": request.sequence,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
    }


def block_row(convention_id: uuid.UUID, block: Block) -> dict[str, Any]:
    return {
        "convention_id": str(convention_id),
        "hotel": block.hotel,
        "room_type": block.room_type,
        "night": block.night,
        "hotel_name": block.hotel_name,
        "description": block.description,
        "size": block.size,
        "rate_cents": block.rate_cents,
        "booked": block.booked,
        "sequence": block.sequence,
    }


def entry_row(convention_id: uuid.UUID, entry: LotteryEntry) -> dict[str, Any]:
    return {
        "convention_id": str(convention_id),
        "registration_id": str(entry.registration_id),
        "hotels": json.dumps(list(entry.hotels)),
        "stay": entry.stay.model_dump_json(),
        "entered_at": entry.entered_at,
    }


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
