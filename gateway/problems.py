"""RFC 9457 problem details for every error the gateway gives, and the handlers that make
sure nothing else (least of all a stack trace) ever reaches a client."""

from __future__ import annotations

from typing import Any

import structlog
from aiokafka.errors import KafkaError
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from gateway.correlation import CORRELATION_HEADER, correlation_from

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://butterfly.example/problems/"

log = structlog.get_logger(__name__)


class Problem(HTTPException):
    """An error to answer as problem details: `kind` becomes the `type` URI."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code=status, detail=detail or title, headers=headers)
        self.kind = kind
        self.title = title
        self.problem_detail = detail
        self.problem_extra = extra


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    kind: str,
    title: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    if "correlation_id" not in request.scope.get("state", {}):
        # No route matched, so no route middleware ran: the answer still carries the id.
        headers = {
            **(headers or {}),
            CORRELATION_HEADER: str(correlation_from(request.headers.get(CORRELATION_HEADER))),
        }
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _on_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return problem_response(
        request,
        exc.status_code,
        exc.kind,
        exc.title,
        exc.problem_detail,
        headers=exc.headers,
        **exc.problem_extra,
    )


def _on_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    """A body that is missing or not JSON is a 400; a JSON body whose fields are wrong is a
    422 naming each field (Litestar gives those errors no `source`); bad query, path or
    header parameters are a 400."""
    errors = []
    sources = set()
    if isinstance(exc.extra, list):
        for item in exc.extra:
            if isinstance(item, dict):
                sources.add(item.get("source"))
                errors.append(
                    {
                        "field": str(item.get("key") or item.get("source") or "body"),
                        "message": str(item.get("message", "invalid")),
                    }
                )
    detail = str(exc.detail) if exc.detail else "The request is not valid."
    if "JSON" in detail or "decode" in detail.lower():
        return problem_response(
            request,
            HTTP_400_BAD_REQUEST,
            "malformed-body",
            "Malformed request body",
            "The body is not valid JSON.",
        )
    return problem_response(
        request,
        HTTP_422_UNPROCESSABLE_ENTITY if sources == {None} else HTTP_400_BAD_REQUEST,
        "validation-error",
        "Invalid request",
        detail,
        errors=errors,
    )


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    kind = {
        404: "not-found",
        405: "method-not-allowed",
        401: "unauthorized",
        403: "forbidden",
        413: "body-too-large",
        415: "unsupported-media-type",
        429: "too-many-requests",
        503: "unavailable",
    }.get(status, "http-error")
    title = {
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large",
    }.get(status, str(exc.detail) if status < 500 else "Service unavailable")
    detail = str(exc.detail) if status < 500 else None
    return problem_response(request, status, kind, title, detail, headers=exc.headers)


def _on_not_found(
    request: Request[Any, Any, Any], exc: NotFoundException
) -> Response[dict[str, Any]]:
    return problem_response(
        request, 404, "not-found", "Not found", "No resource lives at this address."
    )


def _on_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("dependency_unavailable", path=request.url.path, error=str(exc)[:300])
    return problem_response(
        request,
        503,
        "unavailable",
        "Service unavailable",
        "A backing service did not answer; nothing was applied. Try again shortly.",
        headers={"Retry-After": "2"},
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled_error", path=request.url.path)
    return problem_response(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal-error",
        "Internal error",
        "Something went wrong on our side; the request was not applied. Try again.",
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    Problem: _on_problem,
    ValidationException: _on_validation,
    NotFoundException: _on_not_found,
    HTTPException: _on_http,
    KafkaError: _on_unavailable,
    DBAPIError: _on_unavailable,
    TimeoutError: _on_unavailable,
    RedisError: _on_unavailable,
    Exception: _on_unexpected,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "Problem", "problem_response"]
