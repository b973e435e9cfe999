"""The Litestar application: routes, problem details, OpenAPI, health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from gateway.conventions import AdminConventionController, ConventionController
from gateway.deps import Gateway
from gateway.middleware import correlation_middleware, shed_load_middleware
from gateway.problems import EXCEPTION_HANDLERS, problem_response
from gateway.registrations import RegistrationController
from infra.pipeline.health import PartitionProgress

T = TypeVar("T")

HEALTH_TIMEOUT = 2.0
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
    kafka, database, progress = await asyncio.gather(
        _bounded(gateway.publisher.ping(HEALTH_TIMEOUT)),
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
        if stalled:
            checks["consumers"] = "stalled"
            body["stalled"] = stalled
        dead: dict[str, int] = {}
        for p in progress:
            dead[p.group] = dead.get(p.group, 0) + p.dead_letters
        body["dead_letters"] = dead
    problems = [name for name, state in checks.items() if state != "ok"]
    if not problems:
        return Response({"status": "ok", **body})
    return problem_response(
        request,
        503,
        "unavailable",
        "Service unavailable",
        "Not healthy: " + ", ".join(f"{name} {checks[name]}" for name in problems) + ".",
        **body,
    )


async def _bounded(check: Awaitable[T]) -> T | None:
    """A check that fails or does not answer in time counts as down."""
    try:
        return await asyncio.wait_for(check, HEALTH_TIMEOUT)
    except Exception:
        return None


async def _progress(request: Request[Any, Any, Any], gateway: Gateway) -> list[PartitionProgress]:
    """Consumer progress, read at most once a second however often /health is asked."""
    state = request.app.state
    cached = state.get("progress")
    if cached is not None and time.monotonic() - cached[0] < PROGRESS_CACHE_SECONDS:
        return list(cached[1])
    progress = await gateway.watch.progress()
    state["progress"] = (time.monotonic(), progress)
    return progress


def create_app(
    gateway: Gateway, *, max_body_bytes: int = 64 * 1024, max_in_flight: int = 4096
) -> Litestar:
    async def start() -> None:
        await gateway.publisher.start()
        gateway.waiter.start()

    async def stop() -> None:
        await gateway.waiter.stop()
        await gateway.watch.close()
        await gateway.publisher.stop()
        await gateway.read_engine.dispose()

    app = Litestar(
        route_handlers=[
            ConventionController,
            AdminConventionController,
            RegistrationController,
            health,
        ],
        dependencies={"gateway": Provide(lambda: gateway, use_cache=True, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[start],
        on_shutdown=[stop],
        middleware=[shed_load_middleware(max_in_flight), correlation_middleware],
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Butterfly",
            version="1.0.0",
            description="Convention registration. Errors are RFC 9457 problem details.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
    )
    app.state.gateway = gateway
    return app
