"""The order clock: what happens because time passed.

Every tick it reads the registration decider's tables and
- sends `ExpireOrder` for each order still waiting for payment whose hold has run out,
- sends `ExpireOffer` for each waitlist offer whose time has run out,
- asks the payment provider to pay each refund decided (`issued`) and not yet completed, at
  once and then every `refund_retry_seconds` while it stays issued; once the provider says
  it is paid, sends `RecordRefund` (the provider's notification of it, coming back through
  the gateway, may be given up).

It never writes those tables: the decider decides the commands (and checks, by the
command's own time, that the hold is really over). Everything it does may be done twice: command
ids derive from the order or entry (`expire_order_id`), and a refund's idempotency key at
the provider is the refund id, so several clocks at once, or a clock restarted, decide and
pay each thing once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.payments.provider import (
    PaymentProvider,
    ProviderRefused,
    ProviderUnavailable,
    RefundRequest,
)
from consumers.registration import tables as t
from infra.metrics import EXPIRIES_SENT, REFUND_REQUESTS
from infra.pipeline.faults import backoff_delay
from producers.kafka import OutgoingRecord, publish_all
from schemas.orders import ExpireOffer, ExpireOrder, RecordRefund
from schemas.registration import Command
from schemas.registry import wrap
from schemas.topics import Topics, registration_key

log = structlog.get_logger(__name__)

ACTOR = "order-clock"
PENDING_PAYMENT, OFFERED, ISSUED = "pending_payment", "offered", "issued"
BATCH = 500
TICK_SECONDS = 1.0
RESEND_SECONDS = 30.0
"""After sending an expiry, how long it is left for the decider to decide before it is sent
again (under the same id: a repeat is decided once, and only costs a record)."""
REFUND_RETRY_SECONDS = 30.0
REFUND_CONCURRENCY = 8


def due_orders(now: datetime, limit: int = BATCH) -> Select[Any]:
    """Orders waiting for payment whose hold is over by `now` (naive UTC), oldest first."""
    c = t.orders.c
    return (
        select(c.order_id, c.registration_id, c.convention_id)
        .where(c.status == PENDING_PAYMENT, c.hold_until <= now)
        .order_by(c.hold_until)
        .limit(limit)
    )


def due_offers(now: datetime, limit: int = BATCH) -> Select[Any]:
    """Waitlist offers whose time is over by `now` (naive UTC), oldest first."""
    c = t.waitlist_entries.c
    return (
        select(c.entry_id, c.convention_id)
        .where(c.status == OFFERED, c.offer_expires_at <= now)
        .order_by(c.offer_expires_at)
        .limit(limit)
    )


def issued_refunds(limit: int = BATCH) -> Select[Any]:
    """Refunds decided and not yet paid back, oldest first."""
    c = t.refunds.c
    return (
        select(c.refund_id, c.payment_id, c.amount_cents, c.convention_id, c.registration_id)
        .where(c.status == ISSUED)
        .order_by(c.issued_at)
        .limit(limit)
    )


def expire_order_id(order_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(order_id, "expire")


def expire_offer_id(entry_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(entry_id, "expire")


@dataclass(frozen=True)
class Expiry:
    command: Command
    command_id: uuid.UUID
    subject: uuid.UUID
    """The order or waitlist entry: the command's correlation id."""


@dataclass(frozen=True)
class Tick:
    """What one tick did: expiries sent, refund calls started."""

    orders: int
    offers: int
    refunds: int


