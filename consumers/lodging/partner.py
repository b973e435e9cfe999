"""The lodging partner's API as the process manager sees it: typed answers, two kinds of
failure, every call through the circuit breaker.

The partner speaks its own JSON (a block's size is `block`, a stay is flat in the
reservation); this module is the one place that knows it, and answers in our terms
(`schemas.lodging`). A failure is either `PartnerUnavailable` (no answer, or one that says
"try again": retry with the same idempotency key) or `PartnerRefused` (the partner answered
and said no: retrying changes nothing). Only the first counts against the breaker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from consumers.lodging.circuit import CircuitBreaker
from infra.metrics import PARTNER_CALL_FAILURES, PARTNER_CALL_SECONDS
from schemas.lodging import BlockNight, HotelInventory, RoomTypeBlock, Stay

log = structlog.get_logger(__name__)

API = "/partner/v1"
T = TypeVar("T")
PartnerStatus = Literal["held", "waitlisted", "confirmed", "cancelled"]


class PartnerError(Exception):
    """Any failed partner call."""


class PartnerUnavailable(PartnerError):
    """No usable answer: a connection error, a timeout, a 5xx or 429, or a body that is not
    what the API promises. The call may or may not have taken effect."""


class PartnerRefused(PartnerError):
    """The partner answered with a 4xx: it will not do this, however often it is asked."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PartnerReservation:
    ack: str
    status: PartnerStatus
    hotel: str
    stay: Stay
    total_cents: int
    reference: str


class _Reservation(BaseModel):
    """A reservation as the partner writes it (only the fields we use)."""

    model_config = ConfigDict(extra="ignore")

    ack: str = Field(min_length=1, max_length=64)
    status: PartnerStatus
    hotel: str
    room_type: str
    check_in: date
    check_out: date
    guests: tuple[str, ...]
    total_cents: int = Field(ge=0)
    reference: str

    def ours(self) -> PartnerReservation:
        stay = Stay(
            room_type=self.room_type,
            check_in=self.check_in,
            check_out=self.check_out,
            guests=self.guests,
        )
        return PartnerReservation(
            self.ack, self.status, self.hotel, stay, self.total_cents, self.reference
        )


