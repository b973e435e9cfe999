"""The payment provider port: take a payment for an order, pay a refund back.

The provider speaks its own JSON (errors as `{"error": {"code", "message"}}`); this module is
the one place that knows it, and answers in typed values. A failure is either
`ProviderUnavailable` (no answer, or one that says "try again": retry with the same
idempotency key) or `ProviderRefused` (the provider answered and said no: retrying changes
nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class ProviderError(Exception):
    """Any failed call to the payment provider."""


class ProviderUnavailable(ProviderError):
    """No usable answer: a connection error, a timeout, a 5xx or 429, or a body that is not
    what the API promises. The call may or may not have taken effect."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRefused(ProviderError):
    """The provider answered with a 4xx: it will not do this, however often it is asked."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PaymentRequest:
    order_id: uuid.UUID
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    amount_cents: int
    currency: str
    description: str
    notify_url: str
    """Where the provider sends its notifications about this payment."""


@dataclass(frozen=True)
class CreatedPayment:
    payment_id: str
    status: str
    checkout_url: str
    """Where the attendee pays."""


@dataclass(frozen=True)
class RefundRequest:
    payment_id: str
    amount_cents: int
    reference: str
    """Ours (the refund id), sent back in the provider's notification."""


@dataclass(frozen=True)
class ProviderRefund:
    refund_id: str
    status: str
    payment_id: str
    amount_cents: int
    reference: str


class PaymentProvider(Protocol):
    async def create_payment(
        self, payment: PaymentRequest, *, idempotency_key: str
    ) -> CreatedPayment:
        """A payment the attendee can pay at its `checkout_url`; the same key answers the
        same payment."""
        ...

    async def refund(self, refund: RefundRequest, *, idempotency_key: str) -> ProviderRefund:
        """Pay money back; the same key answers the same refund, paid once."""
        ...


class _Payment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payment_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    status: str
    checkout_url: str = Field(min_length=1, max_length=2000)


class _Refund(BaseModel):
    model_config = ConfigDict(extra="ignore")

    refund_id: str = Field(min_length=1, max_length=64)
    status: str
    payment_id: str
    amount_cents: int
    reference: str


_ERROR_BODY: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


class HttpPaymentProvider:
    """The provider's HTTP API behind `PaymentProvider`; one connection pool per process."""

    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            headers={"accept": "application/json"},
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def create_payment(
        self, payment: PaymentRequest, *, idempotency_key: str
    ) -> CreatedPayment:
        body = {
            "order_id": str(payment.order_id),
            "registration_id": str(payment.registration_id),
            "convention_id": str(payment.convention_id),
            "amount_cents": payment.amount_cents,
            "currency": payment.currency,
            "description": payment.description,
            "notify_url": payment.notify_url,
        }

        def parse(answer: Any) -> CreatedPayment:
            made = _Payment.model_validate(answer)
            return CreatedPayment(made.payment_id, made.status, made.checkout_url)

        return await self._call("/v1/payments", body, idempotency_key, parse)

    async def refund(self, refund: RefundRequest, *, idempotency_key: str) -> ProviderRefund:
        body = {
            "payment_id": refund.payment_id,
            "amount_cents": refund.amount_cents,
            "reference": refund.reference,
        }

        def parse(answer: Any) -> ProviderRefund:
            made = _Refund.model_validate(answer)
            return ProviderRefund(
                made.refund_id, made.status, made.payment_id, made.amount_cents, made.reference
            )

        return await self._call("/v1/refunds", body, idempotency_key, parse)

    async def _call(
        self,
        path: str,
        body: Mapping[str, Any],
        idempotency_key: str,
        parse: Callable[[Any], T],
    ) -> T:
        if self._client is None:
            raise RuntimeError("the payment provider client has not been started")
        try:
            response = await self._client.post(
                path, json=body, headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"POST {path}: {type(exc).__name__} {exc}") from exc
        status = response.status_code
        if 400 <= status < 500 and status != 429:
            raise ProviderRefused(status, *_error_of(response))
        if not 200 <= status < 300:
            code, message = _error_of(response)
            raise ProviderUnavailable(
                f"POST {path}: {status} {code}: {message}", _retry_after(response)
            )
        try:
            return parse(response.json())
        except (ValueError, TypeError, ValidationError) as exc:
            log.warning("payment_provider_answer_malformed", path=path, status=status)
            raise ProviderUnavailable(f"POST {path}: malformed answer ({exc})") from exc


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The provider's `{error: {code, message}}`, or something readable when it is not."""
    try:
        error = _ERROR_BODY.validate_json(response.content).get("error")
    except ValidationError:
        error = None
    if not isinstance(error, dict):
        return f"http_{response.status_code}", response.text[:200]
    return str(error.get("code", f"http_{response.status_code}")), str(error.get("message", ""))
