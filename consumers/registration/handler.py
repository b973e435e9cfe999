"""The registration decider's runtime: decode a batch of commands, decide, and commit state,
outbox and offsets together; publish the decided events once the transaction has committed.

Each owned partition's state stays in memory between batches (`PartitionMemory`): a batch
reads the database only for conventions it meets for the first time since the partition was
claimed, and for commands that may have been decided before."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.accounts.tables import mail_outbox
from consumers.registration import tables as t
from consumers.registration.book import PartitionMemory, RegistrationBook
from consumers.registration.decider import decide
from consumers.registration.mails import Mail, mail_for, offer_mail
from infra.db import decided_among
from infra.metrics import REGISTRATION_DECISIONS
from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from producers import outbox
from producers.kafka import OutgoingRecord, publish_all
from schemas.checkin import CheckInRefused
from schemas.envelope import (
    HEADER_TYPE,
    Envelope,
    UndecodableMessage,
    correlation_of,
    header,
)
from schemas.orders import (
    CatalogueChangeRejected,
    OrderRejected,
    WaitlistOfferMade,
    WaitlistRejected,
)
from schemas.registration import (
    CancellationRejected,
    Command,
    ConventionCommandRejected,
    Event,
    RegisterAttendee,
    RegistrationRejected,
    RegistrationRequestRefused,
    TransferRejected,
)
from schemas.registry import decode_message, event_id, wrap
from schemas.topics import Topics, registration_key

log = structlog.get_logger(__name__)

REFUSALS = (
    RegistrationRejected,
    RegistrationRequestRefused,
    TransferRejected,
    CancellationRejected,
    ConventionCommandRejected,
    CatalogueChangeRejected,
    OrderRejected,
    WaitlistRejected,
    CheckInRefused,
)
"""The events by which the decider says no to a command; each carries its reason."""


class RegistrationDecider:
    def __init__(self, topics: Topics, engine: AsyncEngine, producer: AIOKafkaProducer) -> None:
        self._topics = topics
        self._engine = engine
        self._producer = producer
        self._memories: dict[int, PartitionMemory] = {}
        self._unmarked: set[str] = set()
        """Published event ids not yet marked so in the outbox: marked by the next batch's
        transaction, or by `idle()`, rather than by a transaction of their own; forgotten
        only once that transaction has committed."""

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        marking = tuple(self._unmarked)
        await outbox.mark_published(conn, t.outbox, marking)
        dead_letters: list[DeadLetter] = []
        commands: list[Incoming] = []
        for record in records:
            try:
                envelope, message = decode_message(
                    record.value, header(record.headers, HEADER_TYPE)
                )
                if not isinstance(message, Command):
                    raise UndecodableMessage(f"{envelope.type} is not a command")
                commands.append(Incoming(record, envelope, message))
            except UndecodableMessage as exc:
                dead_letters.append(DeadLetter(record, exc))

        memory = self._memory(tp)
        await memory.load(conn, {incoming.command.convention_id for incoming in commands})
        fresh = await self._undecided(conn, commands, memory)
        book = RegistrationBook.recall(memory, (incoming.command for incoming in fresh))
        decided: list[Envelope] = []
        decisions: list[tuple[str, str, str]] = []
        mails: list[dict[str, Any]] = []
        now = outbox.utcnow()
        for record, envelope, command in fresh:
            try:
                events = decide(book.situation(command, envelope.occurred_at), command)
            except (TypeError, ValueError) as exc:
                dead_letters.append(DeadLetter(record, exc))
                continue
            for index, event in enumerate(events):
                book.apply(event)
                mail_id = event_id(envelope.message_id, index)
                mail = _mail(book, event)
                if mail is not None:
                    mails.append(
                        {
                            "mail_id": str(mail_id),
                            "to_address": mail.to_address,
                            "subject": mail.subject[:200],
                            "body": mail.body,
                            "created_at": now,
                        }
                    )
                decided.append(
                    wrap(
                        event,
                        message_id=mail_id,
                        occurred_at=envelope.occurred_at,
                        correlation_id=envelope.correlation_id,
                        causation_id=envelope.message_id,
                        key=registration_key(event.convention_id),
                        actor=envelope.actor,
                    )
                )
            decisions.append((command.message_type, *decision_outcome(events)))
            log.info(
                "command_decided",
                correlation_id=correlation_of(record.headers, envelope),
                command=envelope.type,
                command_id=str(envelope.message_id),
                events=[e.message_type for e in events],
            )

        await book.save(conn)
        if mails:
            await conn.execute(insert(mail_outbox).prefix_with("IGNORE"), mails)
        if fresh:
            await conn.execute(
                insert(t.decided_commands),
                [
                    {"command_id": str(incoming.envelope.message_id), "decided_at": now}
                    for incoming in fresh
                ],
            )
        staged = [
            (str(e.message_id), OutgoingRecord.of(self._topics.registration_events, e))
            for e in decided
        ]
        await outbox.stage(conn, t.outbox, staged, partition=tp.partition)

        memory.staged = book

        def committed() -> None:
            memory.absorb(book)
            for labels, count in collections.Counter(decisions).items():
                REGISTRATION_DECISIONS.labels(*labels).inc(count)

        async def after_commit() -> None:
            self._unmarked.difference_update(marking)
            if staged:
                await publish_all(self._producer, (record for _, record in staged))
                self._unmarked.update(event_id for event_id, _ in staged)

        return HandledBatch(
            dead_letters=dead_letters, after_commit=after_commit, committed=committed
        )

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions (re)claimed: whatever memory held of them may be out of date."""
        for tp in partitions:
            self._memories.pop(tp.partition, None)

    def _memory(self, tp: TopicPartition) -> PartitionMemory:
        memory = self._memories.get(tp.partition)
        if memory is None or memory.staged is not None:
            memory = self._memories[tp.partition] = PartitionMemory()
        return memory

    async def _undecided(
        self, conn: AsyncConnection, commands: list[Incoming], memory: PartitionMemory
    ) -> list[Incoming]:
        """Drop commands decided before (redeliveries, retried requests) and repeats within
        the batch. A registration request naming a registration that memory, holding its
        whole convention, has never seen cannot have been decided: only the others are looked
        up among the decided commands."""
        if not commands:
            return []
        ids = {
            str(incoming.envelope.message_id)
            for incoming in commands
            if not _unseen_registration(incoming.command, memory)
        }
        seen = await decided_among(conn, t.decided_commands, ids)
        fresh = []
        for incoming in commands:
            command_id = str(incoming.envelope.message_id)
            if command_id not in seen:
                seen.add(command_id)
                fresh.append(incoming)
        return fresh

    async def idle(self) -> None:
        """Nothing came in: mark what was published since the last batch."""
        if self._unmarked:
            marking = tuple(self._unmarked)
            async with self._engine.begin() as conn:
                await outbox.mark_published(conn, t.outbox, marking)
            self._unmarked.difference_update(marking)


def decision_outcome(events: Sequence[Event]) -> tuple[str, str]:
    """(outcome, reason) of a decision, from the events it decided: `rejected` with the
    refusal's reason, `accepted` when something happened, `unchanged` when nothing did (a
    command that found its work done)."""
    for event in events:
        if isinstance(event, REFUSALS):
            return "rejected", event.reason.value
    return ("accepted", "") if events else ("unchanged", "")


def _mail(book: RegistrationBook, event: Event) -> Mail | None:
    """The mail an event sends, written from the state the event left."""
    convention = book.conventions.get(event.convention_id)
    if isinstance(event, WaitlistOfferMade):
        return offer_mail(event, convention)
    registration_id = getattr(event, "registration_id", None)
    registration = (
        book.registrations.get(registration_id) if isinstance(registration_id, uuid.UUID) else None
    )
    return mail_for(event, convention, registration)


def _unseen_registration(command: Command, memory: PartitionMemory) -> bool:
    return (
        isinstance(command, RegisterAttendee)
        and memory.holds(command.convention_id)
        and command.registration_id not in memory.registrations
    )


class Incoming(NamedTuple):
    record: Record
    envelope: Envelope
    command: Command
