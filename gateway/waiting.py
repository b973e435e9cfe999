"""Waiting for decisions. A request that waits is answered with its decision as soon as a
client can read it back: every gateway process follows the registration events and the
dead-letter topic from their end, picks out the decision of each waiting request's command
(by its causation id), and answers once the website projector has moved past that record,
which one small query per tick of the stored positions tells for every waiting request.

The read model's outcome table is asked instead (one query per tick for every such
request) for what the stream cannot answer: a command decided before the request came (a
retry under the same Idempotency-Key leads to no new event), a decision whose answer needs
the read model (a cancellation answers with the whole registration), and any request still
waiting after `stream_grace` seconds (the stream reader restarting, or a partition it has not
reached yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from gateway.order_reads import decided_detail
from gateway.reads import Outcome, ReadModels
from gateway.views import RegistrationView
from schemas.checkin import AttendeeCheckedIn, CheckInRefused, CheckInSuperseded
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_SOURCE_TOPIC,
    HEADER_TYPE,
    UndecodableMessage,
    header,
)
from schemas.registration import (
    SET_ASIDE,
    AttendeeRegistered,
    OrderPlaced,
    RegistrationRejected,
    RegistrationRequestRefused,
)
from schemas.registry import decode_message

log = structlog.get_logger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"
FAILED_POLL_PAUSE = 1.0


@dataclass(eq=False)
class Ticket:
    """One waiting request: registered before its command is published, so that a decision
    arriving at once still finds it."""

    command_id: str
    future: asyncio.Future[Outcome]
    poll_from: float
    """When the read model starts being asked too (monotonic seconds)."""


@dataclass(frozen=True)
class Decided:
    """A decision seen on the stream, answered once the website projector is past it."""

    outcome: Outcome
    topic: str
    partition: int
    offset: int


@dataclass
class _Waiting:
    tickets: dict[str, list[Ticket]] = field(default_factory=dict)
    decided: dict[str, Decided] = field(default_factory=dict)
    """Decisions read off the stream for commands still waited for, not yet readable."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, command_id: str, decided: Decided) -> None:
        if command_id in self.tickets:
            self.decided[command_id] = decided
            self.wake.set()

    def add(self, ticket: Ticket) -> None:
        self.tickets.setdefault(ticket.command_id, []).append(ticket)

    def remove(self, ticket: Ticket) -> None:
        waiters = self.tickets.get(ticket.command_id)
        if waiters is None:
            return
        if ticket in waiters:
            waiters.remove(ticket)
        if not waiters:
            del self.tickets[ticket.command_id]
            self.decided.pop(ticket.command_id, None)

    def resolve(self, command_id: str, outcome: Outcome) -> None:
        self.decided.pop(command_id, None)
        for ticket in self.tickets.pop(command_id, []):
            if not ticket.future.done():
                ticket.future.set_result(outcome)


