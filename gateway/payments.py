"""Payments: starting a payment for an order, and the provider's notifications coming in.

A notification carries no session: its HMAC signature (`Butterfly-Signature`, made with the
shared webhook secret over the timestamp and the exact body) is its only credential, and a
signature older than five minutes is refused so a captured one cannot be replayed later. A
notification taken becomes a command whose id is derived from the notification's id, so the
provider's retries and duplicates are decided once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, post
from litestar.params import HeaderParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select

from consumers.payments.provider import (
    HttpPaymentProvider,
    PaymentRequest,
    ProviderRefused,
    ProviderUnavailable,
)
from gateway.accounts import may_see
from gateway.deps import Gateway, IdempotencyKey, command_id_for, correlation_id
from gateway.order_reads import PENDING_PAYMENT, until_shown
from gateway.problems import Problem
from projections.orders import tables as o
from schemas.catalogue import Cents, Currency
from schemas.orders import RecordPayment, RecordRefund
from schemas.registration import Command, RejectionReason
from schemas.registry import wrap
from schemas.topics import registration_key

NOTIFICATIONS_PATH = "/api/v1/payments/notifications"
SIGNATURE_HEADER = "Butterfly-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
NOTIFICATION_NAMESPACE = uuid.UUID("0b6f4f6e-5a47-4d0c-9d8e-3f2a7c1e9b52")
PROVIDER = "payment-provider"
RETRY_AFTER_SECONDS = 5

KNOWN_TYPES = ("payment.succeeded", "payment.failed", "refund.succeeded")

PaymentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


@dataclass
class PaymentDesk:
    """What the payment routes need: the provider, the secret its notifications are signed
    with, and the address it sends them to (empty: the one this gateway listens on)."""

    provider: HttpPaymentProvider
    webhook_secret: str
    public_url: str = ""

    async def start(self) -> None:
        await self.provider.start()

    async def close(self) -> None:
        await self.provider.close()


class Notification(BaseModel):
    """A provider notification as far as Butterfly reads it; fields it adds are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
    type: Literal["payment.succeeded", "payment.failed", "refund.succeeded"]
    payment_id: PaymentId
    order_id: uuid.UUID
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    amount_cents: Cents
    currency: Currency
    reference: Annotated[str, Field(max_length=200)] | None = None


class NotificationTaken(BaseModel):
    status: str = "accepted"
    command_id: uuid.UUID


class PaymentStarted(BaseModel):
    payment_id: str
    checkout_url: str
    amount_cents: int
    currency: str
    order_id: uuid.UUID


_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])

Signature = Annotated[
    str | None,
    HeaderParameter(
        name=SIGNATURE_HEADER,
        description='`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the '
        "webhook secret.",
        required=False,
    ),
]


def notification_command_id(notification_id: str) -> uuid.UUID:
    """One command per notification, however often the provider sends it."""
    return uuid.uuid5(NOTIFICATION_NAMESPACE, notification_id)


def check_signature(
    secret: str, header: str | None, body: bytes, now: float, tolerance: float
) -> None:
    """Raise a 401 unless `header` signs `body` with `secret` at a time within `tolerance`
    seconds of `now`."""
    if not header or len(header) > 1000:
        raise _unsigned("The notification carries no usable Butterfly-Signature header.")
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12 or not signatures:
        raise _unsigned("The Butterfly-Signature header is not t=<unix seconds>,v1=<hex>.")
    if abs(now - int(timestamp)) > tolerance:
        raise _unsigned("The signature is too old (or from the future) to be accepted.")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    digest = expected.hexdigest()
    if not any(hmac.compare_digest(digest, s) for s in signatures):
        raise _unsigned("The signature does not match the body.")


def _unsigned(detail: str) -> Problem:
    return Problem(401, "invalid-signature", "Notification not signed", detail)


def _unreadable(detail: str, **extra: Any) -> Problem:
    return Problem(422, "invalid-notification", "Notification not understood", detail, **extra)


