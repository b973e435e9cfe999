"""What the card processor does: takes payments, runs the attendee's card as told, pays
refunds, and writes each notification it owes its merchant in the same transaction as the
change it announces (the notifier delivers them).

Ids derive from the caller's idempotency key when there is one, so two retries racing with
the same key land on the same payment or refund; a key reused with another body is refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.simulators.payments import store

Outcome = Literal["succeed", "decline", "timeout", "late", "duplicate"]
REQUIRES_ACTION, PROCESSING, SUCCEEDED, FAILED = (
    "requires_action",
    "processing",
    "succeeded",
    "failed",
)
DEFAULT_LATE_SECONDS = 10.0


class Refusal(Exception):
    """A request the processor will not carry out: an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NewPayment:
    order_id: str
    registration_id: str
    convention_id: str
    amount_cents: int
    currency: str
    description: str
    notify_url: str

    def request_hash(self) -> str:
        return _hash(asdict(self))


@dataclass(frozen=True)
class NewRefund:
    payment_id: str
    amount_cents: int
    reference: str

    def request_hash(self) -> str:
        return _hash(asdict(self))


def _hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _derived_id(prefix: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"{prefix}_{secrets.token_hex(12)}"
    return f"{prefix}_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat()


def payment_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "payment_id": row.payment_id,
        "status": row.status,
        "order_id": row.order_id,
        "registration_id": row.registration_id,
        "convention_id": row.convention_id,
        "amount_cents": row.amount_cents,
        "refunded_cents": row.refunded_cents,
        "currency": row.currency,
        "description": row.description,
        "created_at": _iso(row.created_at),
    }


def refund_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "refund_id": row.refund_id,
        "status": row.status,
        "payment_id": row.payment_id,
        "amount_cents": row.amount_cents,
        "reference": row.reference,
        "created_at": _iso(row.created_at),
    }


