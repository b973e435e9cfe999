"""The website projector: registration events (and submitted registration commands, shown as
pending until decided) into the read models in `butterfly_read`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import TopicPartition
from sqlalchemy import select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from producers.dead_letters import split_dead_letter_headers
from projections.website import tables as t
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_SOURCE_TOPIC,
    Envelope,
    UndecodableMessage,
    correlation_of,
    decode_envelope,
    header,
)
from schemas.registration import (
    SET_ASIDE,
    AttendeeRegistered,
    CancellationRejected,
    ConventionClosed,
    ConventionCommandRejected,
    ConventionCreated,
    ConventionOpened,
    Event,
    Message,
    RegisterAttendee,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationRequestRefused,
)
from schemas.registry import payload_of
from schemas.topics import Topics

log = structlog.get_logger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass
class _Changes:
    """One batch's writes, grouped so each kind is one statement, in an order that keeps
    every row's history right (insert before update, decisions before cancellations)."""

    pending: list[dict[str, Any]] = field(default_factory=list)
    pending_commands: list[str] = field(default_factory=list)
    conventions: list[dict[str, Any]] = field(default_factory=list)
    badge_types: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[tuple[str, str, datetime]] = field(default_factory=list)
    decided: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[tuple[str, datetime]] = field(default_factory=list)
    sold: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)


class WebsiteProjector:
    """Projects the event topic, the command topic (pending registrations) and the commands
    the decider dead-lettered (answered as rejected with reason `invalid`)."""

    def __init__(self, topics: Topics, decider_group: str) -> None:
        self._topics = topics
        self._decider_group = decider_group

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        dead_letters: list[DeadLetter] = []
        decoded: list[tuple[Envelope, Message]] = []
        changes = _Changes()
        for record in records:
            if record.topic == self._topics.dead_letter:
                self._project_dead_letter(changes, record)
                continue
            try:
                envelope = decode_envelope(record.value)
                decoded.append((envelope, payload_of(envelope)))
            except UndecodableMessage as exc:
                if record.topic != self._topics.registration_commands:
                    dead_letters.append(DeadLetter(record, exc))
                continue
            log.info(
                "message_projected",
                correlation_id=correlation_of(record.headers, envelope),
                type=envelope.type,
                message_id=str(envelope.message_id),
            )

        event_ids = {str(env.message_id) for env, msg in decoded if isinstance(msg, Event)}
        seen: set[str] = set()
        if event_ids:
            seen = set(
                (
                    await conn.execute(
                        select(t.applied_events.c.event_id).where(
                            t.applied_events.c.event_id.in_(event_ids)
                        )
                    )
                ).scalars()
            )
        for envelope, message in decoded:
            if isinstance(message, Event):
                event_id = str(envelope.message_id)
                if event_id in seen:
                    continue
                seen.add(event_id)
                changes.applied.append(
                    {"event_id": event_id, "applied_at": envelope.occurred_at.replace(tzinfo=None)}
                )
                _project_event(changes, envelope, message)
            elif isinstance(message, RegisterAttendee):
                changes.pending.append(_registration_row(envelope, message, "pending", None))
                changes.pending_commands.append(str(envelope.message_id))
        await _write(conn, changes)
        return HandledBatch(dead_letters=dead_letters)

    def _project_dead_letter(self, changes: _Changes, record: Record) -> None:
        """A command the decider dead-lettered was not decided: its client is answered
        `invalid` instead of waiting for ever. A later replay that decides it overrides this."""
        _, added = split_dead_letter_headers(record.headers or ())
        if (
            header(added, HEADER_CONSUMER_GROUP) != self._decider_group
            or header(added, HEADER_SOURCE_TOPIC) != self._topics.registration_commands
        ):
            return
        try:
            envelope = decode_envelope(record.value)
        except UndecodableMessage:
            return
        subject = _uuid_or_none(envelope.payload.get("registration_id")) or (
            _uuid_or_none(envelope.payload.get("convention_id")) or str(envelope.message_id)
        )
        dead_lettered_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        changes.invalid.append(
            {
                "command_id": str(envelope.message_id),
                "outcome": REJECTED,
                "reason": SET_ASIDE,
                "subject_id": subject,
                "recorded_at": dead_lettered_at.replace(tzinfo=None),
            }
        )


