"""The Litestar application: routes, problem details, OpenAPI and AsyncAPI, health and
metrics."""

from __future__ import annotations

import functools

from litestar import Litestar, Response, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from gateway.accounts import AccountController, AdminAccountController
from gateway.catalogue import CatalogueController
from gateway.checkin import CheckInController
from gateway.conventions import AdminConventionController, ConventionController
from gateway.deps import Gateway
from gateway.health import health, ready
from gateway.lodging import AdminLodgingController, LodgingController
from gateway.metrics import count_requests, metrics
from gateway.middleware import correlation_middleware, shed_load_middleware
from gateway.operations import OperationsController
from gateway.orders import AdminOrderController, OrderController, WaitlistController
from gateway.payments import PaymentController, PaymentDesk
from gateway.problems import EXCEPTION_HANDLERS
from gateway.registrations import RegistrationController
from gateway.reports import ReportController
from gateway.tickets import TicketController
from gateway.transfers import TransferController
from gateway.web.admin import admin_router
from gateway.web.dashboards import dashboard_router
from gateway.web.pages import pages_or_problems, static_files, template_config
from gateway.web.site import site_router
from gateway.web.station import station_router
from schemas.asyncapi import asyncapi_document, render


def create_app(
    gateway: Gateway,
    *,
    max_body_bytes: int = 64 * 1024,
    max_in_flight: int = 4096,
    shed_latency_seconds: float = 0.2,
    shed_floor: int = 200,
    payments: PaymentDesk | None = None,
) -> Litestar:
    async def start() -> None:
        await gateway.publisher.start()
        await gateway.waiter.start()
        if payments is not None:
            await payments.start()

    async def stop() -> None:
        if payments is not None:
            await payments.close()
        if gateway.accounts is not None:
            await gateway.accounts.close()
        await gateway.waiter.stop()
        await gateway.watch.close()
        await gateway.publisher.stop()
        await gateway.read_engine.dispose()
        if gateway.reporting_engine is not None:
            await gateway.reporting_engine.dispose()

    @get(
        "/schema/asyncapi.json",
        operation_id="asyncapi",
        tags=["operations"],
        summary="The event contract: an AsyncAPI 3.0 document of every Kafka topic",
        description="Generated from the same message schemas the pipeline validates with, "
        "for this gateway's topics.",
        media_type="application/json",
    )
    async def asyncapi(gateway: Gateway) -> Response[bytes]:
        return Response(content=_contract(gateway.topics.prefix), media_type="application/json")

    app = Litestar(
        logging_config=None,  # Litestar's own would take the root logger over from infra.logging
        route_handlers=[
            ConventionController,
            AdminConventionController,
            RegistrationController,
            CatalogueController,
            OrderController,
            WaitlistController,
            AdminOrderController,
            LodgingController,
            AdminLodgingController,
            AccountController,
            AdminAccountController,
            TransferController,
            PaymentController,
            ReportController,
            TicketController,
            CheckInController,
            OperationsController,
            health,
            ready,
            metrics,
            asyncapi,
            site_router,
            admin_router,
            dashboard_router,
            station_router,
            static_files,
        ],
        dependencies={
            "gateway": Provide(lambda: gateway, use_cache=True, sync_to_thread=False),
            "payments": Provide(lambda: payments, use_cache=True, sync_to_thread=False),
        },
        exception_handlers=pages_or_problems(EXCEPTION_HANDLERS),
        on_startup=[start],
        on_shutdown=[stop],
        middleware=[
            correlation_middleware,
            shed_load_middleware(max_in_flight, shed_latency_seconds, shed_floor),
        ],
        request_max_body_size=max_body_bytes,
        template_config=template_config,
        openapi_config=OpenAPIConfig(
            title="Butterfly",
            version="1.0.0",
            description="Convention registration. Errors are RFC 9457 problem details. "
            "Callers are anonymous, or send a session (the `butterfly_session` cookie with "
            "`X-CSRF-Token` on writes, or `Authorization: Bearer <session token>`), or the "
            "admin token as a bearer token.",
            path="/schema",
            components=Components(
                security_schemes={
                    "session_cookie": SecurityScheme(
                        type="apiKey",
                        name="butterfly_session",
                        security_scheme_in="cookie",
                        description="From POST /api/v1/sessions; writes also need the "
                        "X-CSRF-Token header (the csrf_token of the login answer).",
                    ),
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="A session token from POST /api/v1/sessions, or the "
                        "admin token.",
                    ),
                }
            ),
            security=[{}, {"session_cookie": []}, {"bearer": []}],
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
    )
    app.state.gateway = gateway
    count_requests(app)
    return app


@functools.cache
def _contract(topic_prefix: str) -> bytes:
    """The AsyncAPI document for a topic prefix, rendered once."""
    return render(asyncapi_document(topic_prefix)).encode()