class DecisionWaiter:
    def __init__(
        self,
        reads: ReadModels,
        *,
        stream: DecisionStream | None = None,
        projector_group: str = "",
        interval: float = 0.005,
        chunk: int = 1000,
        stream_grace: float = 0.25,
    ) -> None:
        self._reads = reads
        self._stream = stream
        self._projector_group = projector_group
        self._interval = interval
        self._chunk = chunk
        self._stream_grace = stream_grace
        self._waiting = _Waiting()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="decision-poll"))
        if self._stream is not None:
            await self._stream.start()
            self._tasks.append(
                asyncio.create_task(self._stream.run(self._waiting), name="decision-stream")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stream is not None:
            await self._stream.stop()

    def expect(self, command_id: uuid.UUID, *, streamed: bool) -> Ticket:
        """Start waiting for a command's decision; `streamed` says the decision is expected on
        the stream, so the read model is only asked after the grace period."""
        now = time.monotonic()
        ticket = Ticket(
            str(command_id),
            asyncio.get_running_loop().create_future(),
            now + self._stream_grace if streamed and self._stream is not None else now,
        )
        self._waiting.add(ticket)
        self._waiting.wake.set()
        return ticket

    def forget(self, ticket: Ticket) -> None:
        self._waiting.remove(ticket)

    async def wait(self, ticket: Ticket, timeout: float) -> Outcome | None:
        """The outcome once it is known, or None if it took longer than `timeout`."""
        try:
            return await asyncio.wait_for(ticket.future, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiting.remove(ticket)

    async def _poll_loop(self) -> None:
        while True:
            if not self._waiting.tickets:
                self._waiting.wake.clear()
                await self._waiting.wake.wait()
            try:
                await self._poll()
            except Exception as exc:
                # The read model not answering: waiting requests end as 202 at their
                # deadline; ask again in a second rather than log 200 failures a second.
                log.warning("decision_poll_failed", error=repr(exc))
                await asyncio.sleep(FAILED_POLL_PAUSE)
            await asyncio.sleep(self._interval)

    async def _poll(self) -> None:
        waiting = self._waiting
        if waiting.decided:
            positions = await self._reads.positions(self._projector_group)
            for command_id, decided in list(waiting.decided.items()):
                if decided.offset < positions.get((decided.topic, decided.partition), 0):
                    waiting.resolve(command_id, decided.outcome)
        now = time.monotonic()
        ids = [
            command_id
            for command_id, tickets in waiting.tickets.items()
            if command_id not in waiting.decided
            and any(ticket.poll_from <= now for ticket in tickets)
        ]
        for start in range(0, len(ids), self._chunk):
            found = await self._reads.outcomes(ids[start : start + self._chunk])
            for command_id, outcome in found.items():
                self._waiting.resolve(command_id, outcome)


class DecisionStream:
    """Follows the decider's output from the end: registration decisions on the events topic,
    commands set aside on the dead-letter topic. Only records some request waits for are
    decoded in full; the rest cost one JSON parse."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        events_topic: str,
        dead_letter_topic: str,
        commands_topic: str,
        decider_group: str,
    ) -> None:
        self._events_topic = events_topic
        self._dead_letter_topic = dead_letter_topic
        self._commands_topic = commands_topic
        self._decider_group = decider_group
        self._bootstrap_servers = bootstrap_servers
        self._started: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect; aiokafka objects belong to the running loop, so they are made here."""
        self._started = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._started.start()

    async def stop(self) -> None:
        if self._started is None:
            return
        consumer, self._started = self._started, None
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # Closed while the broker is unreachable, aiokafka's fetcher raises the
            # cancellation of its own fetch task; only a cancellation of ours goes on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._started is None:
            raise RuntimeError("the decision stream is not started")
        return self._started

    async def run(self, waiting: _Waiting) -> None:
        """Read until cancelled; a broker fault makes it start over from the end, while the
        read model answers whoever waits meanwhile."""
        while True:
            try:
                await self._follow(waiting)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("decision_stream_restarting", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _follow(self, waiting: _Waiting) -> None:
        partitions = await self._partitions()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        log.info("decision_stream_following", partitions=len(partitions))
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            if not waiting.tickets:
                continue
            for records in batches.values():
                for record in records:
                    self._answer(record, waiting)

    async def _partitions(self) -> list[TopicPartition]:
        topics = (self._events_topic, self._dead_letter_topic)
        while True:
            with contextlib.suppress(KafkaError):
                await self._consumer.topics()
            found = {topic: self._consumer.partitions_for_topic(topic) for topic in topics}
            if all(found.values()):
                return [
                    TopicPartition(topic, partition)
                    for topic, partitions in found.items()
                    for partition in sorted(partitions or ())
                ]
            log.warning("decision_stream_waiting_for_topics", topics=topics)
            await asyncio.sleep(1.0)

    def _answer(self, record: ConsumerRecord[bytes, bytes], waiting: _Waiting) -> None:
        try:
            if record.topic == self._dead_letter_topic:
                self._answer_set_aside(record, waiting)
                return
            command_id = _field(record.value, "causation_id")
            if command_id is None or command_id not in waiting.tickets:
                return
            outcome = _outcome_of(record.value, header(record.headers, HEADER_TYPE))
            if outcome is not None:
                waiting.note(
                    command_id, Decided(outcome, record.topic, record.partition, record.offset)
                )
        except (ValueError, RecursionError, UndecodableMessage):
            return

    def _answer_set_aside(self, record: ConsumerRecord[bytes, bytes], waiting: _Waiting) -> None:
        headers = record.headers or ()
        if (
            header(headers, HEADER_CONSUMER_GROUP) != self._decider_group
            or header(headers, HEADER_SOURCE_TOPIC) != self._commands_topic
        ):
            return
        command_id = _field(record.value, "message_id")
        if command_id is not None and command_id in waiting.tickets:
            outcome = Outcome(REJECTED, SET_ASIDE, None)
            waiting.note(
                command_id, Decided(outcome, record.topic, record.partition, record.offset)
            )


def _field(value: bytes | None, name: str) -> str | None:
    """A top-level text field of a record's JSON body, or None: whatever else a record holds
    (not JSON, not an object, a list where an id belongs) concerns nobody waiting here."""
    raw: Any = json.loads(value or b"")
    found = raw.get(name) if isinstance(raw, dict) else None
    return found if isinstance(found, str) else None


def _outcome_of(value: bytes | None, type_name: str | None) -> Outcome | None:
    """A registration decision as the read model would answer it once projected; None for a
    decision whose answer needs the read model."""
    envelope, event = decode_message(value, type_name)
    at = envelope.occurred_at.astimezone(UTC)

    def view(status: str, reason: str | None) -> RegistrationView:
        assert isinstance(event, AttendeeRegistered | OrderPlaced | RegistrationRejected)
        return RegistrationView(
            registration_id=event.registration_id,
            convention_id=event.convention_id,
            email=event.email,
            name=event.name,
            badge_type=event.badge_type,
            status=status,
            reason=reason,
            created_at=at,
            updated_at=at,
            account_id=event.account_id,
            subject=event.subject or None if isinstance(event, RegistrationRejected) else None,
        )

    match event:
        case AttendeeRegistered():
            confirmed = decided_detail(event, view("confirmed", None))
            return Outcome(ACCEPTED, None, (confirmed, event.request_hash))
        case OrderPlaced():
            held = decided_detail(event, view("pending_payment", None))
            return Outcome(ACCEPTED, None, (held, event.request_hash))
        case RegistrationRejected():
            reason = event.reason.value
            return Outcome(REJECTED, reason, (view("rejected", reason), event.request_hash))
        case RegistrationRequestRefused():
            return Outcome(REJECTED, event.reason.value, None)
        case AttendeeCheckedIn() | CheckInSuperseded():
            # The scan is the check-in (a superseding one replaced a later scan's): its row in
            # `check_in_scans` is readable once this answer is given.
            return Outcome(ACCEPTED, None, None)
        case CheckInRefused():
            return Outcome(REJECTED, event.reason.value, None)
        case _:
            return None