def _uuid_or_none(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _project_event(changes: _Changes, envelope: Envelope, event: Event) -> None:
    at = envelope.occurred_at.replace(tzinfo=None)
    cid = str(event.convention_id)
    command_id = str(envelope.causation_id or envelope.message_id)

    def outcome(result: str, subject: str, reason: str | None = None) -> None:
        changes.outcomes.append(
            {
                "command_id": command_id,
                "outcome": result,
                "reason": reason,
                "subject_id": subject,
                "recorded_at": at,
            }
        )

    match event:
        case ConventionCreated():
            changes.conventions.append(
                {
                    "convention_id": cid,
                    "name": event.name,
                    "starts_on": event.starts_on,
                    "ends_on": event.ends_on,
                    "status": "draft",
                    "request_hash": event.request_hash,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            changes.badge_types.extend(
                {
                    "convention_id": cid,
                    "code": b.code,
                    "name": b.name,
                    "price_cents": b.price_cents,
                    "quota": b.quota,
                    "sold": 0,
                    "position": i,
                }
                for i, b in enumerate(event.badge_types)
            )
            outcome(ACCEPTED, cid)
        case ConventionOpened():
            changes.statuses.append((cid, "open", at))
            outcome(ACCEPTED, cid)
        case ConventionClosed():
            changes.statuses.append((cid, "closed", at))
            outcome(ACCEPTED, cid)
        case ConventionCommandRejected():
            outcome(REJECTED, cid, event.reason.value)
        case AttendeeRegistered():
            changes.decided.append(_registration_row(envelope, event, "confirmed", None))
            changes.sold[(cid, event.badge_type)] += 1
            outcome(ACCEPTED, str(event.registration_id))
        case RegistrationRejected():
            changes.decided.append(
                _registration_row(envelope, event, "rejected", event.reason.value)
            )
            outcome(REJECTED, str(event.registration_id), event.reason.value)
        case RegistrationCancelled():
            changes.cancelled.append((str(event.registration_id), at))
            changes.sold[(cid, event.badge_type)] -= 1
            outcome(ACCEPTED, str(event.registration_id))
        case CancellationRejected() | RegistrationRequestRefused():
            outcome(REJECTED, str(event.registration_id), event.reason.value)
        case _:
            log.warning("event_not_projected", type=envelope.type)


def _registration_row(
    envelope: Envelope,
    message: RegisterAttendee | AttendeeRegistered | RegistrationRejected,
    status: str,
    reason: str | None,
) -> dict[str, Any]:
    at = envelope.occurred_at.replace(tzinfo=None)
    return {
        "registration_id": str(message.registration_id),
        "convention_id": str(message.convention_id),
        "email": message.email,
        "name": message.name,
        "badge_type": message.badge_type,
        "status": status,
        "reason": reason,
        "request_hash": message.request_hash,
        "created_at": at,
        "updated_at": at,
    }


async def _write(conn: AsyncConnection, c: _Changes) -> None:
    if c.conventions:
        await conn.execute(insert(t.conventions).prefix_with("IGNORE"), c.conventions)
    if c.badge_types:
        await conn.execute(insert(t.badge_types).prefix_with("IGNORE"), c.badge_types)
    for cid, status, at in c.statuses:
        await conn.execute(
            update(t.conventions)
            .where(t.conventions.c.convention_id == cid)
            .values(status=status, updated_at=at)
        )
    invalid = [(row["subject_id"], row["recorded_at"]) for row in c.invalid]
    if c.pending:
        await conn.execute(insert(t.registrations).prefix_with("IGNORE"), c.pending)
        o = t.command_outcomes.c
        invalid.extend(
            (row.subject_id, row.recorded_at)
            for row in await conn.execute(
                select(o.subject_id, o.recorded_at).where(
                    o.command_id.in_(c.pending_commands), o.reason == SET_ASIDE
                )
            )
        )
    if c.decided:
        stmt = insert(t.registrations)
        await conn.execute(
            stmt.on_duplicate_key_update(
                status=stmt.inserted.status,
                reason=stmt.inserted.reason,
                updated_at=stmt.inserted.updated_at,
            ),
            c.decided,
        )
    for registration_id, at in c.cancelled:
        await conn.execute(
            update(t.registrations)
            .where(t.registrations.c.registration_id == registration_id)
            .values(status="cancelled", updated_at=at)
        )
    for (cid, code), delta in sorted(c.sold.items()):
        if delta:
            await conn.execute(
                update(t.badge_types)
                .where(t.badge_types.c.convention_id == cid, t.badge_types.c.code == code)
                .values(sold=t.badge_types.c.sold + delta)
            )
    if c.outcomes:
        decided = insert(t.command_outcomes)
        await conn.execute(
            decided.on_duplicate_key_update(
                outcome=decided.inserted.outcome,
                reason=decided.inserted.reason,
                subject_id=decided.inserted.subject_id,
                recorded_at=decided.inserted.recorded_at,
            ),
            c.outcomes,
        )
    if c.invalid:
        await conn.execute(insert(t.command_outcomes).prefix_with("IGNORE"), c.invalid)
    for registration_id, at in invalid:
        await conn.execute(
            update(t.registrations)
            .where(
                t.registrations.c.registration_id == registration_id,
                t.registrations.c.status == "pending",
            )
            .values(status=REJECTED, reason=SET_ASIDE, updated_at=at)
        )
    if c.applied:
        await conn.execute(insert(t.applied_events), c.applied)
