"""The provider's HTTP API: `/v1` for merchants (answered 503 while `fail_requests` is on),
`/checkout/{id}` for the attendee's browser, `/chaos` for tests, `/health`.

Errors are JSON `{"error": {"code", "message"}}` (validation errors add `fields`), the way
card processors answer, never a stack trace.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import structlog
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.settings import Settings
from infra.simulators.payments.notifier import Chaos, Notifier
from infra.simulators.payments.processor import (
    REQUIRES_ACTION,
    NewPayment,
    NewRefund,
    Outcome,
    Processor,
    Refusal,
)
from infra.simulators.payments.store import open_store
from infra.simulators.serving import serve

log = structlog.get_logger("payments")

Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
PAYMENT_ID = re.compile(r"pay_[0-9a-f]{24}")
REFUND_ID = re.compile(r"re_[0-9a-f]{24}")
Printable = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Ident
    registration_id: Ident
    convention_id: Ident
    amount_cents: Annotated[int, Field(ge=1, le=100_000_000)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    description: Printable = ""
    notify_url: Annotated[HttpUrl, Field(max_length=2000)]


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    delay_seconds: Annotated[float, Field(ge=0, le=3600)] | None = None


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: Ident
    amount_cents: Annotated[int, Field(ge=1, le=100_000_000)]
    reference: Annotated[Printable, StringConstraints(min_length=1, max_length=200)]


class ChaosBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    freeze_notifications: bool | None = None
    fail_requests: bool | None = None


@dataclass
class Provider:
    """The running provider: built on startup, closed on shutdown."""

    settings: Settings
    chaos: Chaos
    engine: AsyncEngine | None = None
    processor: Processor | None = None
    notifier: Notifier | None = None
    notifying: asyncio.Task[None] | None = None

    @property
    def open_processor(self) -> Processor:
        assert self.processor is not None, "the provider has not started"
        return self.processor

    async def start(self) -> None:
        self.engine = await open_store(self.settings)
        self.notifier = Notifier(self.engine, self.settings.payment_webhook_secret, self.chaos)
        self.processor = Processor(self.engine, self.notifier.wake)
        self.notifying = asyncio.create_task(self.notifier.run())
        log.info("payment_sim_started")

    async def stop(self) -> None:
        if self.notifier is not None and self.notifying is not None:
            self.notifier.stop()
            await asyncio.gather(self.notifying, return_exceptions=True)
        if self.engine is not None:
            await self.engine.dispose()


M = TypeVar("M", bound=BaseModel)


async def _parse(request: Request[Any, Any, Any], model: type[M]) -> M:
    """The JSON body as `model`: 400 if it is not JSON, 422 naming the fields otherwise."""
    try:
        return model.model_validate_json(await request.body() or b"null")
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise Refusal(400, "malformed_json", "the body is not JSON") from None
        raise


def _json(content: Any, status: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status, media_type=MediaType.JSON)


def _idempotency_key(request: Request[Any, Any, Any], *, required: bool) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None and not required:
        return None
    key = (key or "").strip()
    if not key or len(key) > 200 or not key.isprintable():
        raise Refusal(
            400, "idempotency_key_required", "send an Idempotency-Key of 1-200 printable chars"
        )
    return key


def _payment_id(payment_id: str) -> str:
    if not PAYMENT_ID.fullmatch(payment_id):
        raise Refusal(404, "unknown_payment", "no such payment")
    return payment_id


@post("/payments", status_code=201)
async def create_payment(provider: Provider, request: Request[Any, Any, Any]) -> Response[Any]:
    key = _idempotency_key(request, required=False)
    body = await _parse(request, PaymentBody)
    payment = await provider.open_processor.create_payment(
        NewPayment(
            order_id=body.order_id,
            registration_id=body.registration_id,
            convention_id=body.convention_id,
            amount_cents=body.amount_cents,
            currency=body.currency,
            description=body.description,
            notify_url=str(body.notify_url),
        ),
        key,
    )
    checkout = f"{str(request.base_url).rstrip('/')}/checkout/{payment['payment_id']}"
    return _json({**payment, "checkout_url": checkout}, 201)


@get("/payments/{payment_id:str}")
async def show_payment(provider: Provider, payment_id: str) -> Response[Any]:
    return _json(await provider.open_processor.payment(_payment_id(payment_id)))


@get("/payments/{payment_id:str}/notifications")
async def show_notifications(provider: Provider, payment_id: str) -> Response[Any]:
    """What the merchant was (or is still to be) told about a payment: for tests."""
    found = await provider.open_processor.deliveries(_payment_id(payment_id))
    return _json({"notifications": found})


@post("/payments/{payment_id:str}/checkout", status_code=200)
async def checkout(
    provider: Provider, request: Request[Any, Any, Any], payment_id: str
) -> Response[Any]:
    """JSON from tests; a form post from the checkout page, answered by going back to it."""
    payment_id = _payment_id(payment_id)
    from_page = request.content_type[0] == "application/x-www-form-urlencoded"
    if from_page:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str) and v != ""}
        body = CheckoutBody.model_validate(fields)
    else:
        body = await _parse(request, CheckoutBody)
    try:
        done = await provider.open_processor.checkout(payment_id, body.outcome, body.delay_seconds)
    except Refusal as refusal:
        if not (from_page and refusal.status == 409):
            raise
    if from_page:
        return Response(
            content="",
            status_code=303,
            headers={"Location": f"/checkout/{payment_id}"},
            media_type=MediaType.TEXT,
        )
    return _json(done)


@post("/refunds", status_code=201)
async def create_refund(provider: Provider, request: Request[Any, Any, Any]) -> Response[Any]:
    key = _idempotency_key(request, required=True)
    assert key is not None
    body = await _parse(request, RefundBody)
    refund = await provider.open_processor.refund(
        NewRefund(body.payment_id, body.amount_cents, body.reference), key
    )
    return _json(refund, 201)


@get("/refunds/{refund_id:str}")
async def show_refund(provider: Provider, refund_id: str) -> Response[Any]:
    if not REFUND_ID.fullmatch(refund_id):
        raise Refusal(404, "unknown_refund", "no such refund")
    return _json(await provider.open_processor.refund_of(refund_id))


OUTCOME_LABELS: tuple[tuple[Outcome, str], ...] = (
    ("succeed", "Pay"),
    ("decline", "Decline the card"),
    ("timeout", "Never answer"),
    ("late", "Pay, answer late"),
    ("duplicate", "Pay, notify twice"),
)


@get("/checkout/{payment_id:str}", media_type=MediaType.HTML)
async def checkout_page(provider: Provider, payment_id: str) -> Response[str]:
    """The attendee's side: what is being paid, and a button per way the card can go."""
    payment = await provider.open_processor.payment(_payment_id(payment_id))
    amount = f"{payment['amount_cents'] / 100:,.2f} {payment['currency']}"
    text = html.escape
    if payment["status"] == REQUIRES_ACTION:
        buttons = "\n".join(
            f'<button type="submit" name="outcome" value="{value}">{label}</button>'
            for value, label in OUTCOME_LABELS
        )
        action = f"/v1/payments/{text(payment_id)}/checkout"
        body = f"""<form method="post" action="{action}">
<fieldset>
<legend>How should the card answer?</legend>
<p><label for="delay">Delay of a late answer, in seconds</label>
<input id="delay" name="delay_seconds" type="number" min="0" max="3600" value="10"></p>
{buttons}
</fieldset>
</form>"""
    else:
        body = f"<p>This payment is {text(payment['status'])}; there is nothing left to do.</p>"
    page = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout: {text(amount)}</title></head>
