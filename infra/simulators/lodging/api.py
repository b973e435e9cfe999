"""The bureau's HTTP API: `/partner/v1` for its clients (behind the fault injection),
`/partner/admin` for tests to set faults and act as the hotel, `/partner/health`.

Errors are JSON `{"code", "message"}` (validation errors add `fields`), never a stack trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, Literal, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from litestar import Litestar, Request, Response, Router, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.settings import Settings
from infra.simulators.lodging import events
from infra.simulators.lodging.bureau import Bureau, Refusal, Stay, StayChanges
from infra.simulators.lodging.faults import FaultInjection, Faults, FaultUpdate
from infra.simulators.lodging.store import open_store
from infra.simulators.serving import serve

log = structlog.get_logger("partner")

MAX_RANGE_DAYS = 60
ACK_PATTERN = re.compile(r"HB-[A-Z2-7]{8}")

CONVENTION_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ConventionId = Annotated[str, StringConstraints(pattern=CONVENTION_ID)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,16}$")]
Text = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Guests = Annotated[list[Text], Field(min_length=1, max_length=4)]


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    convention_id: ConventionId
    hotel: Code
    room_type: Code
    check_in: date
    check_out: date
    guests: Guests
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ModifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room_type: Code | None = None
    check_in: date | None = None
    check_out: date | None = None
    guests: Guests | None = None

    def changes(self) -> StayChanges:
        return StayChanges(
            room_type=self.room_type,
            check_in=self.check_in,
            check_out=self.check_out,
            guests=None if self.guests is None else tuple(self.guests),
        )


class HotelCancels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["cancel"]
    ack: str


class HotelModifies(ModifyRequest):
    action: Literal["modify"]
    ack: str


class HotelConfirmsWaitlisted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["confirm_waitlisted"]
    ack: str


class HotelChangesBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["change_block"]
    convention_id: ConventionId
    hotel: Code
    room_type: Code
    night: date
    size: Annotated[int, Field(ge=0, le=10_000)] | None = None
    rate_cents: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


HotelAction: TypeAdapter[
    HotelCancels | HotelModifies | HotelConfirmsWaitlisted | HotelChangesBlock
] = TypeAdapter(
    Annotated[
        HotelCancels | HotelModifies | HotelConfirmsWaitlisted | HotelChangesBlock,
        Field(discriminator="action"),
    ]
)


@dataclass
class Partner:
    """The running bureau: built on startup, closed on shutdown."""

    settings: Settings
    faults: Faults
    engine: AsyncEngine | None = None
    bureau: Bureau | None = None
    publisher: events.OutboxPublisher | None = None
    publishing: asyncio.Task[None] | None = None

    @property
    def open_bureau(self) -> Bureau:
        assert self.bureau is not None, "the partner has not started"
        return self.bureau

    async def start(self) -> None:
        settings = self.settings
        topic = events.topic_name(settings.topic_prefix)
        await events.ensure_topic(settings.kafka_bootstrap_servers, topic, settings.partitions)
        self.engine = await open_store(settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=15000,
        )
        await producer.start()
        self.publisher = events.OutboxPublisher(self.engine, producer, topic, self.faults)
        self.bureau = Bureau(self.engine, self.publisher.wake)
        self.publishing = asyncio.create_task(self.publisher.run())
        log.info("partner_sim_started", topic=topic, faults=self.faults.as_json())

    async def stop(self) -> None:
        if self.publisher is not None and self.publishing is not None:
            self.publisher.stop()
            await asyncio.gather(self.publishing, return_exceptions=True)
            await self.publisher.producer.stop()
        if self.engine is not None:
            await self.engine.dispose()


M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


async def _parse(request: Request[Any, Any, Any], model: type[M]) -> M:
    return _validated(TypeAdapter(model), await request.body())


def _validated(adapter: TypeAdapter[T], body: bytes) -> T:
    """`body` as `adapter`'s type: 400 if it is not JSON, 422 naming the fields otherwise."""
    try:
        return adapter.validate_json(body or b"null")
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise Refusal(400, "malformed_json", "the body is not JSON") from None
        raise


def _json(content: Any, status: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status, media_type="application/json")


def _ack(ack: str) -> str:
    if not ACK_PATTERN.fullmatch(ack):
        raise Refusal(404, "unknown_reservation", f"no reservation {ack}")
    return ack


def _query_date(request: Request[Any, Any, Any], name: str) -> date:
    raw = request.query_params.get(name)
    if raw is None:
        raise Refusal(422, "invalid_request", f"query parameter {name}=YYYY-MM-DD is required")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Refusal(422, "invalid_request", f"{name} must be a date, YYYY-MM-DD") from None


@get("/conventions/{convention_id:str}/hotels")
async def list_hotels(
    partner: Partner, request: Request[Any, Any, Any], convention_id: str
) -> Response[Any]:
    if not re.fullmatch(CONVENTION_ID, convention_id):
        raise Refusal(422, "invalid_request", "convention_id: letters, digits, - and _ only")
    first, last = _query_date(request, "from"), _query_date(request, "to")
    if last < first or last - first > timedelta(days=MAX_RANGE_DAYS):
        raise Refusal(
            422, "invalid_request", f"from must not be after to, at most {MAX_RANGE_DAYS} days"
        )
    return _json(await partner.open_bureau.hotels(convention_id, first, last))


