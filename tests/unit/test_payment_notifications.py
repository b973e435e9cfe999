"""The payment notifications' pure parts: signatures (the simulator's signing and the
gateway's check agree), reading a notification, and the command it becomes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gateway.payments import (
    SIGNATURE_TOLERANCE_SECONDS,
    check_signature,
    command_of,
    notification_command_id,
    notification_of,
)
from gateway.problems import Problem
from infra.simulators.payments.notifier import MAX_ATTEMPTS, retry_delay, sign
from schemas.orders import RecordPayment, RecordRefund

SECRET = "whsec_unit"
NOW = 1_800_000_000


def body_of(**overrides: Any) -> bytes:
    return json.dumps(
        {
            "id": "evt_1",
            "type": "payment.succeeded",
            "payment_id": "pay_1",
            "order_id": str(uuid.UUID(int=1)),
            "registration_id": str(uuid.UUID(int=2)),
            "convention_id": str(uuid.UUID(int=3)),
            "amount_cents": 4500,
            "currency": "EUR",
            **overrides,
        }
    ).encode()


def refused(header: str | None, body: bytes = b"{}", now: float = NOW) -> Problem:
    with pytest.raises(Problem) as caught:
        check_signature(SECRET, header, body, now, SIGNATURE_TOLERANCE_SECONDS)
    assert caught.value.status_code == 401
    return caught.value


def test_what_the_simulator_signs_the_gateway_accepts_within_five_minutes() -> None:
    body = body_of()
    check_signature(SECRET, sign(SECRET, body, NOW), body, NOW, SIGNATURE_TOLERANCE_SECONDS)
    check_signature(SECRET, sign(SECRET, body, NOW - 299), body, NOW, SIGNATURE_TOLERANCE_SECONDS)
    refused(sign(SECRET, body, NOW - 301), body)
    refused(sign(SECRET, body, NOW + 301), body)


def test_a_signature_of_anything_else_is_refused() -> None:
    body = body_of()
    refused(sign("another secret", body, NOW), body)
    refused(sign(SECRET, body + b" ", NOW), body)
    refused(sign(SECRET, body, NOW).replace(f"t={NOW}", f"t={NOW + 1}"), body)
    for header in (None, "", "t=1", "v1=00", f"t=x{NOW},v1=00", "t=" + "9" * 13 + ",v1=0"):
        refused(header, body)


def test_any_of_several_signatures_may_match() -> None:
    body = body_of()
    good = sign(SECRET, body, NOW)
    digest = good.split("v1=")[1]
    check_signature(
        SECRET, f"t={NOW},v1={'0' * 64},v1={digest}", body, NOW, SIGNATURE_TOLERANCE_SECONDS
    )


def test_a_payment_notification_becomes_record_payment() -> None:
    notification = notification_of(body_of(added_later="ignored"))
    assert command_of(notification) == RecordPayment(
        convention_id=uuid.UUID(int=3),
        registration_id=uuid.UUID(int=2),
        order_id=uuid.UUID(int=1),
        payment_id="pay_1",
        amount_cents=4500,
        currency="EUR",
        succeeded=True,
    )
    failed = command_of(notification_of(body_of(type="payment.failed")))
    assert isinstance(failed, RecordPayment)
    assert failed.succeeded is False


def test_a_refund_notification_names_our_refund() -> None:
    refund_id = uuid.uuid4()
    notification = notification_of(body_of(type="refund.succeeded", reference=str(refund_id)))
    assert command_of(notification) == RecordRefund(
        convention_id=uuid.UUID(int=3), registration_id=uuid.UUID(int=2), refund_id=refund_id
    )
    with pytest.raises(Problem) as caught:
        command_of(notification_of(body_of(type="refund.succeeded", reference="re_1")))
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "invalid-notification"),
        (b"[]", "invalid-notification"),
        (b"\xff", "invalid-notification"),
        (b"[" * 10_000, "invalid-notification"),
        (body_of(type="charge.refunded"), "unknown-notification-type"),
        (body_of(type=None), "unknown-notification-type"),
        (body_of(amount_cents=-1), "invalid-notification"),
        (body_of(payment_id=""), "invalid-notification"),
        (body_of(order_id="1"), "invalid-notification"),
    ],
)
def test_what_is_not_a_notification_is_a_422(body: bytes, kind: str) -> None:
    with pytest.raises(Problem) as caught:
        notification_of(body)
    assert caught.value.status_code == 422
    assert caught.value.kind == kind


def test_one_notification_id_is_one_command_id() -> None:
    assert notification_command_id("evt_1") == notification_command_id("evt_1")
    assert notification_command_id("evt_1") != notification_command_id("evt_2")


def test_notifications_back_off_up_to_a_minute() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, MAX_ATTEMPTS)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert delays == sorted(delays)
    assert max(delays) == 60.0
