"""Liveness and readiness: `/health` says whether the gateway's dependencies answer and no
consumer is stalled; `/health/ready` also asks that every partition is being consumed.

Every check has a deadline, so a dependency that stops answering gives a 503 in bounded time
instead of a hanging request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from litestar import Request, Response, get

from gateway.deps import Gateway
from gateway.problems import problem_response
from infra.pipeline.health import PartitionProgress

T = TypeVar("T")

CHECK_TIMEOUT = 2.0
PROGRESS_CACHE_SECONDS = 1.0


@get(
    "/health",
    operation_id="health",
    tags=["operations"],
    summary="Kafka and MariaDB answer, and no consumer is stalled",
    description="503 names what does not answer, and every partition whose consumer has lag "
    "but has not moved for the stall time. Dead-letter counts are reported per group.",
)
async def health(request: Request[Any, Any, Any], gateway: Gateway) -> Response[Any]:
    return await _answer(request, gateway, readiness=False)


@get(
    "/health/ready",
    operation_id="ready",
    tags=["operations"],
    summary="Healthy, and every role is consuming",
    description="As /health, and every partition of every consumer group has an owner whose "
    "heartbeat is fresh. 503 names the partitions nobody is consuming.",
)
async def ready(request: Request[Any, Any, Any], gateway: Gateway) -> Response[Any]:
    return await _answer(request, gateway, readiness=True)


async def _answer(
    request: Request[Any, Any, Any], gateway: Gateway, *, readiness: bool
) -> Response[Any]:
    kafka, database, progress = await asyncio.gather(
        _bounded(gateway.publisher.ping(CHECK_TIMEOUT)),
        _bounded(gateway.database_answers()),
        _bounded(_progress(request, gateway)),
    )
    checks = {
        "kafka": "ok" if kafka else "down",
        "database": "ok" if database else "down",
        "consumers": "unknown" if progress is None else "ok",
    }
    body: dict[str, Any] = {"checks": checks}
    if progress is not None:
        stalled = [p.as_json() for p in progress if p.stalled]
        idle = [p.as_json() for p in progress if not p.consuming]
        if stalled:
            checks["consumers"] = "stalled"
            body["stalled"] = stalled
        elif readiness and idle:
            checks["consumers"] = "not consuming"
        if readiness and idle:
            body["not_consuming"] = idle
        dead: dict[str, int] = {}
        for p in progress:
            dead[p.group] = dead.get(p.group, 0) + p.dead_letters
        body["dead_letters"] = dead
    problems = [name for name, state in checks.items() if state != "ok"]
    if not problems:
        return Response({"status": "ready" if readiness else "ok", **body})
    return problem_response(
        request,
        503,
        "unavailable",
        "Service unavailable" if not readiness else "Not ready",
        "Not healthy: " + ", ".join(f"{name} {checks[name]}" for name in problems) + ".",
        **body,
    )


async def _bounded(check: Awaitable[T]) -> T | None:
    """A check that fails or does not answer in time counts as down."""
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT)
    except Exception:
        return None


async def _progress(request: Request[Any, Any, Any], gateway: Gateway) -> list[PartitionProgress]:
    """Consumer progress, read at most once a second however often health is asked."""
    state = request.app.state
    cached = state.get("progress")
    if cached is not None and time.monotonic() - cached[0] < PROGRESS_CACHE_SECONDS:
        return list(cached[1])
    progress = await gateway.watch.progress()
    state["progress"] = (time.monotonic(), progress)
    return progress
