"""Delivering notifications to the merchant: signed, retried with backoff until a 2xx, for a
bounded number of attempts, from the provider's own table, so a notification owed when the
sim stops is delivered after it starts again.

The signature is `Butterfly-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the shared secret>`, made afresh on every attempt, like Stripe's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.simulators.payments import store

log = structlog.get_logger("payments.notifier")

SIGNATURE_HEADER = "Butterfly-Signature"
MAX_ATTEMPTS = 10
"""With the backoff below, a notification is tried for about three minutes."""
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 60.0
BATCH = 100
CONCURRENCY = 16
IDLE_POLL_SECONDS = 0.2
CALL_TIMEOUT_SECONDS = 5.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def retry_delay(attempts: int) -> float:
    """How long after its `attempts`-th failed attempt a notification is tried again."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(0, attempts - 1))


@dataclass
class Chaos:
    """Misbehaviour on demand: notifications held back while frozen (delivered once thawed),
    API requests answered 503 without effect."""

    freeze_notifications: bool = False
    fail_requests: bool = False

    def as_json(self) -> dict[str, bool]:
        return {
            "freeze_notifications": self.freeze_notifications,
            "fail_requests": self.fail_requests,
        }


class Notifier:
    def __init__(self, engine: AsyncEngine, secret: str, chaos: Chaos) -> None:
        self._engine = engine
        self._secret = secret
        self._chaos = chaos
        self._wake = asyncio.Event()
        self._stopping = False
        self._client: httpx.AsyncClient | None = None
        self._limit = asyncio.Semaphore(CONCURRENCY)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(CALL_TIMEOUT_SECONDS), follow_redirects=False
        )
        try:
            while not self._stopping:
                self._wake.clear()
                busy = False
                if not self._chaos.freeze_notifications:
                    try:
                        busy = await self.deliver_due()
                    except (SQLAlchemyError, OSError) as error:
                        log.warning("payment_notifications_failed_retrying", error=repr(error))
                    except Exception:
                        log.exception("payment_notifications_pass_failed")
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_POLL_SECONDS):
                            await self._wake.wait()
        finally:
            await self._client.aclose()

    async def deliver_due(self) -> bool:
        """One pass over the notifications due; True if a full batch was due (more may be)."""
        n = store.notifications.c
        now = datetime.now(UTC).replace(tzinfo=None)
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(n.id, n.notification_id, n.url, n.body, n.attempts)
                    .where(n.delivered_at.is_(None), n.gave_up_at.is_(None), n.due_at <= now)
                    .order_by(n.id)
                    .limit(BATCH)
                )
            ).all()
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows) == BATCH

    async def _deliver(self, row: Any) -> None:
        assert self._client is not None
        body = row.body.encode()
        status: int | None = None
        error: str | None = None
        async with self._limit:
            try:
                answer = await self._client.post(
                    row.url,
                    content=body,
                    headers={
                        "content-type": "application/json",
                        SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
                        "user-agent": "butterfly-payment-sim",
                    },
                )
                status = answer.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = row.attempts + 1
        now = datetime.now(UTC).replace(tzinfo=None)
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if status is not None and 200 <= status < 300:
            values["delivered_at"] = now
            log.info(
                "payment_notification_delivered",
                notification_id=row.notification_id,
                attempts=attempts,
                status=status,
            )
        elif attempts >= MAX_ATTEMPTS:
            values["gave_up_at"] = now
            log.warning(
                "payment_notification_given_up",
                notification_id=row.notification_id,
                attempts=attempts,
                status=status,
                error=error,
            )
        else:
            values["due_at"] = now + timedelta(seconds=retry_delay(attempts))
            log.info(
                "payment_notification_retry",
                notification_id=row.notification_id,
                attempts=attempts,
                status=status,
                error=error,
            )
        async with self._engine.begin() as conn:
            await conn.execute(
                update(store.notifications)
                .where(store.notifications.c.id == row.id)
                .values(**values)
            )
