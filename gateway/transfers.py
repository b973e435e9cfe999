"""Transfers: an owner (or staff of the convention, or an admin) hands a confirmed
registration to another account. The seat moves, the quota does not change, and the
registration takes the new holder's e-mail and name; the earlier holder still sees that it
was theirs (`GET /api/v1/me/registrations`, `transferred_away`)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from gateway.accounts import caller_of, desk_of, may_see, refuse
from gateway.deps import Gateway, IdempotencyKey, command_id_for
from gateway.problems import Problem
from gateway.views import Accepted, Body
from schemas.identity import email_key
from schemas.registration import TransferRegistration


class TransferBody(Body):
    to_email: str

    model_config = {"json_schema_extra": {"examples": [{"to_email": "friend@example.org"}]}}


class TransferController(Controller):
    tags = ["registrations"]

    @post(
        "/api/v1/registrations/{registration_id:uuid}/transfer",
        operation_id="transferRegistration",
        status_code=HTTP_200_OK,
        summary="Hand a confirmed registration to another account",
        description="By its owner, staff of its convention or an admin. The new holder is "
        "the account with `to_email`, which must be verified; the registration takes its "
        "e-mail and name. 409 `already-registered` when that account holds a seat of the "
        "convention already; 409 `not-transferable` unless the registration is confirmed.",
    )
    async def transfer(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        data: TransferBody,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        who = await caller_of(request)
        if not who.signed_in and not who.is_admin:
            raise refuse(who, "Log in as the owner, staff of the convention or an admin.")
        known = await gateway.reads.registration(registration_id)
        if known is None or not await may_see(request, gateway, known[0]):
            raise Problem(404, "registration-not-found", "Registration not found", None)
        view = known[0]
        try:
            target_key = email_key(data.to_email)
        except ValueError:
            target_key = None
        target = (
            None if target_key is None else await desk_of(gateway).reads.by_email_key(target_key)
        )
        if target is None or not target.verified:
            raise Problem(
                422,
                "unknown-recipient",
                "No verified account has that e-mail",
                "The new holder must have an account with a verified e-mail.",
                errors=[{"field": "to_email", "message": "no verified account"}],
            )
        if view.status != "confirmed":
            raise Problem(409, "not-transferable", "Only a confirmed registration moves", None)
        command_id = command_id_for(f"transfer:{registration_id}", idempotency_key)
        command = TransferRegistration(
            convention_id=view.convention_id,
            registration_id=registration_id,
            to_account_id=target.account_id,
            email=target.email,
            name=target.name,
        )
        actor = "admin-token" if who.account is None else f"account:{who.account.account_id}"
        outcome = await gateway.decide(request, command, command_id, actor)
        if outcome is None:
            return Response(
                Accepted(
                    registration_id=registration_id,
                    command_id=command_id,
                    status="transfer-pending",
                ),
                status_code=HTTP_202_ACCEPTED,
                headers={"Location": f"/api/v1/registrations/{registration_id}"},
            )
        if not outcome.accepted:
            reason = outcome.reason or "not_transferable"
            raise Problem(409, reason.replace("_", "-"), "Not transferred", None, reason=reason)
        moved = await gateway.reads.registration(registration_id)
        return Response(moved[0] if moved is not None else view)
