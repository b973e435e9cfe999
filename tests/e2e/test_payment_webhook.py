"""Payments through the running stack: the provider's notifications at the gateway (signed
ones become one command each, hostile ones get problem details and never a 5xx), the payment
simulator notifying the gateway itself, starting a payment for an order, and the order clock
asking the provider for a refund.

What the registration decider then decides is not looked at here: these tests stop at the
commands on `registration.commands`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from consumers.orders.clock import ACTOR as CLOCK
from consumers.registration import tables as w
from gateway.payments import NOTIFICATIONS_PATH, PROVIDER, notification_command_id
from projections.orders import tables as o
from projections.website import tables as r
from schemas.envelope import Envelope, UndecodableMessage, decode_envelope
from schemas.orders import RecordPayment, RecordRefund
from schemas.registry import payload_of
from schemas.topics import Topics
from tests.e2e.conftest import Stack
from tests.integration.test_payment_sim import wait_until_up
from tests.support import engine_for, eventually, read_topic

pytestmark = pytest.mark.e2e

PROBLEM_JSON = "application/problem+json"


def signature(body: bytes, secret: str, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def notification(**overrides: Any) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "type": "payment.succeeded",
        "payment_id": f"pay_{uuid.uuid4().hex[:24]}",
        "order_id": str(uuid.uuid4()),
        "registration_id": str(uuid.uuid4()),
        "convention_id": str(uuid.uuid4()),
        "amount_cents": 4500,
        "currency": "EUR",
        **overrides,
    }


async def notify(
    stack: Stack, body: bytes, header: str | None = "sign", **headers: str
) -> httpx.Response:
    """POST a notification; `header` "sign" signs it with the stack's secret, None sends no
    signature, anything else is sent as the signature."""
    if header == "sign":
        header = signature(body, stack.settings.payment_webhook_secret)
    sent = {"content-type": "application/json", **headers}
    if header is not None:
        sent["Butterfly-Signature"] = header
    async with stack.client() as client:
        return await client.post(NOTIFICATIONS_PATH, content=body, headers=sent)


async def commands(stack: Stack) -> list[Envelope]:
    """Every command on the topic; other tests share the stack and put hostile records there
    too, which are no envelope and so no command of the provider's."""
    records = await read_topic(
        stack.settings, Topics(stack.settings.topic_prefix).registration_commands
    )
    found = []
    for record in records:
        with contextlib.suppress(UndecodableMessage):
            found.append(decode_envelope(record.value))
    return found


async def from_provider(stack: Stack, payment_id: str, count: int) -> list[Envelope]:
    """The commands made of the provider's notifications about one payment, once `count`
    of them are on the topic."""

    async def probe() -> list[Envelope]:
        return [
            e
            for e in await commands(stack)
            if e.actor == PROVIDER and e.payload.get("payment_id") == payment_id
        ]

    return await eventually(
        probe, lambda found: len(found) >= count, timeout=30, interval=0.5, what=payment_id
    )