class _Reservations(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reservations: list[_Reservation]


class _Night(BaseModel):
    model_config = ConfigDict(extra="ignore")

    night: date
    block: int
    booked: int
    rate_cents: int
    release_date: date | None = None


class _RoomType(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    description: str
    nights: list[_Night]


class _Hotel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    name: str
    room_types: list[_RoomType]

    def ours(self) -> HotelInventory:
        return HotelInventory(
            code=self.code,
            name=self.name,
            room_types=tuple(
                RoomTypeBlock(
                    code=rt.code,
                    description=rt.description,
                    nights=tuple(
                        BlockNight(
                            night=n.night,
                            size=n.block,
                            booked=n.booked,
                            rate_cents=n.rate_cents,
                            release_date=n.release_date,
                        )
                        for n in rt.nights
                    ),
                )
                for rt in self.room_types
            ),
        )


class _Hotels(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hotels: list[_Hotel]


_ERROR_BODY: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


class PartnerClient:
    """One HTTP connection pool to the partner, shared by every step of the process."""

    def __init__(self, base_url: str, timeout_seconds: float, breaker: CircuitBreaker) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self.breaker = breaker
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

    async def hotels(
        self, convention_id: uuid.UUID, first: date, last: date
    ) -> list[HotelInventory]:
        """The convention's hotels and their blocks for the nights `first` to `last`."""

        def parse(body: Any) -> list[HotelInventory]:
            return [hotel.ours() for hotel in _Hotels.model_validate(body).hotels]

        return await self._call(
            "hotels",
            "GET",
            f"{API}/conventions/{convention_id}/hotels",
            parse,
            params={"from": first.isoformat(), "to": last.isoformat()},
        )

    async def hold(
        self,
        idempotency_key: str,
        convention_id: uuid.UUID,
        hotel: str,
        stay: Stay,
        reference: str,
    ) -> PartnerReservation:
        """Hold (or be waitlisted for) a room; the same key answers the same reservation."""
        body = {
            "convention_id": str(convention_id),
            "hotel": hotel,
            "room_type": stay.room_type,
            "check_in": stay.check_in.isoformat(),
            "check_out": stay.check_out.isoformat(),
            "guests": list(stay.guests),
            "reference": reference,
        }
        return await self._call(
            "hold",
            "POST",
            f"{API}/reservations",
            _reservation,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )

    async def confirm(self, ack: str) -> PartnerReservation:
        return await self._call(
            "confirm", "POST", f"{API}/reservations/{_path(ack)}/confirm", _reservation
        )

    async def cancel(self, ack: str) -> PartnerReservation:
        return await self._call(
            "cancel", "POST", f"{API}/reservations/{_path(ack)}/cancel", _reservation
        )

    async def reservation(self, ack: str) -> PartnerReservation:
        return await self._call(
            "reservation", "GET", f"{API}/reservations/{_path(ack)}", _reservation
        )

    async def reservations(
        self, convention_id: uuid.UUID, reference: str | None = None
    ) -> list[PartnerReservation]:
        """Every reservation of the convention, or only those made under `reference`."""
        params = {"convention_id": str(convention_id)}
        if reference is not None:
            params["reference"] = reference

        def parse(body: Any) -> list[PartnerReservation]:
            found = [r.ours() for r in _Reservations.model_validate(body).reservations]
            return [r for r in found if reference is None or r.reference == reference]

        return await self._call("reservations", "GET", f"{API}/reservations", parse, params=params)

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """One request through the breaker: the parsed answer, or the failure it was. Its
        time (from sending, not counting a wait for the breaker) and its result are counted
        under `operation`."""
        if self._client is None:
            raise RuntimeError("the partner client has not been started")
        await self.breaker.ready()
        started = time.perf_counter()
        try:
            answer = await self._send(
                self._client, method, path, parse, params=params, json=json, headers=headers
            )
        except PartnerError as exc:
            result = "refused" if isinstance(exc, PartnerRefused) else "unavailable"
            PARTNER_CALL_FAILURES.labels(operation, result).inc()
            PARTNER_CALL_SECONDS.labels(operation, result).observe(time.perf_counter() - started)
            raise
        PARTNER_CALL_SECONDS.labels(operation, "ok").observe(time.perf_counter() - started)
        return answer

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        params: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> T:
        try:
            response = await client.request(method, path, params=params, json=json, headers=headers)
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            raise PartnerUnavailable(f"{method} {path}: {type(exc).__name__} {exc}") from exc
        except BaseException:
            self.breaker.abandon()
            raise
        return self._answer(method, path, response, parse)

    def _answer(
        self, method: str, path: str, response: httpx.Response, parse: Callable[[Any], T]
    ) -> T:
        status = response.status_code
        if status >= 500 or status == 429 or status < 200 or 300 <= status < 400:
            self.breaker.record_failure()
            code, message = _error_of(response)
            raise PartnerUnavailable(f"{method} {path}: {status} {code}: {message}")
        if status >= 400:
            self.breaker.record_success()
            raise PartnerRefused(status, *_error_of(response))
        try:
            parsed = parse(response.json())
        except (ValueError, TypeError, KeyError, ValidationError) as exc:
            self.breaker.record_failure()
            log.warning("partner_answer_malformed", method=method, path=path, status=status)
            raise PartnerUnavailable(f"{method} {path}: malformed answer ({exc})") from exc
        self.breaker.record_success()
        return parsed


def _reservation(body: Any) -> PartnerReservation:
    return _Reservation.model_validate(body).ours()


def _path(ack: str) -> str:
    """An ack as one path segment: whatever it holds cannot reach another route."""
    return quote(ack, safe="")


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The partner's `{code, message}`, or something readable when the body is not that."""
    try:
        body = _ERROR_BODY.validate_json(response.content)
        return str(body.get("code", f"http_{response.status_code}")), str(body.get("message", ""))
    except ValidationError:
        return f"http_{response.status_code}", response.text[:200]