<body>
<main>
<h1>Pay {text(amount)}</h1>
<p>{text(payment["description"]) or "Payment"}</p>
<p role="status">Status: {text(payment["status"])}</p>
{body}
</main>
</body>
</html>"""
    return Response(content=page, media_type=MediaType.HTML)


@get("/chaos")
async def show_chaos(provider: Provider) -> Response[Any]:
    return _json(provider.chaos.as_json())


@post("/chaos", status_code=200)
async def set_chaos(provider: Provider, request: Request[Any, Any, Any]) -> Response[Any]:
    changes = (await _parse(request, ChaosBody)).model_dump(exclude_none=True)
    for name, value in changes.items():
        setattr(provider.chaos, name, value)
    if provider.notifier is not None:
        provider.notifier.wake()
    log.info("payment_chaos_set", **provider.chaos.as_json())
    return _json(provider.chaos.as_json())


@get("/health")
async def health() -> Response[Any]:
    return _json({"status": "ok"})


def _failing(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """While `fail_requests` is on, every merchant request is answered 503, doing nothing."""
    provider: Provider = request.app.state.provider
    if not provider.chaos.fail_requests:
        return None
    response = _error(503, "unavailable", "the provider is unavailable, try again")
    response.headers["Retry-After"] = "1"
    return response


def _error(status: int, code: str, message: str, **extra: Any) -> Response[Any]:
    return _json({"error": {"code": code, "message": message, **extra}}, status)


def _refused(request: Request[Any, Any, Any], error: Refusal) -> Response[Any]:
    return _error(error.status, error.code, error.message)


def _invalid(request: Request[Any, Any, Any], error: ValidationError) -> Response[Any]:
    fields = [
        {"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
        for e in error.errors(include_url=False, include_input=False)
    ]
    return _error(422, "invalid_request", "the request is not valid", fields=fields)


def _http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        error.status_code, "bad_request" if error.status_code < 500 else "unavailable"
    )
    return _error(error.status_code, code, str(error.detail))


def _crashed(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("payment_request_failed", path=request.url.path)
    return _error(500, "internal_error", "the provider failed to answer")


ExceptionHandler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def create_payment_app(settings: Settings) -> Litestar:
    provider = Provider(settings, Chaos())
    handlers: dict[type[Exception], ExceptionHandler] = {
        Refusal: _refused,
        ValidationError: _invalid,
        HTTPException: _http_error,
        Exception: _crashed,
    }
    app = Litestar(
        logging_config=None,  # Litestar's own would take the root logger over from infra.logging
        route_handlers=[
            Router(
                "/v1",
                route_handlers=[
                    create_payment,
                    show_payment,
                    show_notifications,
                    checkout,
                    create_refund,
                    show_refund,
                ],
                before_request=_failing,
            ),
            checkout_page,
            show_chaos,
            set_chaos,
            health,
        ],
        dependencies={"provider": Provide(lambda: provider, use_cache=True, sync_to_thread=False)},
        exception_handlers=handlers,  # type: ignore[arg-type]
        on_startup=[provider.start],
        on_shutdown=[provider.stop],
        request_max_body_size=64 * 1024,
        openapi_config=None,
        debug=False,
    )
    app.state.provider = provider
    return app


def run_payment_sim(settings: Settings, port: int) -> None:
    """Serve the provider until SIGINT or SIGTERM."""
    log.info("payment_sim_listening", url=f"http://{settings.http_host}:{port}/v1")
    serve(create_payment_app(settings), settings, port)