def assert_problem(answer: httpx.Response, status: int, kind: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    body = answer.json()
    assert body["status"] == status
    if kind is not None:
        assert body["type"].endswith(f"/{kind}"), body


async def test_a_signed_notification_is_one_command_however_often_it_comes(
    stack: Stack,
) -> None:
    sent = notification()
    body = json.dumps(sent).encode()
    first = await notify(stack, body)
    assert first.status_code == 202, first.text
    command_id = notification_command_id(sent["id"])
    assert first.json() == {"status": "accepted", "command_id": str(command_id)}
    again = await notify(stack, body)
    assert again.status_code == 202, again.text
    assert again.json()["command_id"] == str(command_id)

    found = await from_provider(stack, sent["payment_id"], 2)
    assert {e.message_id for e in found} == {command_id}
    for envelope in found:
        assert envelope.key == sent["convention_id"]
        assert payload_of(envelope) == RecordPayment(
            convention_id=uuid.UUID(sent["convention_id"]),
            registration_id=uuid.UUID(sent["registration_id"]),
            order_id=uuid.UUID(sent["order_id"]),
            payment_id=sent["payment_id"],
            amount_cents=4500,
            currency="EUR",
            succeeded=True,
        )


async def test_a_failed_payment_and_a_refund_become_their_commands(stack: Stack) -> None:
    failed = notification(type="payment.failed", provider_field="ignored")
    assert (await notify(stack, json.dumps(failed).encode())).status_code == 202
    refund_id = uuid.uuid4()
    refunded = notification(type="refund.succeeded", reference=str(refund_id))
    assert (await notify(stack, json.dumps(refunded).encode())).status_code == 202

    [declined] = await from_provider(stack, failed["payment_id"], 1)
    decoded = payload_of(declined)
    assert isinstance(decoded, RecordPayment)
    assert decoded.succeeded is False
    envelopes = await eventually(
        lambda: commands(stack),
        lambda found: any(e.message_id == notification_command_id(refunded["id"]) for e in found),
        interval=0.5,
        what="the refund command",
    )
    [refund] = [e for e in envelopes if e.message_id == notification_command_id(refunded["id"])]
    assert payload_of(refund) == RecordRefund(
        convention_id=uuid.UUID(refunded["convention_id"]),
        registration_id=uuid.UUID(refunded["registration_id"]),
        refund_id=refund_id,
    )


def _stale(body: bytes, secret: str) -> str:
    return signature(body, secret, int(time.time()) - 6 * 60)


HOSTILE_SIGNATURES = {
    "missing": None,
    "empty": "",
    "garbage": "garbage",
    "no timestamp": "v1=" + "0" * 64,
    "no digest": "t=1700000000",
    "timestamp not a number": "t=soon,v1=" + "0" * 64,
    "huge timestamp": "t=" + "9" * 40 + ",v1=" + "0" * 64,
    "wrong secret": "wrong",
    "replayed after five minutes": "stale",
    "from the future": "future",
    "another body": "other",
    "very long": "t=1," + "v1=ab," * 400,
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SIGNATURES))
async def test_a_notification_without_a_good_signature_is_refused(stack: Stack, case: str) -> None:
    sent = notification()
    body = json.dumps(sent).encode()
    secret = stack.settings.payment_webhook_secret
    header = {
        "wrong": signature(body, "not-the-secret"),
        "stale": _stale(body, secret),
        "future": signature(body, secret, int(time.time()) + 6 * 60),
        "other": signature(body + b" ", secret),
    }.get(str(HOSTILE_SIGNATURES[case]), HOSTILE_SIGNATURES[case])
    answer = await notify(stack, body, header)
    assert_problem(answer, 401, "invalid-signature")
    assert not [
        e for e in await commands(stack) if e.message_id == notification_command_id(sent["id"])
    ]