class OrderClock:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        topics: Topics,
        provider: PaymentProvider,
        *,
        tick_seconds: float = TICK_SECONDS,
        resend_seconds: float = RESEND_SECONDS,
        refund_retry_seconds: float = REFUND_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._topics = topics
        self._provider = provider
        self._tick_seconds = tick_seconds
        self._resend_seconds = resend_seconds
        self._refund_retry_seconds = refund_retry_seconds
        self._clock = clock
        self._resting: dict[str, float] = {}
        """Expiries sent and refunds tried, by key: when each may be done again."""
        self._refunding: dict[str, asyncio.Task[None]] = {}
        self._calls = asyncio.Semaphore(REFUND_CONCURRENCY)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Tick until `stop()`; then cancel the refund calls under way."""
        log.info("order_clock_started", tick_seconds=self._tick_seconds)
        failures = 0
        try:
            while not self._stopping.is_set():
                wait = self._tick_seconds
                try:
                    await self.tick()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    wait = max(wait, backoff_delay(failures, base=0.5))
                    log.warning("order_clock_tick_failed", attempt=failures, error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=wait)
        finally:
            tasks = list(self._refunding.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("order_clock_stopped")

    async def tick(self) -> Tick:
        """One look at what is due: expiries sent (and acknowledged by the broker), refund
        calls started."""
        self._forget_rested()
        now = datetime.now(UTC).replace(tzinfo=None)
        async with self._engine.connect() as conn:
            orders = (await conn.execute(due_orders(now))).all()
            offers = (await conn.execute(due_offers(now))).all()
            refunds = (await conn.execute(issued_refunds())).all()
        expiries = [
            e for e in (*map(_order_expiry, orders), *map(_offer_expiry, offers)) if e is not None
        ]
        expiries = [e for e in expiries if not self._resting_key(f"expire:{e.command_id}")]
        if expiries:
            await self._send(expiries)
        started = 0
        for row in refunds:
            key = f"refund:{row.refund_id}"
            if key in self._refunding or self._resting_key(key):
                continue
            self._start_refund(key, row)
            started += 1
        sent_orders = sum(isinstance(e.command, ExpireOrder) for e in expiries)
        return Tick(sent_orders, len(expiries) - sent_orders, started)

    async def _send(self, expiries: list[Expiry]) -> None:
        """Publish the expiries with the current time as their time, which the decider
        checks the hold against."""
        records = [
            OutgoingRecord.of(
                self._topics.registration_commands,
                wrap(
                    e.command,
                    message_id=e.command_id,
                    occurred_at=datetime.now(UTC),
                    correlation_id=e.subject,
                    causation_id=None,
                    key=registration_key(e.command.convention_id),
                    actor=ACTOR,
                ),
            )
            for e in expiries
        ]
        await publish_all(self._producer, records)
        until = self._clock() + self._resend_seconds
        for e in expiries:
            self._resting[f"expire:{e.command_id}"] = until
            EXPIRIES_SENT.labels(e.command.message_type).inc()
            log.info(
                "expiry_sent",
                command=e.command.message_type,
                subject=str(e.subject),
                command_id=str(e.command_id),
            )

    def _start_refund(self, key: str, row: Any) -> None:
        task = asyncio.create_task(self._refund(key, row), name=f"refund {row.refund_id}")
        self._refunding[key] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._refunding.get(key) is task:
                del self._refunding[key]

        task.add_done_callback(done)

    async def _refund(self, key: str, row: Any) -> None:
        """Ask the provider to pay one refund back; whatever the answer, the refund is not
        asked for again before `refund_retry_seconds` (its notification normally completes
        it in between)."""
        fields = {"refund_id": row.refund_id, "payment_id": row.payment_id}
        try:
            async with self._calls:
                paid = await self._provider.refund(
                    RefundRequest(
                        payment_id=row.payment_id,
                        amount_cents=int(row.amount_cents),
                        reference=row.refund_id,
                    ),
                    idempotency_key=row.refund_id,
                )
            REFUND_REQUESTS.labels("paid" if paid.status == "succeeded" else "pending").inc()
            log.info("refund_requested", **fields, provider_refund_id=paid.refund_id)
            if paid.status == "succeeded":
                await self._record_refund(row)
        except ProviderUnavailable as exc:
            REFUND_REQUESTS.labels("unavailable").inc()
            log.warning("refund_provider_unavailable", **fields, error=str(exc))
        except ProviderRefused as exc:
            REFUND_REQUESTS.labels("refused").inc()
            log.error("refund_refused_by_provider", **fields, code=exc.code, error=exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            REFUND_REQUESTS.labels("failed").inc()
            log.exception("refund_failed", **fields)
        finally:
            self._resting[key] = self._clock() + self._refund_retry_seconds

    async def _record_refund(self, row: Any) -> None:
        """The provider says the refund is paid: record it at once rather than count on its
        notification alone, which it may give up delivering. Recorded twice is recorded once
        (the decider ignores a refund already completed)."""
        refund_id = uuid.UUID(row.refund_id)
        command = RecordRefund(
            convention_id=uuid.UUID(row.convention_id),
            registration_id=uuid.UUID(row.registration_id),
            refund_id=refund_id,
        )
        record = OutgoingRecord.of(
            self._topics.registration_commands,
            wrap(
                command,
                message_id=uuid.uuid5(refund_id, "paid back"),
                occurred_at=datetime.now(UTC),
                correlation_id=refund_id,
                causation_id=None,
                key=registration_key(command.convention_id),
                actor=ACTOR,
            ),
        )
        await publish_all(self._producer, [record])

    def _resting_key(self, key: str) -> bool:
        until = self._resting.get(key)
        return until is not None and self._clock() < until

    def _forget_rested(self) -> None:
        now = self._clock()
        for key in [k for k, until in self._resting.items() if until <= now]:
            del self._resting[key]


def _order_expiry(row: Any) -> Expiry | None:
    try:
        order_id = uuid.UUID(row.order_id)
        command = ExpireOrder(
            convention_id=uuid.UUID(row.convention_id),
            registration_id=uuid.UUID(row.registration_id),
            order_id=order_id,
        )
    except ValueError as exc:
        log.error("order_unreadable", order_id=row.order_id, error=str(exc))
        return None
    return Expiry(command, expire_order_id(order_id), order_id)


def _offer_expiry(row: Any) -> Expiry | None:
    try:
        entry_id = uuid.UUID(row.entry_id)
        command = ExpireOffer(convention_id=uuid.UUID(row.convention_id), entry_id=entry_id)
    except ValueError as exc:
        log.error("waitlist_entry_unreadable", entry_id=row.entry_id, error=str(exc))
        return None
    return Expiry(command, expire_offer_id(entry_id), entry_id)
