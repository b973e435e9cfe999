"""The order clock against the registration decider's real tables and a real broker: which
rows it finds due, the expiries it sends (ids, keys, times), the refunds it asks a provider
for, and that a second clock or a second tick changes nothing that was decided."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import Boolean, Integer, String, Text

from consumers.orders.clock import (
    ACTOR,
    OrderClock,
    Tick,
    due_offers,
    due_orders,
    expire_offer_id,
    expire_order_id,
    issued_refunds,
)
from consumers.payments.provider import (
    CreatedPayment,
    PaymentRequest,
    ProviderRefund,
    ProviderUnavailable,
    RefundRequest,
)
from consumers.registration import tables as w
from infra.settings import Settings
from producers.kafka import make_producer
from schemas.envelope import decode_envelope
from schemas.orders import ExpireOffer, ExpireOrder
from schemas.registry import payload_of
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import engine_for, eventually, read_topic

pytestmark = pytest.mark.integration


class FakeProvider:
    """A payment provider that records the refunds asked of it; `unavailable` makes every
    call fail the way a provider that does not answer does."""

    def __init__(self) -> None:
        self.refunds: list[tuple[RefundRequest, str]] = []
        self.unavailable = False

    async def create_payment(
        self, payment: PaymentRequest, *, idempotency_key: str
    ) -> CreatedPayment:
        raise AssertionError("the clock never starts payments")

    async def refund(self, refund: RefundRequest, *, idempotency_key: str) -> ProviderRefund:
        self.refunds.append((refund, idempotency_key))
        if self.unavailable:
            raise ProviderUnavailable("the provider does not answer")
        return ProviderRefund(
            f"re_{idempotency_key[:8]}",
            "succeeded",
            refund.payment_id,
            refund.amount_cents,
            refund.reference,
        )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def row(table: Table, **given: Any) -> dict[str, Any]:
    """`given`, and a plain value for every other column the table requires."""
    values = dict(given)
    for column in table.columns:
        if column.name in values or column.nullable or column.server_default is not None:
            continue
        kind = column.type
        if isinstance(kind, Boolean):
            values[column.name] = False
        elif isinstance(kind, DATETIME):
            values[column.name] = _now()
        elif isinstance(kind, Integer):
            values[column.name] = 0
        elif isinstance(kind, String | Text):
            values[column.name] = "{}" if isinstance(kind, Text) else ""
        else:
            raise AssertionError(f"no plain value for {table.name}.{column.name} ({kind})")
    return values


@pytest.fixture
async def settings(make_settings: StackFactory) -> Settings:
    return await make_settings(partitions=1)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    async with engine_for(settings.db.write_url) as made:
        yield made


class Due:
    """One convention's rows: one of each thing due, and one of each that is not."""

    def __init__(self) -> None:
        self.convention_id = uuid.uuid4()
        self.registration_id = uuid.uuid4()
        self.due_order = uuid.uuid4()
        self.future_order = uuid.uuid4()
        self.paid_order = uuid.uuid4()
        self.due_offer = uuid.uuid4()
        self.future_offer = uuid.uuid4()
        self.waiting_entry = uuid.uuid4()
        self.issued = [uuid.uuid4(), uuid.uuid4()]
        self.completed = uuid.uuid4()
        self.hold_until = _now() - timedelta(seconds=5)

    async def insert(self, engine: AsyncEngine) -> None:
        now = _now()
        convention = str(self.convention_id)
        registration = str(self.registration_id)

        def order(order_id: uuid.UUID, status: str, hold_until: datetime) -> dict[str, Any]:
            return row(
                w.orders,
                order_id=str(order_id),
                registration_id=registration,
                convention_id=convention,
                status=status,
                hold_until=hold_until,
                total_cents=4500,
                currency="EUR",
            )

        def entry(entry_id: uuid.UUID, status: str, expires: datetime | None) -> dict[str, Any]:
            return row(
                w.waitlist_entries,
                entry_id=str(entry_id),
                convention_id=convention,
                stock="badge:STD",
                seq=1,
                status=status,
                quantity=1,
                email="someone@example.com",
                name="Someone",
                offer_expires_at=expires,
            )

        def refund(refund_id: uuid.UUID, status: str, age: int) -> dict[str, Any]:
            return row(
                w.refunds,
                refund_id=str(refund_id),
                registration_id=registration,
                convention_id=convention,
                order_id=str(self.paid_order),
                payment_id=f"pay_{refund_id.hex[:24]}",
                amount_cents=1200,
                currency="EUR",
                reason="cancelled",
                status=status,
                issued_at=now - timedelta(seconds=age),
            )

        async with engine.begin() as conn:
            await conn.execute(
                w.orders.insert(),
                [
                    order(self.due_order, "pending_payment", self.hold_until),
                    order(self.future_order, "pending_payment", now + timedelta(minutes=10)),
                    order(self.paid_order, "paid", self.hold_until),
                ],
            )
            await conn.execute(
                w.waitlist_entries.insert(),
                [
                    entry(self.due_offer, "offered", now - timedelta(seconds=1)),
                    entry(self.future_offer, "offered", now + timedelta(minutes=10)),
                    entry(self.waiting_entry, "waiting", None),
                ],
            )
            await conn.execute(
                w.refunds.insert(),
                [
                    refund(self.issued[0], "issued", 20),
                    refund(self.issued[1], "issued", 10),
                    refund(self.completed, "completed", 30),
                ],
            )