class Processor:
    def __init__(self, engine: AsyncEngine, notified: Callable[[], None]) -> None:
        """`notified` is called after a commit that left a notification to deliver."""
        self._engine = engine
        self._notified = notified

    async def create_payment(self, new: NewPayment, idempotency_key: str | None) -> dict[str, Any]:
        payment_id = _derived_id("pay", idempotency_key)
        request_hash = new.request_hash()
        if idempotency_key is not None:
            known = await self._payment_by_key(idempotency_key)
            if known is not None:
                return _same_request(known, request_hash, payment_json)
        now = _now()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    store.payments.insert().values(
                        payment_id=payment_id,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        status=REQUIRES_ACTION,
                        created_at=now,
                        updated_at=now,
                        **asdict(new),
                    )
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            known = await self._payment_by_key(idempotency_key)
            if known is None:
                raise
            return _same_request(known, request_hash, payment_json)
        return await self.payment(payment_id)

    async def payment(self, payment_id: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = await _payment(conn, payment_id)
        return payment_json(row)

    async def checkout(
        self, payment_id: str, outcome: Outcome, delay_seconds: float | None
    ) -> dict[str, Any]:
        """The attendee's card: what it does decides the payment's status and which
        notifications the merchant will get, and when."""
        now = _now()
        async with self._engine.begin() as conn:
            row = await _payment(conn, payment_id, lock=True)
            if row.status != REQUIRES_ACTION:
                raise Refusal(
                    409, "payment_not_pending", f"payment {payment_id} is already {row.status}"
                )
            status = {"decline": FAILED, "timeout": PROCESSING}.get(outcome, SUCCEEDED)
            await conn.execute(
                update(store.payments)
                .where(store.payments.c.payment_id == payment_id)
                .values(status=status, outcome=outcome, updated_at=now)
            )
            kind = "payment.failed" if outcome == "decline" else "payment.succeeded"
            first = _payment_notification(row, kind)
            due = now
            if outcome == "late":
                due = now + timedelta(
                    seconds=DEFAULT_LATE_SECONDS if delay_seconds is None else delay_seconds
                )
            deliveries: list[dict[str, Any]] = []
            if outcome != "timeout":
                deliveries.append(first)
            if outcome == "duplicate":
                deliveries.append(first)
                deliveries.append(_payment_notification(row, kind))
            for body in deliveries:
                await _owe(conn, row.payment_id, row.notify_url, body, due)
        if deliveries:
            self._notified()
        return await self.payment(payment_id)

    async def refund(self, new: NewRefund, idempotency_key: str) -> dict[str, Any]:
        """Pay money of a succeeded payment back. The same key answers the same refund (and
        its notification is not sent again)."""
        request_hash = new.request_hash()
        known = await self._refund_by_key(idempotency_key)
        if known is not None:
            return _same_request(known, request_hash, refund_json)
        refund_id = _derived_id("re", idempotency_key)
        try:
            async with self._engine.begin() as conn:
                payment = await _payment(conn, new.payment_id, lock=True)
                if payment.status != SUCCEEDED:
                    raise Refusal(
                        409,
                        "payment_not_succeeded",
                        f"payment {new.payment_id} is {payment.status}: nothing to refund",
                    )
                left = payment.amount_cents - payment.refunded_cents
                if new.amount_cents > left:
                    raise Refusal(
                        422,
                        "amount_too_large",
                        f"at most {left} cents of payment {new.payment_id} can be refunded",
                    )
                now = _now()
                await conn.execute(
                    store.refunds.insert().values(
                        refund_id=refund_id,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        payment_id=new.payment_id,
                        amount_cents=new.amount_cents,
                        reference=new.reference,
                        status=SUCCEEDED,
                        created_at=now,
                    )
                )
                await conn.execute(
                    update(store.payments)
                    .where(store.payments.c.payment_id == new.payment_id)
                    .values(
                        refunded_cents=store.payments.c.refunded_cents + new.amount_cents,
                        updated_at=now,
                    )
                )
                body = {
                    **_payment_notification(payment, "refund.succeeded"),
                    "amount_cents": new.amount_cents,
                    "reference": new.reference,
                }
                await _owe(conn, payment.payment_id, payment.notify_url, body, now)
        except IntegrityError:
            known = await self._refund_by_key(idempotency_key)
            if known is None:
                raise
            return _same_request(known, request_hash, refund_json)
        self._notified()
        return await self.refund_of(refund_id)

    async def refund_of(self, refund_id: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(store.refunds).where(store.refunds.c.refund_id == refund_id)
                )
            ).first()
        if row is None:
            raise Refusal(404, "unknown_refund", f"no refund {refund_id}")
        return refund_json(row)

    async def deliveries(self, payment_id: str) -> list[dict[str, Any]]:
        """Every notification owed for a payment (and its refunds), in the order written."""
        n = store.notifications.c
        async with self._engine.connect() as conn:
            await _payment(conn, payment_id)
            rows = (
                await conn.execute(
                    select(store.notifications).where(n.payment_id == payment_id).order_by(n.id)
                )
            ).all()
        return [
            {
                "notification_id": row.notification_id,
                "type": row.type,
                "attempts": row.attempts,
                "last_status": row.last_status,
                "last_error": row.last_error,
                "due_at": _iso(row.due_at),
                "delivered_at": _iso(row.delivered_at),
                "gave_up_at": _iso(row.gave_up_at),
                "body": json.loads(row.body),
            }
            for row in rows
        ]

    async def _payment_by_key(self, key: str) -> Row[Any] | None:
        async with self._engine.connect() as conn:
            return (
                await conn.execute(
                    select(store.payments).where(store.payments.c.idempotency_key == key)
                )
            ).first()

    async def _refund_by_key(self, key: str) -> Row[Any] | None:
        async with self._engine.connect() as conn:
            return (
                await conn.execute(
                    select(store.refunds).where(store.refunds.c.idempotency_key == key)
                )
            ).first()


def _same_request(
    known: Row[Any], request_hash: str, view: Callable[[Row[Any]], dict[str, Any]]
) -> dict[str, Any]:
    if known.request_hash != request_hash:
        raise Refusal(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )
    return view(known)


async def _payment(conn: AsyncConnection, payment_id: str, *, lock: bool = False) -> Row[Any]:
    query = select(store.payments).where(store.payments.c.payment_id == payment_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise Refusal(404, "unknown_payment", f"no payment {payment_id}")
    return row


def _payment_notification(row: Row[Any], kind: str) -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "type": kind,
        "payment_id": row.payment_id,
        "order_id": row.order_id,
        "registration_id": row.registration_id,
        "convention_id": row.convention_id,
        "amount_cents": row.amount_cents,
        "currency": row.currency,
    }


async def _owe(
    conn: AsyncConnection, payment_id: str, url: str, body: dict[str, Any], due: datetime
) -> None:
    await conn.execute(
        store.notifications.insert().values(
            notification_id=body["id"],
            payment_id=payment_id,
            type=body["type"],
            url=url,
            body=json.dumps(body, separators=(",", ":")),
            due_at=due,
        )
    )
