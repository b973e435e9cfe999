"""The lodging process manager: makes the partner calls the lodging decider asks for, and
tells the decider what the partner answered.

The decider marks what is due (`lodging_requests.next_step`, a convention's `sync_id` or
`reconciliation_id`); this loop finds it, calls the partner and publishes the answer as a
command to `lodging.commands`, where the decider decides it like any other. It never writes
the decider's tables, so there is one writer of lodging state and the answer is applied
exactly once by the decider's own machinery.

Doing a step twice is harmless by construction: the partner sees the same idempotency key on
every retry of a hold (and cancel and confirm are idempotent there), and the command that
records a step has an id derived from the step (`reply_command_id`), so a second member, a
crash between calling and publishing, or a decider that lags behind only ever records it
once.

Only rows of partitions this process owns (`owned()`) are worked on: the member that decides
a convention's lodging also calls the partner for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias, get_args

import structlog
from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.lodging import tables as t
from consumers.lodging.partner import (
    PartnerClient,
    PartnerRefused,
    PartnerUnavailable,
)
from consumers.lodging.reconcile import Reconciler
from infra.pipeline.faults import backoff_delay
from producers.kafka import OutgoingRecord, publish_all
from schemas.lodging import (
    MAX_PREFERENCES,
    FailureReason,
    ParkRoomRequest,
    RecordConfirmation,
    RecordHold,
    RecordHotelInventory,
    RecordReconciliation,
    RecordRelease,
    Stay,
    partner_idempotency_key,
    reply_command_id,
)
from schemas.registration import Command
from schemas.registry import wrap
from schemas.topics import Topics, lodging_key

log = structlog.get_logger(__name__)

ACTOR = "lodging-manager"
REASON_LIMIT = 500
RECORDED_REST_SECONDS = 30.0
"""After publishing a step's record, how long the same step is left alone for the decider
to catch up before it is done (and recorded, under the same id) again."""
FAILED_REST_SECONDS = 5.0
"""After a step failed for a reason other than the partner (Kafka, a bug), how long before
it is tried again."""
MIN_PASS_GAP_SECONDS = 0.05
"""Passes over the due steps are at least this far apart, however often the decider wakes
the manager: a rush of answers is picked up in a few passes, not one per answer."""
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 10.0

RoomStepName = Literal["hold", "confirm", "release"]
Signature: TypeAlias = tuple[str, ...]

_HOTELS: TypeAdapter[tuple[str, ...]] = TypeAdapter(tuple[str, ...])


@dataclass(frozen=True)
class RoomStep:
    """A partner call due for one room request, as its row says."""

    request_id: uuid.UUID
    convention_id: uuid.UUID
    partition_no: int
    step: RoomStepName
    hotels: tuple[str, ...]
    attempt: int
    retries: int
    stay: Stay
    ack: str | None

    @property
    def key(self) -> str:
        return f"request:{self.request_id}"

    @property
    def signature(self) -> Signature:
        return (self.step, str(self.attempt), str(self.retries))

    def record_id(self) -> uuid.UUID:
        attempt = f"{self.attempt}.{self.retries}" if self.step == "hold" else f"{self.retries}"
        return reply_command_id(self.request_id, self.step, attempt)

    def park(self, error: str) -> ParkRoomRequest:
        return ParkRoomRequest(
            convention_id=self.convention_id,
            request_id=self.request_id,
            step=self.step,
            error=_clip(error),
        )

    def park_id(self) -> uuid.UUID:
        return reply_command_id(self.request_id, f"park-{self.step}", f"{self.retries}")


@dataclass(frozen=True)
class ConventionStep:
    """A hotel sync or a reconciliation waiting for one convention."""

    convention_id: uuid.UUID
    partition_no: int
    step: Literal["sync", "reconcile"]
    job_id: uuid.UUID
    """The sync id or the reconciliation id."""
    starts_on: date
    ends_on: date

    @property
    def key(self) -> str:
        return f"convention:{self.convention_id}"

    @property
    def signature(self) -> Signature:
        return (self.step, str(self.job_id))

    def record_id(self) -> uuid.UUID:
        return reply_command_id(self.job_id, self.step)

    def give_up(self, error: str) -> Command:
        if self.step == "sync":
            return RecordHotelInventory(
                convention_id=self.convention_id, sync_id=self.job_id, hotels=(), error=error
            )
        return RecordReconciliation(
            convention_id=self.convention_id,
            reconciliation_id=self.job_id,
            drifts=(),
            corrections=(),
            error=error,
        )


Work: TypeAlias = RoomStep | ConventionStep


@dataclass(frozen=True)
class Outcome:
    """What a step ends with: the command recording it, and a word for the log."""

    command: Command
    message_id: uuid.UUID
    outcome: str


# --- the steps: partner calls in, command out -------------------------------------------------


async def hold(partner: PartnerClient, work: RoomStep) -> Outcome:
    """Hold a room at the hotel being tried; a waitlisting there, with more hotels to try,
    is cancelled (compensation) and recorded as a refusal so the decider moves on."""
    if work.attempt >= len(work.hotels):
        return Outcome(work.park("no hotel left to try"), work.park_id(), "parked")
    hotel = work.hotels[work.attempt]
    try:
        made = await partner.hold(
            partner_idempotency_key(work.request_id, hotel),
            work.convention_id,
            hotel,
            work.stay,
            str(work.request_id),
        )
    except PartnerRefused as refused:
        return _hold_outcome(work, hotel, "refused", reason=_refusal(refused))
    if made.status in ("held", "confirmed"):
        return _hold_outcome(work, hotel, "held", ack=made.ack, total_cents=made.total_cents)
    if made.status == "cancelled":
        return _hold_outcome(work, hotel, "refused", ack=made.ack, reason=_full())
    if work.attempt + 1 < len(work.hotels):
        await _cancel(partner, made.ack)
        return _hold_outcome(work, hotel, "refused", ack=made.ack, reason=_full())
    return _hold_outcome(work, hotel, "waitlisted", ack=made.ack)


async def confirm(partner: PartnerClient, work: RoomStep) -> Outcome:
    if work.ack is None:
        return Outcome(work.park("no reservation to confirm"), work.park_id(), "parked")
    try:
        await partner.confirm(work.ack)
    except PartnerRefused as refused:
        return Outcome(work.park(_refusal(refused)), work.park_id(), "parked")
    command = RecordConfirmation(
        convention_id=work.convention_id, request_id=work.request_id, ack=work.ack
    )
    return Outcome(command, work.record_id(), "confirmed")


async def release(partner: PartnerClient, work: RoomStep) -> Outcome:
    """Cancel whatever the partner holds for the request: its current reservation and any
    other made under its reference (a hold recorded nowhere, a crash mid-compensation)."""
    try:
        released: list[str] = []
        if work.ack is not None and await _cancel(partner, work.ack):
            released.append(work.ack)
        for found in await partner.reservations(work.convention_id, str(work.request_id)):
            if found.status != "cancelled" and not await _cancel(partner, found.ack):
                continue
            released.append(found.ack)
    except PartnerRefused as refused:
        return Outcome(work.park(_refusal(refused)), work.park_id(), "parked")
    acks = tuple(dict.fromkeys(released))
    if len(acks) > MAX_PREFERENCES + 1:
        log.warning("lodging_release_many_acks", request_id=str(work.request_id), acks=acks)
        acks = acks[: MAX_PREFERENCES + 1]
    command = RecordRelease(convention_id=work.convention_id, request_id=work.request_id, acks=acks)
    return Outcome(command, work.record_id(), "released")


async def sync(partner: PartnerClient, work: ConventionStep) -> Outcome:
    try:
        hotels = await partner.hotels(work.convention_id, work.starts_on, work.ends_on)
    except PartnerRefused as refused:
        return Outcome(work.give_up(_refusal(refused)), work.record_id(), "refused")
    command = RecordHotelInventory(
        convention_id=work.convention_id, sync_id=work.job_id, hotels=tuple(hotels)
    )
    return Outcome(command, work.record_id(), "synced")


async def reconcile(reconciler: Reconciler, work: ConventionStep) -> Outcome:
    try:
        found = await reconciler.reconcile(work.convention_id)
    except PartnerRefused as refused:
        return Outcome(work.give_up(_refusal(refused)), work.record_id(), "refused")
    command = RecordReconciliation(
        convention_id=work.convention_id,
        reconciliation_id=work.job_id,
        drifts=found.drifts,
        corrections=found.corrections,
    )
    return Outcome(command, work.record_id(), "reconciled")


async def _cancel(partner: PartnerClient, ack: str) -> bool:
    """Cancel `ack`; False if the partner has no such reservation (nothing to release)."""
    try:
        await partner.cancel(ack)
    except PartnerRefused as refused:
        if refused.status == 404:
            return False
        raise
    return True


def _hold_outcome(
    work: RoomStep,
    hotel: str,
    outcome: Literal["held", "waitlisted", "refused"],
    *,
    ack: str | None = None,
    total_cents: int | None = None,
    reason: str | None = None,
) -> Outcome:
    command = RecordHold(
        convention_id=work.convention_id,
        request_id=work.request_id,
        attempt=work.attempt,
        hotel=hotel,
        outcome=outcome,
        ack=ack,
        total_cents=total_cents,
        reason=reason,
    )
    return Outcome(command, work.record_id(), outcome)


def _full() -> str:
    return FailureReason.NO_AVAILABILITY.value


def _refusal(refused: PartnerRefused) -> str:
    return _clip(f"{refused.code}: {refused.message}")


def _clip(text: str) -> str:
    text = text.strip() or "unknown error"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class _Memory:
    """What the loop remembers between passes (only in this process: a restart forgets,
    and at worst does a step once more, which records nothing new)."""

    running: dict[str, tuple[asyncio.Task[None], int]] = field(default_factory=dict)
    """key → (its task, the partition of its row)."""
    resting: dict[str, tuple[Signature, float]] = field(default_factory=dict)
    """key → (the step last recorded or failed, when it may be done again)."""
    first_tried: dict[tuple[str, Signature], float] = field(default_factory=dict)
    """When each step still not recorded was first tried: its give-up clock."""


class LodgingManager:
    """Finds due partner calls of the owned partitions and runs them, at most `concurrency`
    at a time and one per request (or convention) at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        topics: Topics,
        partner: PartnerClient,
        owned: Callable[[], set[int]],
        *,
        concurrency: int = 32,
        give_up_seconds: float = 900.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._topics = topics
        self._partner = partner
        self._reconciler = Reconciler(engine, partner)
        self._owned = owned
        self._concurrency = concurrency
        self._give_up_seconds = give_up_seconds
        self._poll_seconds = poll_seconds
        self._clock = time.monotonic
        self._memory = _Memory()
        self._woken = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Something may have become due (the decider committed a batch): look now."""
        self._woken.set()

    def stop(self) -> None:
        self._stopping = True
        self._woken.set()

    async def run(self) -> None:
        """Work until `stop()`; then cancel the steps under way and wait for them."""
        log.info("lodging_manager_started", concurrency=self._concurrency)
        failures = 0
        try:
            while not self._stopping:
                self._woken.clear()
                try:
                    await self._pass()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    log.warning("lodging_manager_pass_failed", attempt=failures, error=repr(exc))
                    await asyncio.sleep(backoff_delay(failures, base=BACKOFF_BASE_SECONDS))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), timeout=self._poll_seconds)
                await asyncio.sleep(MIN_PASS_GAP_SECONDS)
        finally:
            await self._cancel_all()
            log.info("lodging_manager_stopped")

    async def _pass(self) -> None:
        owned = set(self._owned())
        self._forget_unowned(owned)
        self._forget_stale()
        free = self._concurrency - len(self._memory.running)
        if free <= 0 or not owned:
            return
        for work in await self._due(owned, free):
            if free <= 0:
                break
            if self._busy(work):
                continue
            self._start(work)
            free -= 1

    async def _due(self, owned: set[int], free: int) -> list[Work]:
        """Due steps, oldest first: enough rows to fill `free` slots after skipping those
        running or resting."""
        limit = min(free + len(self._memory.running) + len(self._memory.resting), 5000)
        r, c = t.requests.c, t.conventions.c
        async with self._engine.connect() as conn:
            conventions = (
                await conn.execute(
                    select(
                        c.convention_id,
                        c.partition_no,
                        c.sync_id,
                        c.reconciliation_id,
                        c.starts_on,
                        c.ends_on,
                    )
                    .where(
                        or_(c.sync_id.is_not(None), c.reconciliation_id.is_not(None)),
                        c.partition_no.in_(owned),
                    )
                    .limit(limit)
                )
            ).all()
            requests = (
                await conn.execute(
                    select(
                        r.request_id,
                        r.convention_id,
                        r.partition_no,
                        r.next_step,
                        r.hotels,
                        r.attempt,
                        r.retries,
                        r.stay,
                        r.ack,
                    )
                    .where(r.next_step.is_not(None), r.partition_no.in_(owned))
                    .order_by(r.updated_at)
                    .limit(limit)
                )
            ).all()
        due: list[Work] = [_convention_step(row) for row in conventions]
        wanted = free + len(due)
        for row in requests:
            if len(due) >= wanted:
                break
            if self._busy_key(f"request:{row.request_id}", _row_signature(row)):
                continue
            step = _room_step(row)
            if step is not None:
                due.append(step)
        return due

    def _busy(self, work: Work) -> bool:
        return self._busy_key(work.key, work.signature)

    def _busy_key(self, key: str, signature: Signature) -> bool:
        """Running, or resting at this very step (its record not decided yet)."""
        if key in self._memory.running:
            return True
        resting = self._memory.resting.get(key)
        return resting is not None and resting[0] == signature and self._clock() < resting[1]

    def _start(self, work: Work) -> None:
        self._memory.first_tried.setdefault((work.key, work.signature), self._clock())
        task = asyncio.create_task(self._perform(work), name=f"lodging {work.key} {work.step}")
        self._memory.running[work.key] = (task, work.partition_no)

        def done(_: asyncio.Task[None]) -> None:
            if self._memory.running.get(work.key, (None, 0))[0] is task:
                del self._memory.running[work.key]
            self._woken.set()

        task.add_done_callback(done)

    async def _perform(self, work: Work) -> None:
        try:
            outcome = await self._patiently(work)
            envelope = wrap(
                outcome.command,
                message_id=outcome.message_id,
                occurred_at=datetime.now(UTC),
                correlation_id=_correlation(work),
                causation_id=None,
                key=lodging_key(work.convention_id),
                actor=ACTOR,
            )
            await publish_all(
                self._producer, [OutgoingRecord.of(self._topics.lodging_commands, envelope)]
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lodging_step_failed", **_fields(work))
            self._rest(work, FAILED_REST_SECONDS)
            return
        self._rest(work, RECORDED_REST_SECONDS)
        self._memory.first_tried.pop((work.key, work.signature), None)
        log.info(
            "lodging_step_done",
            **_fields(work),
            outcome=outcome.outcome,
            command=outcome.command.message_type,
            command_id=str(outcome.message_id),
        )

    async def _patiently(self, work: Work) -> Outcome:
        """The step, retried while the partner is unavailable (same keys every time, the
        breaker deciding when a call may go); past the give-up time, the record of giving
        up."""
        first_tried = self._memory.first_tried.get((work.key, work.signature), self._clock())
        failures = 0
        while True:
            try:
                return await self._step(work)
            except PartnerUnavailable as exc:
                failures += 1
                waited = self._clock() - first_tried
                if waited >= self._give_up_seconds:
                    return _gave_up(work, f"partner unavailable for {waited:.0f} s: {exc}")
                delay = backoff_delay(
                    failures - 1, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS
                )
                log.warning(
                    "lodging_step_retry",
                    **_fields(work),
                    attempt=failures,
                    delay_seconds=round(delay, 3),
                    error=str(exc),
                )
                await asyncio.sleep(delay)

    async def _step(self, work: Work) -> Outcome:
        if isinstance(work, ConventionStep):
            if work.step == "sync":
                return await sync(self._partner, work)
            return await reconcile(self._reconciler, work)
        steps: dict[str, Callable[[PartnerClient, RoomStep], Awaitable[Outcome]]] = {
            "hold": hold,
            "confirm": confirm,
            "release": release,
        }
        return await steps[work.step](self._partner, work)

    def _rest(self, work: Work, seconds: float) -> None:
        self._memory.resting[work.key] = (work.signature, self._clock() + seconds)

    def _forget_stale(self) -> None:
        now = self._clock()
        memory = self._memory
        for key in [k for k, (_, until) in memory.resting.items() if until <= now]:
            del memory.resting[key]
        horizon = self._give_up_seconds + 3600
        running = set(memory.running)
        for tried in [
            tried
            for tried, since in memory.first_tried.items()
            if now - since > horizon and tried[0] not in running
        ]:
            del memory.first_tried[tried]

    def _forget_unowned(self, owned: set[int]) -> None:
        """Steps of partitions given up are the new owner's now: stop them here."""
        for key, (task, partition_no) in list(self._memory.running.items()):
            if partition_no not in owned:
                log.info("lodging_step_handed_over", key=key, partition=partition_no)
                task.cancel()

    async def _cancel_all(self) -> None:
        tasks = [task for task, _ in self._memory.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._memory.running.clear()


def _row_signature(row: Any) -> Signature:
    """`RoomStep.signature` from the row's plain columns, before anything is parsed."""
    return (str(row.next_step), str(row.attempt), str(row.retries))


def _room_step(row: Any) -> RoomStep | None:
    """The step a request row asks for, or None (logged) if the row cannot be read."""
    if row.next_step not in get_args(RoomStepName):
        log.error("lodging_request_unknown_step", request_id=row.request_id, step=row.next_step)
        return None
    try:
        return RoomStep(
            request_id=uuid.UUID(row.request_id),
            convention_id=uuid.UUID(row.convention_id),
            partition_no=row.partition_no,
            step=row.next_step,
            hotels=_HOTELS.validate_json(row.hotels),
            attempt=row.attempt,
            retries=row.retries,
            stay=Stay.model_validate_json(row.stay),
            ack=row.ack,
        )
    except (ValueError, ValidationError) as exc:
        log.error("lodging_request_unreadable", request_id=row.request_id, error=str(exc))
        return None


def _convention_step(row: Any) -> ConventionStep:
    sync_waits = row.sync_id is not None
    return ConventionStep(
        convention_id=uuid.UUID(row.convention_id),
        partition_no=row.partition_no,
        step="sync" if sync_waits else "reconcile",
        job_id=uuid.UUID(row.sync_id if sync_waits else row.reconciliation_id),
        starts_on=row.starts_on,
        ends_on=row.ends_on,
    )


def _gave_up(work: Work, error: str) -> Outcome:
    if isinstance(work, RoomStep):
        return Outcome(work.park(error), work.park_id(), "parked")
    return Outcome(work.give_up(_clip(error)), work.record_id(), "gave_up")


def _correlation(work: Work) -> uuid.UUID:
    return work.request_id if isinstance(work, RoomStep) else work.job_id


def _fields(work: Work) -> dict[str, str]:
    if isinstance(work, RoomStep):
        return {
            "request_id": str(work.request_id),
            "convention_id": str(work.convention_id),
            "step": work.step,
        }
    return {"convention_id": str(work.convention_id), "step": work.step, "job_id": str(work.job_id)}