@post("/reservations")
async def hold(partner: Partner, request: Request[Any, Any, Any]) -> Response[Any]:
    key = request.headers.get("idempotency-key", "").strip()
    if not key or len(key) > 200:
        raise Refusal(400, "idempotency_key_required", "send an Idempotency-Key (1-200 chars)")
    body = await _parse(request, HoldRequest)
    stay = Stay(body.hotel, body.room_type, body.check_in, body.check_out, tuple(body.guests))
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()

    async def attempt() -> tuple[dict[str, Any], bool]:
        return await partner.open_bureau.hold(
            idempotency_key=key,
            request_hash=request_hash,
            convention_id=body.convention_id,
            reference=body.reference,
            stay=stay,
        )

    try:
        made, _ = await attempt()
    except IntegrityError:
        made, _ = await attempt()  # the same key raced in for another convention
    return _json(made, 201)


@get("/reservations")
async def list_reservations(partner: Partner, request: Request[Any, Any, Any]) -> Response[Any]:
    convention_id = request.query_params.get("convention_id")
    if not convention_id:
        raise Refusal(422, "invalid_request", "query parameter convention_id is required")
    reference = request.query_params.get("reference")
    found = await partner.open_bureau.reservations(convention_id, reference=reference)
    return _json({"reservations": found})


@get("/reservations/{ack:str}")
async def show_reservation(partner: Partner, ack: str) -> Response[Any]:
    return _json(await partner.open_bureau.reservation(_ack(ack)))


@post("/reservations/{ack:str}/confirm", status_code=200)
async def confirm(partner: Partner, ack: str) -> Response[Any]:
    return _json(await partner.open_bureau.confirm(_ack(ack)))


@post("/reservations/{ack:str}/modify", status_code=200)
async def modify(partner: Partner, request: Request[Any, Any, Any], ack: str) -> Response[Any]:
    changes = (await _parse(request, ModifyRequest)).changes()
    return _json(await partner.open_bureau.modify(_ack(ack), changes, by="guest"))


@post("/reservations/{ack:str}/cancel", status_code=200)
async def cancel(partner: Partner, ack: str) -> Response[Any]:
    return _json(await partner.open_bureau.cancel(_ack(ack), by="guest"))


@get("/faults")
async def show_faults(partner: Partner) -> Response[Any]:
    return _json(partner.faults.as_json())


@post("/faults", status_code=200)
async def set_faults(partner: Partner, request: Request[Any, Any, Any]) -> Response[Any]:
    partner.faults.update(await _parse(request, FaultUpdate))
    log.info("partner_faults_set", faults=partner.faults.as_json())
    return _json(partner.faults.as_json())


@post("/hotel-actions", status_code=200)
async def hotel_action(partner: Partner, request: Request[Any, Any, Any]) -> Response[Any]:
    """The hotel acting on its own; every action that changes something emits its event."""
    action = _validated(HotelAction, await request.body())
    bureau = partner.open_bureau
    if isinstance(action, HotelChangesBlock):
        return _json(
            await bureau.change_block(
                action.convention_id,
                action.hotel,
                action.room_type,
                action.night,
                size=action.size,
                rate_cents=action.rate_cents,
            )
        )
    ack = _ack(action.ack)
    if isinstance(action, HotelCancels):
        return _json(await bureau.cancel(ack, by="hotel"))
    if isinstance(action, HotelModifies):
        return _json(await bureau.modify(ack, action.changes(), by="hotel"))
    return _json(await bureau.confirm_waitlisted(ack))


@get("/partner/health")
async def health() -> Response[Any]:
    return _json({"status": "ok"})


def _refused(request: Request[Any, Any, Any], error: Refusal) -> Response[Any]:
    return _json({"code": error.code, "message": error.message}, error.status)


def _invalid(request: Request[Any, Any, Any], error: ValidationError) -> Response[Any]:
    fields = [
        {"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
        for e in error.errors(include_url=False, include_input=False)
    ]
    return _json(
        {"code": "invalid_request", "message": "the request is not valid", "fields": fields}, 422
    )


def _http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        error.status_code, "bad_request" if error.status_code < 500 else "unavailable"
    )
    return _json({"code": code, "message": str(error.detail)}, error.status_code)


def _crashed(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("partner_request_failed", path=request.url.path)
    return _json({"code": "internal_error", "message": "the bureau failed to answer"}, 500)


ExceptionHandler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def create_partner_app(settings: Settings, faults: Faults | None = None) -> Litestar:
    partner = Partner(settings, faults or Faults.from_settings(settings))
    provide: dict[str, Provide] = {
        "partner": Provide(lambda: partner, use_cache=True, sync_to_thread=False)
    }
    handlers: dict[type[Exception], ExceptionHandler] = {
        Refusal: _refused,
        ValidationError: _invalid,
        HTTPException: _http_error,
        Exception: _crashed,
    }
    return Litestar(
        logging_config=None,  # Litestar's own would take the root logger over from infra.logging
        route_handlers=[
            Router(
                "/partner/v1",
                route_handlers=[
                    list_hotels,
                    hold,
                    list_reservations,
                    show_reservation,
                    confirm,
                    modify,
                    cancel,
                ],
                middleware=[DefineMiddleware(FaultInjection, faults=lambda: partner.faults)],
            ),
            Router("/partner/admin", route_handlers=[show_faults, set_faults, hotel_action]),
            health,
        ],
        dependencies=provide,
        exception_handlers=handlers,  # type: ignore[arg-type]
        on_startup=[partner.start],
        on_shutdown=[partner.stop],
        request_max_body_size=64 * 1024,
        openapi_config=None,
        debug=False,
    )


def run_partner_sim(settings: Settings, port: int) -> None:
    """Serve the bureau until SIGINT or SIGTERM."""
    log.info("partner_sim_listening", url=f"http://{settings.http_host}:{port}/partner/v1")
    serve(create_partner_app(settings), settings, port)