HOSTILE_BODIES: dict[str, tuple[bytes, int, str]] = {
    "not json": (b"{not json", 422, "invalid-notification"),
    "empty": (b"", 422, "invalid-notification"),
    "a list": (b"[1, 2]", 422, "invalid-notification"),
    "a string": (b'"payment.succeeded"', 422, "invalid-notification"),
    "not utf-8": (b'{"id": "\xff\xfe"}', 422, "invalid-notification"),
    "deeply nested": (b"[" * 5000 + b"]" * 5000, 422, "invalid-notification"),
    "unknown type": (
        json.dumps(notification(type="payment.disputed")).encode(),
        422,
        "unknown-notification-type",
    ),
    "no type": (json.dumps({"id": "evt_1"}).encode(), 422, "unknown-notification-type"),
    "type not a string": (
        json.dumps(notification(type={"a": 1})).encode(),
        422,
        "unknown-notification-type",
    ),
    "missing fields": (
        json.dumps({"id": "evt_1", "type": "payment.succeeded"}).encode(),
        422,
        "invalid-notification",
    ),
    "negative amount": (
        json.dumps(notification(amount_cents=-1)).encode(),
        422,
        "invalid-notification",
    ),
    "amount not a number": (
        json.dumps(notification(amount_cents="lots")).encode(),
        422,
        "invalid-notification",
    ),
    "odd payment id": (
        json.dumps(notification(payment_id="pay 1; DROP TABLE")).encode(),
        422,
        "invalid-notification",
    ),
    "odd notification id": (
        json.dumps(notification(id="x" * 500)).encode(),
        422,
        "invalid-notification",
    ),
    "not a uuid": (
        json.dumps(notification(registration_id="someone")).encode(),
        422,
        "invalid-notification",
    ),
    "lowercase currency": (
        json.dumps(notification(currency="eur")).encode(),
        422,
        "invalid-notification",
    ),
    "refund without reference": (
        json.dumps(notification(type="refund.succeeded")).encode(),
        422,
        "invalid-notification",
    ),
    "refund reference not ours": (
        json.dumps(notification(type="refund.succeeded", reference="re_123")).encode(),
        422,
        "invalid-notification",
    ),
    "huge": (
        json.dumps(notification(padding="x" * 200_000)).encode(),
        413,
        "body-too-large",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
async def test_a_signed_body_that_is_not_a_notification_gets_problem_details(
    stack: Stack, case: str
) -> None:
    body, status, kind = HOSTILE_BODIES[case]
    answer = await notify(stack, body)
    assert_problem(answer, status, kind)


async def test_a_validation_error_names_the_fields(stack: Stack) -> None:
    body = json.dumps(notification(amount_cents=-1, currency="eur")).encode()
    answer = await notify(stack, body)
    assert_problem(answer, 422, "invalid-notification")
    assert {e["field"] for e in answer.json()["errors"]} == {"amount_cents", "currency"}


# the simulator and the gateway together ------------------------------------------------------


@pytest.fixture
async def provider(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the stack's payment simulator, once it answers."""
    await wait_until_up(stack.payment_url)
    async with httpx.AsyncClient(base_url=stack.payment_url, timeout=30) as client:
        yield client


async def test_the_provider_notifies_the_gateway_and_a_duplicate_is_two_commands(
    stack: Stack, provider: httpx.AsyncClient
) -> None:
    sent = notification()
    made = await provider.post(
        "/v1/payments",
        json={
            "order_id": sent["order_id"],
            "registration_id": sent["registration_id"],
            "convention_id": sent["convention_id"],
            "amount_cents": 2500,
            "currency": "EUR",
            "description": "Test",
            "notify_url": stack.base_url + NOTIFICATIONS_PATH,
        },
    )
    assert made.status_code == 201, made.text
    payment_id = made.json()["payment_id"]
    done = await provider.post(f"/v1/payments/{payment_id}/checkout", json={"outcome": "duplicate"})
    assert done.status_code == 200, done.text
    found = await from_provider(stack, payment_id, 3)

    async def deliveries() -> list[dict[str, Any]]:
        answer = await provider.get(f"/v1/payments/{payment_id}/notifications")
        owed: list[dict[str, Any]] = answer.json()["notifications"]
        return owed

    owed = await eventually(
        deliveries, lambda got: all(d["delivered_at"] for d in got), what="all delivered"
    )
    assert len(owed) == 3
    assert len(found) == 3
    assert len({e.message_id for e in found}) == 2, "the same notification id is one command"
    assert {e.message_id for e in found} == {
        notification_command_id(d["notification_id"]) for d in owed
    }
    for envelope in found:
        decoded = payload_of(envelope)
        assert isinstance(decoded, RecordPayment)
        assert decoded.amount_cents == 2500
        assert decoded.succeeded


# starting a payment --------------------------------------------------------------------------


class Order:
    """A registration and its order as the read models would hold them, written directly:
    these tests are about the route, not about how the order came to be."""

    def __init__(self, *, status: str = "pending_payment", hold_minutes: float = 15) -> None:
        self.convention_id = uuid.uuid4()
        self.registration_id = uuid.uuid4()
        self.order_id = uuid.uuid4()
        self.status = status
        self.hold_until = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=hold_minutes)

    async def write(self, stack: Stack, *, account_id: uuid.UUID | None = None) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        async with engine_for(stack.settings.db.read_url) as engine, engine.begin() as conn:
            await conn.execute(
                r.registrations.insert().values(
                    registration_id=str(self.registration_id),
                    convention_id=str(self.convention_id),
                    email="payer@example.com",
                    name="Payer",
                    badge_type="STD",
                    status="pending",
                    reason=None,
                    request_hash="h",
                    created_at=now,
                    updated_at=now,
                    email_key="payer@example.com",
                    account_id=None if account_id is None else str(account_id),
                )
            )
            await conn.execute(
                o.orders.insert().values(
                    order_id=str(self.order_id),
                    registration_id=str(self.registration_id),
                    convention_id=str(self.convention_id),
                    status=self.status,
                    first=True,
                    subtotal_cents=4500,
                    discount_cents=0,
                    total_cents=4500,
                    paid_cents=0,
                    refunded_cents=0,
                    currency="EUR",
                    promo_code=None,
                    payment_id=None,
                    hold_until=self.hold_until,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def forget(self, stack: Stack) -> None:
        async with engine_for(stack.settings.db.read_url) as engine, engine.begin() as conn:
            await conn.execute(delete(o.orders).where(o.orders.c.order_id == str(self.order_id)))
            await conn.execute(
                delete(r.registrations).where(
                    r.registrations.c.registration_id == str(self.registration_id)
                )
            )

    @property
    def path(self) -> str:
        return f"/api/v1/registrations/{self.registration_id}/orders/{self.order_id}/payments"


async def test_a_pending_order_gets_a_payment_the_provider_notifies_about(
    stack: Stack, provider: httpx.AsyncClient
) -> None:
    order = Order()
    await order.write(stack)
    try:
        async with stack.client() as client:
            started = await client.post(order.path, headers={"Idempotency-Key": "pay-1"})
            assert started.status_code == 201, started.text
            again = await client.post(order.path, headers={"Idempotency-Key": "pay-1"})
            other = await client.post(order.path)
        body = started.json()
        assert body["amount_cents"] == 4500
        assert body["currency"] == "EUR"
        assert body["order_id"] == str(order.order_id)
        assert body["checkout_url"] == f"{stack.payment_url}/checkout/{body['payment_id']}"
        assert again.json()["payment_id"] == body["payment_id"]
        assert other.status_code == 201
        assert other.json()["payment_id"] != body["payment_id"]
        page = await provider.get(body["checkout_url"])
        assert page.status_code == 200
        paid = await provider.post(
            f"/v1/payments/{body['payment_id']}/checkout", json={"outcome": "succeed"}
        )
        assert paid.status_code == 200, paid.text
        [command] = await from_provider(stack, body["payment_id"], 1)
        assert payload_of(command) == RecordPayment(
            convention_id=order.convention_id,
            registration_id=order.registration_id,
            order_id=order.order_id,
            payment_id=body["payment_id"],
            amount_cents=4500,
            currency="EUR",
            succeeded=True,
        )
    finally:
        await order.forget(stack)


@pytest.mark.parametrize(
    ("status", "hold_minutes"), [("paid", 15), ("expired", -5), ("pending_payment", -1)]
)
async def test_only_an_order_waiting_for_payment_can_be_paid(
    stack: Stack, status: str, hold_minutes: float
) -> None:
    order = Order(status=status, hold_minutes=hold_minutes)
    await order.write(stack)
    try:
        async with stack.client() as client:
            answer = await client.post(order.path)
        assert_problem(answer, 409, "order-not-payable")
        assert answer.json()["reason"] == "not_pending_payment"
    finally:
        await order.forget(stack)


async def test_unknown_orders_and_other_peoples_registrations_are_not_found(
    stack: Stack,
) -> None:
    mine, theirs = Order(), Order()
    await mine.write(stack)
    await theirs.write(stack, account_id=uuid.uuid4())
    try:
        async with stack.client() as client:
            unknown_order = await client.post(
                f"/api/v1/registrations/{mine.registration_id}/orders/{uuid.uuid4()}/payments"
            )
            unknown_registration = await client.post(
                f"/api/v1/registrations/{uuid.uuid4()}/orders/{mine.order_id}/payments"
            )
            someone_elses = await client.post(theirs.path)
            mixed = await client.post(
                f"/api/v1/registrations/{mine.registration_id}/orders/{theirs.order_id}/payments"
            )
        assert_problem(unknown_order, 404, "order-not-found")
        assert_problem(unknown_registration, 404, "registration-not-found")
        assert_problem(someone_elses, 404, "registration-not-found")
        assert_problem(mixed, 404, "order-not-found")
    finally:
        await mine.forget(stack)
        await theirs.forget(stack)


async def test_a_provider_that_does_not_answer_is_a_503_to_retry(
    stack: Stack, provider: httpx.AsyncClient
) -> None:
    order = Order()
    await order.write(stack)
    try:
        failing = await provider.post("/chaos", json={"fail_requests": True})
        assert failing.status_code == 200
        try:
            async with stack.client() as client:
                answer = await client.post(order.path)
        finally:
            await provider.post("/chaos", json={"fail_requests": False})
        assert_problem(answer, 503, "payment-provider-unavailable")
        assert int(answer.headers["retry-after"]) >= 1
    finally:
        await order.forget(stack)


# the order clock -----------------------------------------------------------------------------


async def test_the_clock_asks_the_provider_for_an_issued_refund_and_its_notice_comes_back(
    stack: Stack, provider: httpx.AsyncClient
) -> None:
    """The running `butterfly clock` finds the refund in the decider's table and asks the
    stack's provider for it; the provider's notification reaches the gateway as
    `RecordRefund`. The row is written here directly, for a convention the decider never
    heard of: this is about the clock's mechanics, not the decision."""
    sent = notification()
    made = await provider.post(
        "/v1/payments",
        json={
            "order_id": sent["order_id"],
            "registration_id": sent["registration_id"],
            "convention_id": sent["convention_id"],
            "amount_cents": 2500,
            "currency": "EUR",
            "notify_url": stack.base_url + NOTIFICATIONS_PATH,
        },
    )
    payment_id = made.json()["payment_id"]
    await provider.post(f"/v1/payments/{payment_id}/checkout", json={"outcome": "succeed"})
    await from_provider(stack, payment_id, 1)
    refund_id = uuid.uuid4()
    async with engine_for(stack.settings.db.write_url) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                w.refunds.insert().values(
                    refund_id=str(refund_id),
                    registration_id=sent["registration_id"],
                    convention_id=sent["convention_id"],
                    order_id=sent["order_id"],
                    payment_id=payment_id,
                    amount_cents=1000,
                    currency="EUR",
                    reason="cancelled",
                    status="issued",
                    issued_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
        try:

            async def refund_commands() -> list[Envelope]:
                return [
                    e
                    for e in await commands(stack)
                    if e.type == "RecordRefund" and e.payload["refund_id"] == str(refund_id)
                ]

            found = await eventually(
                refund_commands,
                lambda found: {e.actor for e in found} >= {PROVIDER, CLOCK},
                interval=0.5,
                what="RecordRefund from the clock (the provider paid it) and from the notice",
            )
        finally:
            async with engine.begin() as conn:
                await conn.execute(delete(w.refunds).where(w.refunds.c.refund_id == str(refund_id)))
    for command in found:
        assert payload_of(command) == RecordRefund(
            convention_id=uuid.UUID(sent["convention_id"]),
            registration_id=uuid.UUID(sent["registration_id"]),
            refund_id=refund_id,
        )
    paid = (await provider.get(f"/v1/payments/{payment_id}")).json()
    assert paid["refunded_cents"] == 1000
