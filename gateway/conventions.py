"""Conventions: public reads, admin creation and life cycle."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from gateway.deps import Gateway, IdempotencyKey, command_id_for, key_reused, request_hash
from gateway.problems import Problem
from gateway.views import Accepted, ConventionPage, ConventionView, NewConvention
from schemas.catalogue import OrderPolicy
from schemas.registration import (
    SET_ASIDE,
    BadgeTypeSpec,
    CloseConvention,
    CreateConvention,
    OpenConvention,
)

ADMIN = "admin"
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Page size")]


async def convention_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Admins, and staff of the convention the path names (`{convention_id}`): a route
    without one is for admins only. 401 for anyone not logged in, 403 for the others."""
    from gateway.accounts import principal, refuse

    who = await principal(connection)
    convention_id = connection.path_params.get("convention_id")
    if who.is_admin or (isinstance(convention_id, uuid.UUID) and who.staff_of(convention_id)):
        return
    raise refuse(who, "This needs the admin role, or staff of this convention.")


def convention_location(convention_id: uuid.UUID) -> str:
    return f"/api/v1/conventions/{convention_id}"


def not_found(convention_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "convention-not-found",
        "Convention not found",
        f"There is no convention {convention_id}.",
    )


class ConventionController(Controller):
    path = "/api/v1/conventions"
    tags = ["conventions"]

    @get("/", operation_id="listConventions", summary="Open and closed conventions")
    async def list_conventions(
        self, gateway: Gateway, cursor: str | None = None, limit: Limit = 20
    ) -> ConventionPage:
        items, next_cursor = await gateway.reads.conventions(
            include_drafts=False, cursor=cursor, limit=limit
        )
        return ConventionPage(items=items, next=next_cursor)

    @get(
        "/{convention_id:uuid}",
        operation_id="getConvention",
        summary="A convention with what it sells: badge types at the price in force, options",
        description="Each badge type shows its quota, sold and remaining, the price in force "
        "now (the first of its price tiers still open, else its own price) with that tier and "
        "the seats left at it, and every tier; each option its price, quota, units sold and "
        "left, and its variants. Money is in minor units of `currency`.",
    )
    async def get_convention(self, gateway: Gateway, convention_id: uuid.UUID) -> ConventionView:
        view = await gateway.reads.convention(convention_id)
        if view is None or view.status == "draft":
            raise not_found(convention_id)
        return view


class AdminConventionController(Controller):
    path = "/api/v1/admin/conventions"
    guards = [convention_guard]
    tags = ["admin"]

    @get("/", operation_id="adminListConventions", summary="Every convention, drafts included")
    async def list_all(
        self, gateway: Gateway, cursor: str | None = None, limit: Limit = 20
    ) -> ConventionPage:
        items, next_cursor = await gateway.reads.conventions(
            include_drafts=True, cursor=cursor, limit=limit
        )
        return ConventionPage(items=items, next=next_cursor)

    @get("/{convention_id:uuid}", operation_id="adminGetConvention")
    async def get_any(self, gateway: Gateway, convention_id: uuid.UUID) -> ConventionView:
        view = await gateway.reads.convention(convention_id)
        if view is None:
            raise not_found(convention_id)
        return view

    @post(
        "/",
        operation_id="createConvention",
        status_code=HTTP_201_CREATED,
        summary="Create a convention (draft) with its badge types",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        data: NewConvention,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        convention_id = command_id_for("convention", idempotency_key)
        fingerprint = request_hash(data.fingerprint_body())
        if idempotency_key is not None:
            existing = await gateway.reads.convention_hash(convention_id)
            if existing is not None:
                if existing != fingerprint:
                    raise key_reused()
                return await _convention_answer(gateway, convention_id, HTTP_201_CREATED)
        command = CreateConvention(
            convention_id=convention_id,
            name=data.name,
            starts_on=data.starts_on,
            ends_on=data.ends_on,
            badge_types=tuple(BadgeTypeSpec(**b.model_dump()) for b in data.badge_types),
            request_hash=fingerprint,
            allow_guests=data.allow_guests,
            policy=data.policy or OrderPolicy(),
        )
        outcome = await gateway.decide(request, command, convention_id, ADMIN)
        if outcome is None:
            return _accepted(convention_id, convention_id)
        if outcome.reason == SET_ASIDE:
            raise Problem(
                422,
                "convention-invalid",
                "Convention could not be created",
                "The request could not be processed and was set aside for the operators.",
                reason=SET_ASIDE,
                convention_id=str(convention_id),
            )
        if await gateway.reads.convention_hash(convention_id) != fingerprint:
            raise key_reused()
        return await _convention_answer(gateway, convention_id, HTTP_201_CREATED)

    @post(
        "/{convention_id:uuid}/open",
        operation_id="openConvention",
        status_code=HTTP_200_OK,
        summary="Open registration (draft → open)",
    )
    async def open_convention(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        return await _transition(
            request, gateway, OpenConvention(convention_id=convention_id), idempotency_key
        )

    @post(
        "/{convention_id:uuid}/close",
        operation_id="closeConvention",
        status_code=HTTP_200_OK,
        summary="Close registration (open → closed)",
    )
    async def close_convention(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        return await _transition(
            request, gateway, CloseConvention(convention_id=convention_id), idempotency_key
        )


async def _transition(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    command: OpenConvention | CloseConvention,
    idempotency_key: str | None,
) -> Response[Any]:
    convention_id = command.convention_id
    if not await gateway.reads.convention_exists(convention_id):
        raise not_found(convention_id)
    command_id = command_id_for(f"{command.message_type}:{convention_id}", idempotency_key)
    outcome = await gateway.decide(request, command, command_id, ADMIN)
    if outcome is None:
        return _accepted(convention_id, command_id)
    if not outcome.accepted:
        view = await gateway.reads.convention(convention_id)
        raise Problem(
            409,
            "convention-transition-rejected",
            "Transition not allowed",
            f"The convention is {view.status if view else 'unknown'}.",
            reason=outcome.reason,
            convention_id=str(convention_id),
        )
    return await _convention_answer(gateway, convention_id, HTTP_200_OK)


async def _convention_answer(
    gateway: Gateway, convention_id: uuid.UUID, status: int
) -> Response[Any]:
    view = await gateway.reads.convention(convention_id)
    if view is None:
        return _accepted(convention_id, convention_id)
    return Response(
        view, status_code=status, headers={"Location": convention_location(convention_id)}
    )


def _accepted(convention_id: uuid.UUID, command_id: uuid.UUID) -> Response[Any]:
    return Response(
        Accepted(convention_id=convention_id, command_id=command_id),
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": f"/api/v1/admin/conventions/{convention_id}"},
    )
