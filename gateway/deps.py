"""What the gateway's handlers share: settings, the publisher, the read models, the waiter."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response
from litestar.params import HeaderParameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.account_desk import AccountDesk
from gateway.problems import Problem, problem_response
from gateway.reads import Outcome, ReadModels
from gateway.waiting import DecisionWaiter
from infra.metrics import DECISION_WAIT_SECONDS, DECISION_WAITS
from infra.pipeline.health import ConsumerWatch
from producers.commands import CommandPublisher
from schemas.registration import Command
from schemas.registry import wrap
from schemas.tickets import SigningKey
from schemas.topics import Topics, registration_key

TIMED_OUT = "timeout"
"""The outcome label of a wait that ended before its decision (answered 202)."""

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
    watch: ConsumerWatch
    accounts: AccountDesk | None = None
    """Sessions, login limits, credentials and account reads; None where accounts are not
    set up (then every caller is anonymous)."""
    reporting_engine: AsyncEngine | None = None
    """The reporting database the report routes read; None where it is not set up."""
    kafka_bootstrap_servers: str = ""
    """The broker the operations routes read the dead-letter topic from; empty where they
    are not set up."""
    ticket_keys: tuple[SigningKey, ...] = ()
    """The ticket keys (`BUTTERFLY_TICKET_KEYS`), the signing one first; empty where tickets
    are not set up (the ticket and check-in routes answer 503)."""

    async def decide(
        self,
        request: Request[Any, Any, Any],
        command: Command,
        command_id: uuid.UUID,
        actor: str,
        *,
        streamed: bool = False,
    ) -> Outcome | None:
        """Publish the command and, unless the client prefers to be answered at once, wait for
        its decision; None when there is no decision (yet) to answer with. `streamed` says the
        decision can be read off the event stream (see gateway.waiting)."""
        envelope = wrap(
            command,
            message_id=command_id,
            occurred_at=datetime.now(UTC),
            correlation_id=correlation_id(request),
            causation_id=None,
            key=registration_key(command.convention_id),
            actor=actor,
        )
        if respond_async(request):
            await self.publisher.publish(self.topics.registration_commands, envelope)
            return None
        ticket = self.waiter.expect(command_id, streamed=streamed)
        try:
            await self.publisher.publish(self.topics.registration_commands, envelope)
        except BaseException:
            self.waiter.forget(ticket)
            raise
        started = time.perf_counter()
        outcome = await self.waiter.wait(ticket, decision_wait(request, self.decision_wait_seconds))
        label = TIMED_OUT if outcome is None else outcome.outcome
        DECISION_WAITS.labels(command.message_type, label).inc()
        DECISION_WAIT_SECONDS.labels(label).observe(time.perf_counter() - started)
        return outcome

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


def respond_async(request: Request[Any, Any, Any]) -> bool:
    return "respond-async" in request.headers.get("prefer", "").lower()


def decision_wait(request: Request[Any, Any, Any], longest: float) -> float:
    """How long to wait for a decision: `longest`, or less when the client asks with
    `Prefer: wait=N` (RFC 7240), as the website does so that a rush answers with the
    "being confirmed" page instead of a spinning form."""
    for preference in request.headers.get("prefer", "").lower().split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip() == "wait":
            try:
                return max(0.0, min(longest, float(value.strip().strip('"'))))
            except ValueError:
                return longest
    return longest


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


def request_command_id(registration_id: uuid.UUID, fingerprint: str) -> uuid.UUID:
    """The command id of one request body under an idempotency key: a retry of the same body
    is the same command, a different body is another command naming the same registration."""
    return uuid.uuid5(registration_id, fingerprint)


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


KEY_REUSED = (
    422,
    "idempotency-key-reused",
    "Idempotency-Key reused",
    "This Idempotency-Key was already used with a different request body.",
)


def key_reused() -> Problem:
    return Problem(*KEY_REUSED, reason="idempotency_key_reused")


def key_reused_response(request: Request[Any, Any, Any]) -> Response[Any]:
    return problem_response(request, *KEY_REUSED, reason="idempotency_key_reused")