async def test_only_what_is_due_is_selected(engine: AsyncEngine) -> None:
    due = Due()
    await due.insert(engine)
    async with engine.connect() as conn:
        orders = (await conn.execute(due_orders(_now()))).all()
        offers = (await conn.execute(due_offers(_now()))).all()
        refunds = (await conn.execute(issued_refunds())).all()
        before_hold = (await conn.execute(due_orders(due.hold_until - timedelta(seconds=1)))).all()
    assert [r.order_id for r in orders] == [str(due.due_order)]
    assert [r.entry_id for r in offers] == [str(due.due_offer)]
    assert [r.refund_id for r in refunds] == [str(i) for i in due.issued], "oldest first"
    assert before_hold == []


async def test_a_tick_sends_expiries_at_the_current_time_and_asks_for_refunds(
    settings: Settings, engine: AsyncEngine
) -> None:
    due = Due()
    await due.insert(engine)
    topics = Topics(settings.topic_prefix)
    provider = FakeProvider()
    producer = make_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        clock = OrderClock(engine, producer, topics, provider)
        sent_at = datetime.now(UTC)
        assert await clock.tick() == Tick(orders=1, offers=1, refunds=2)
        await eventually(lambda: _value(len(provider.refunds)), lambda n: n == 2)
        assert await clock.tick() == Tick(0, 0, 0), "sent and asked: left to rest"
        await asyncio.sleep(0.3)
        assert len(provider.refunds) == 2
        another = OrderClock(engine, producer, topics, provider)
        assert await another.tick() == Tick(1, 1, 2), "a second clock does it all again"
        await eventually(lambda: _value(len(provider.refunds)), lambda n: n == 4)
    finally:
        await producer.stop()

    asked = {(r.payment_id, r.amount_cents, r.reference, key) for r, key in provider.refunds}
    assert asked == {(f"pay_{i.hex[:24]}", 1200, str(i), str(i)) for i in due.issued}

    records = await read_topic(settings, topics.registration_commands)
    every = [decode_envelope(r.value) for r in records]
    recorded = [e for e in every if e.type == "RecordRefund"]
    assert {e.message_id for e in recorded} == {uuid.uuid5(i, "paid back") for i in due.issued}, (
        "a refund the provider paid is recorded at once, by the same id from both clocks"
    )
    envelopes = [e for e in every if e.type != "RecordRefund"]
    assert sorted(e.message_id for e in envelopes) == sorted(
        [expire_order_id(due.due_order), expire_offer_id(due.due_offer)] * 2
    ), "the same ids from both clocks: decided once"
    for envelope in envelopes:
        assert envelope.key == str(due.convention_id)
        assert envelope.actor == ACTOR
        assert envelope.occurred_at >= sent_at
        assert envelope.occurred_at <= datetime.now(UTC)
    commands = {type(payload_of(e)) for e in envelopes}
    assert commands == {ExpireOrder, ExpireOffer}
    order = next(payload_of(e) for e in envelopes if e.type == "ExpireOrder")
    assert order == ExpireOrder(
        convention_id=due.convention_id,
        registration_id=due.registration_id,
        order_id=due.due_order,
    )
    assert expire_order_id(due.due_order) == uuid.uuid5(due.due_order, "expire")


async def test_a_refund_the_provider_did_not_take_is_asked_for_again_later(
    settings: Settings, engine: AsyncEngine
) -> None:
    due = Due()
    await due.insert(engine)
    provider = FakeProvider()
    provider.unavailable = True
    producer = make_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        clock = OrderClock(
            engine,
            producer,
            Topics(settings.topic_prefix),
            provider,
            tick_seconds=0.05,
            refund_retry_seconds=0.3,
        )
        running = asyncio.create_task(clock.run())
        try:
            await eventually(lambda: _value(len(provider.refunds)), lambda n: n >= 6, timeout=10)
        finally:
            clock.stop()
            await asyncio.wait_for(running, 10)
    finally:
        await producer.stop()
    keys = [key for _, key in provider.refunds]
    assert set(keys) == {str(i) for i in due.issued}
    assert all(keys.count(key) >= 2 for key in set(keys)), "the same key on every try"


async def _value(value: int) -> int:
    return value