def notification_of(body: bytes) -> Notification:
    """The notification in a signed body, or a 422 saying what is wrong with it."""
    try:
        raw = _OBJECT.validate_json(body)
    except ValidationError:
        raise _unreadable("The body is not a JSON object.") from None
    kind = raw.get("type")
    if kind not in KNOWN_TYPES:
        shown = kind if isinstance(kind, str) and len(kind) <= 100 else None
        raise Problem(
            422,
            "unknown-notification-type",
            "Notification type not handled",
            f"Handled types: {', '.join(KNOWN_TYPES)}.",
            notification_type=shown,
        )
    try:
        return Notification.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise _unreadable("Some fields are missing or invalid.", errors=errors) from None


def command_of(notification: Notification) -> Command:
    if notification.type == "refund.succeeded":
        try:
            refund_id = uuid.UUID(notification.reference or "")
        except ValueError:
            raise _unreadable(
                "A refund notification's reference must be the refund id it was asked for.",
                errors=[{"field": "reference", "message": "not a refund id"}],
            ) from None
        return RecordRefund(
            convention_id=notification.convention_id,
            registration_id=notification.registration_id,
            refund_id=refund_id,
        )
    return RecordPayment(
        convention_id=notification.convention_id,
        registration_id=notification.registration_id,
        order_id=notification.order_id,
        payment_id=notification.payment_id,
        amount_cents=notification.amount_cents,
        currency=notification.currency,
        succeeded=notification.type == "payment.succeeded",
    )


