"""What the gateway's handlers share: settings, the publisher, the read models, the waiter."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from litestar import Request
from litestar.enums import ScopeType
from litestar.params import HeaderParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.problems import Problem
from gateway.reads import Outcome, ReadModels
from gateway.waiting import DecisionWaiter
from producers.commands import CommandPublisher
from schemas.registration import Command
from schemas.registry import wrap
from schemas.topics import Topics, registration_key

CORRELATION_HEADER = "X-Correlation-ID"
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Retrying with the same key and body gives the same result.",
        max_length=200,
    ),
]
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1f7f52-8d1e-4c53-9a4e-2b7c55c3b0a1")


@dataclass
class Gateway:
    topics: Topics
    publisher: CommandPublisher
    reads: ReadModels
    waiter: DecisionWaiter
    read_engine: AsyncEngine
    admin_token: str
    decision_wait_seconds: float

    async def send(
        self, request: Request[Any, Any, Any], command: Command, command_id: uuid.UUID, actor: str
    ) -> None:
        envelope = wrap(
            command,
            message_id=command_id,
            occurred_at=datetime.now(UTC),
            correlation_id=correlation_id(request),
            causation_id=None,
            key=registration_key(command.convention_id),
            actor=actor,
        )
        await self.publisher.publish(self.topics.registration_commands, envelope)

    async def await_outcome(
        self, request: Request[Any, Any, Any], command_id: uuid.UUID
    ) -> Outcome | None:
        if respond_async(request):
            return None
        return await self.waiter.wait(str(command_id), self.decision_wait_seconds)

    async def database_answers(self) -> bool:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True


def correlation_id(request: Request[Any, Any, Any]) -> uuid.UUID:
    value = request.scope.get("state", {}).get("correlation_id")
    if isinstance(value, uuid.UUID):
        return value
    return uuid.uuid4()


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    """Takes the caller's X-Correlation-ID (or makes one), binds it to every log line of the
    request, and sends it back on the response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode(), b"")
        try:
            value = uuid.UUID(raw.decode("latin-1"))
        except ValueError:
            value = uuid.uuid4()
        scope.setdefault("state", {})["correlation_id"] = value
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=str(value))

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.lower().encode(), str(value).encode()))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_header)

    return middleware


def respond_async(request: Request[Any, Any, Any]) -> bool:
    return "respond-async" in request.headers.get("prefer", "").lower()


def command_id_for(scope: str, idempotency_key: str | None) -> uuid.UUID:
    """Same scope and key, same command id: a retried request is recognised downstream."""
    if idempotency_key is None:
        return uuid.uuid4()
    if not 1 <= len(idempotency_key) <= 200 or not idempotency_key.isprintable():
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            "Idempotency-Key must be 1 to 200 printable characters.",
        )
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{scope}\x00{idempotency_key}")


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_reused() -> Problem:
    return Problem(
        422,
        "idempotency-key-reused",
        "Idempotency-Key reused",
        "This Idempotency-Key was already used with a different request body.",
    )
