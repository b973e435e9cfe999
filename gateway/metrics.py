"""The gateway's Prometheus metrics: `GET /metrics`, and the requests counted by route.

`/metrics` is for the internal network: no authentication, never load-shed, not in the
OpenAPI document. The load balancer in front of the gateways does not route it; a scraper
reaches each gateway process on its own address (see README, "Metrics").
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import (
    HTTP_IN_FLIGHT,
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS,
    exposition,
    http_method,
    route_label,
)

METRICS_PATH = "/metrics"
NO_ANSWER = "none"
"""The status label of a request that ended before its answer started (the client left)."""


@get(METRICS_PATH, include_in_schema=False, sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body, content_type = exposition(request.headers.get("accept"))
    return Response(content=body, media_type=content_type)


def count_requests(app: Litestar) -> None:
    """Count every request `app` answers (see `counted_requests`). Wraps the application's
    handler outside the router, so that requests no route matches are counted too: the
    router names the route template in the scope on the way in."""
    app.asgi_handler = counted_requests(app.asgi_handler)


def counted_requests(app: ASGIApp) -> ASGIApp:
    """Every HTTP request `app` answers by method, route template and status, its latency,
    and the requests in flight. The route template is what the router put in the scope; a
    request without one (no route matched) is `unmatched`."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = NO_ANSWER

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await app(scope, receive, send_noting_status)
        finally:
            HTTP_IN_FLIGHT.dec()
            labels = (
                http_method(scope.get("method", "")),
                route_label(scope.get("path_template")),
                status,
            )
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)

    return counted