def _desk(payments: PaymentDesk | None) -> PaymentDesk:
    if payments is None:
        raise Problem(
            503,
            "payments-unavailable",
            "Payments are not set up",
            "This gateway has no payment provider.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return payments


def own_base_url(request: Request[Any, Any, Any], public_url: str) -> str:
    """Where the provider reaches this gateway: the configured public address, else the
    address this process listens on. Never the request's Host header, which the caller
    chooses (and would then receive the notifications)."""
    if public_url:
        return public_url.rstrip("/")
    server = request.scope.get("server")
    if server and server[1] is not None:
        host = str(server[0])
        host = f"[{host}]" if ":" in host else host
        return f"{request.scope.get('scheme', 'http')}://{host}:{server[1]}"
    return str(request.base_url).rstrip("/")


class PaymentController(Controller):
    tags = ["payments"]

    @post(
        NOTIFICATIONS_PATH,
        operation_id="paymentNotification",
        status_code=HTTP_202_ACCEPTED,
        summary="The payment provider's notification of a payment or refund",
        description="Authenticated by its `Butterfly-Signature` only (no session): 401 for "
        "a missing, wrong or older than five minutes signature, 422 for a body that is not "
        "a notification this API handles (`payment.succeeded`, `payment.failed`, "
        "`refund.succeeded`). 202 once the notification is recorded as a command; the same "
        "notification again is the same command.",
    )
    async def notification(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        payments: PaymentDesk | None,
        signature: Signature = None,
    ) -> Response[NotificationTaken]:
        desk = _desk(payments)
        body = await request.body()
        check_signature(
            desk.webhook_secret, signature, body, time.time(), SIGNATURE_TOLERANCE_SECONDS
        )
        notification = notification_of(body)
        command = command_of(notification)
        command_id = notification_command_id(notification.id)
        envelope = wrap(
            command,
            message_id=command_id,
            occurred_at=datetime.now(UTC),
            correlation_id=correlation_id(request),
            causation_id=None,
            key=registration_key(command.convention_id),
            actor=PROVIDER,
        )
        await gateway.publisher.publish(gateway.topics.registration_commands, envelope)
        return Response(NotificationTaken(command_id=command_id), status_code=HTTP_202_ACCEPTED)

    @post(
        "/api/v1/registrations/{registration_id:uuid}/orders/{order_id:uuid}/payments",
        operation_id="startPayment",
        status_code=HTTP_201_CREATED,
        summary="Start paying an order: a payment at the provider, and where to pay it",
        description="For the registration's owner. 409 `not_pending_payment` unless the "
        "order is waiting for payment with its hold still running; 503 with Retry-After "
        "when the provider does not answer. Each call starts a new payment; the same "
        "Idempotency-Key answers the same payment while the order's total is unchanged.",
    )
    async def start_payment(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        payments: PaymentDesk | None,
        registration_id: uuid.UUID,
        order_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PaymentStarted]:
        desk = _desk(payments)
        known = await gateway.reads.registration(registration_id)
        if known is None or not await may_see(request, gateway, known[0]):
            raise Problem(
                404,
                "registration-not-found",
                "Registration not found",
                f"There is no registration {registration_id}.",
            )
        order = await _order(gateway, registration_id, order_id, wait=known[0].has_order)
        now = datetime.now(UTC).replace(tzinfo=None)
        if (
            order.status != PENDING_PAYMENT
            or (order.hold_until is not None and order.hold_until <= now)
            or order.total_cents <= 0
        ):
            status = "expiring" if order.status == PENDING_PAYMENT else order.status
            raise Problem(
                409,
                "order-not-payable",
                "Order cannot be paid",
                f"The order is {status}: only an order waiting for payment can be paid.",
                reason=RejectionReason.NOT_PENDING_PAYMENT.value,
                order_id=str(order_id),
            )
        scope = f"payment:{order_id}:{order.total_cents}:{order.currency}"
        key = str(command_id_for(scope, idempotency_key))
        convention = await gateway.reads.convention(known[0].convention_id)
        try:
            made = await desk.provider.create_payment(
                PaymentRequest(
                    order_id=order_id,
                    registration_id=registration_id,
                    convention_id=known[0].convention_id,
                    amount_cents=int(order.total_cents),
                    currency=order.currency,
                    description=f"{convention.name if convention else 'Convention'}: order "
                    f"{order_id}",
                    notify_url=own_base_url(request, desk.public_url) + NOTIFICATIONS_PATH,
                ),
                idempotency_key=key,
            )
        except ProviderUnavailable as exc:
            retry_after = max(1, round(exc.retry_after or RETRY_AFTER_SECONDS))
            raise Problem(
                503,
                "payment-provider-unavailable",
                "Payment provider unavailable",
                "The payment provider did not answer; nothing was charged. Try again shortly.",
                headers={"Retry-After": str(retry_after)},
            ) from exc
        except ProviderRefused as exc:
            raise Problem(
                502,
                "payment-provider-refused",
                "Payment provider refused",
                f"The payment provider refused the payment ({exc.code}).",
            ) from exc
        return Response(
            PaymentStarted(
                payment_id=made.payment_id,
                checkout_url=made.checkout_url,
                amount_cents=int(order.total_cents),
                currency=order.currency,
                order_id=order_id,
            ),
            status_code=HTTP_201_CREATED,
        )


async def _order(
    gateway: Gateway, registration_id: uuid.UUID, order_id: uuid.UUID, *, wait: bool
) -> Any:
    """The order as the orders read model shows it; for a registration whose decision
    recorded an order, waited for a moment: the registration's answer comes from its
    decision, and the orders projector may not have shown it yet."""
    c = o.orders.c
    query = select(c.status, c.total_cents, c.currency, c.hold_until).where(
        c.order_id == str(order_id), c.registration_id == str(registration_id)
    )

    async def probe() -> Any:
        async with gateway.read_engine.connect() as conn:
            return (await conn.execute(query)).first()

    row = await until_shown(probe, lambda found: found is not None or not wait)
    if row is None:
        raise Problem(
            404,
            "order-not-found",
            "Order not found",
            f"Registration {registration_id} has no order {order_id}.",
        )
    return row
