"""The Litestar application: routes, problem details, OpenAPI, health."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from gateway.conventions import AdminConventionController, ConventionController
from gateway.deps import Gateway
from gateway.middleware import correlation_middleware, shed_load_middleware
from gateway.problems import EXCEPTION_HANDLERS, problem_response
from gateway.registrations import RegistrationController

HEALTH_TIMEOUT = 2.0


@get("/health", operation_id="health", tags=["operations"], summary="Kafka and MariaDB answer")
async def health(request: Request[Any, Any, Any], gateway: Gateway) -> Response[Any]:
    kafka, database = await asyncio.gather(
        gateway.publisher.ping(HEALTH_TIMEOUT), gateway.database_answers()
    )
    checks = {"kafka": "ok" if kafka else "down", "database": "ok" if database else "down"}
    if kafka and database:
        return Response({"status": "ok", "checks": checks})
    down = [name for name, state in checks.items() if state != "ok"]
    return problem_response(
        request,
        503,
        "unavailable",
        "Service unavailable",
        f"Not answering: {', '.join(down)}.",
        checks=checks,
    )


def create_app(
    gateway: Gateway, *, max_body_bytes: int = 64 * 1024, max_in_flight: int = 4096
) -> Litestar:
    async def start() -> None:
        await gateway.publisher.start()
        gateway.waiter.start()

    async def stop() -> None:
        await gateway.waiter.stop()
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
