"""Registrations: register (the rush path), read, cancel, and the admin listing."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from gateway.accounts import Principal, caller_of, may_see
from gateway.conventions import convention_guard, not_found
from gateway.deps import (
    Gateway,
    IdempotencyKey,
    command_id_for,
    key_reused_response,
    request_command_id,
    request_hash,
    respond_async,
)
from gateway.export import (
    CSV_MEDIA_TYPE,
    BadgeTypeFilter,
    EmailFilter,
    NameFilter,
    StatusFilter,
    csv_filename,
    registration_filter,
    registrations_csv,
)
from gateway.order_reads import (
    PENDING_PAYMENT,
    OrderReads,
    registration_location,
    shows_registration,
    until_shown,
)
from gateway.order_views import RegistrationDetail
from gateway.problems import Problem, problem_response
from gateway.reads import Outcome
from gateway.views import Accepted, NewRegistration, RegistrationPage, RegistrationView
from schemas.identity import email_key
from schemas.registration import SET_ASIDE, CancelRegistration, RegisterAttendee, RejectionReason

ATTENDEE = "attendee"
DECIDED_FOR = ("confirmed", PENDING_PAYMENT)
"""A registration decided in the attendee's favour: its seat is theirs (held until paid)."""
CANCELLABLE = DECIDED_FOR


def owner_of(who: Principal, email: str) -> uuid.UUID | None:
    """A registration made logged in for the account's own e-mail is the account's; one
    made for another e-mail (a friend, someone at the door) is a guest registration of that
    e-mail, which its own account claims once verified."""
    if who.account is None or who.account.email_key != email_key(email):
        return None
    return who.account.account_id


class RegistrationController(Controller):
    tags = ["registrations"]

    @post(
        "/api/v1/conventions/{convention_id:uuid}/registrations",
        operation_id="registerAttendee",
        status_code=HTTP_201_CREATED,
        summary="Register for a convention",
        description="Waits a few seconds for the decision: 201 confirmed, or 201 "
        "`pending_payment` with the order to pay (its total, `hold_until`, and the `pay` "
        "link) when there is something to pay; 409 rejected with its reason, 202 still "
        "pending. `Prefer: respond-async` answers 202 at once.",
    )
    async def register(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: NewRegistration,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        guests = await gateway.reads.guests_allowed(convention_id)
        if guests is None:
            raise not_found(convention_id)
        who = await caller_of(request)
        if not guests and not who.signed_in and not who.staff_of(convention_id):
            raise Problem(
                401,
                "login-required",
                "Log in to register",
                "This convention takes registrations from accounts only: log in first "
                "(staff can register someone at the door).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        registration_id = command_id_for(f"registration:{convention_id}", idempotency_key)
        fingerprint = request_hash(data.fingerprint_body() | {"email": email_key(data.email)})
        command_id = registration_id
        if idempotency_key is not None:
            command_id = request_command_id(registration_id, fingerprint)
            if respond_async(request):
                # A waiting request learns of a reused key from its own decision; one that
                # is answered at once is checked against what the read model already holds.
                known = await gateway.reads.registration(registration_id)
                if known is not None and (known[1] != fingerprint or known[0].status != "pending"):
                    return await _answer_with_order(request, gateway, known, fingerprint)
        command = RegisterAttendee(
            convention_id=convention_id,
            registration_id=registration_id,
            email=data.email,
            name=data.name,
            badge_type=data.badge_type,
            request_hash=fingerprint,
            account_id=owner_of(who, data.email),
            options=tuple(data.options),
            promo_code=data.promo_code,
        )
        outcome = await gateway.decide(request, command, command_id, ATTENDEE, streamed=True)
        if outcome is None:
            return _pending(registration_id, command_id)
        decided = outcome.registration
        if decided is None and outcome.accepted:
            decided = await gateway.reads.registration(registration_id)
        if decided is None or not outcome.answers_registration:
            return _refused(request, registration_id, command_id, outcome)
        return await _answer_with_order(request, gateway, decided, fingerprint)

    @get(
        "/api/v1/registrations/{registration_id:uuid}",
        operation_id="getRegistration",
        description="With `command_id` (from a 202 answer's Location), a request that was "
        "refused (an Idempotency-Key reused with another body, or a request that could not be "
        "processed) answers with that refusal.",
    )
    async def get_registration(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        command_id: uuid.UUID | None = None,
    ) -> Response[Any]:
        if command_id is not None:
            outcome = (await gateway.reads.outcomes([str(command_id)])).get(str(command_id))
            if outcome is not None and (
                outcome.registration is None or not outcome.answers_registration
            ):
                return _refused(request, registration_id, command_id, outcome)
        known = await gateway.reads.registration(registration_id)
        if known is None or not await may_see(request, gateway, known[0]):
            raise _unknown(registration_id)
        if command_id is not None and not _made_by(known, command_id):
            # Another request under the same key, not decided yet: its answer is still to come.
            return _pending(registration_id, command_id)
        return Response(await _detail(gateway, known[0]))

    @delete(
        "/api/v1/registrations/{registration_id:uuid}",
        operation_id="cancelRegistration",
        status_code=HTTP_200_OK,
        summary="Cancel a registration, freeing its seat and options",
        description="A confirmed one, or one waiting for its payment. What was paid is "
        "refunded by the convention's refund rule.",
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        known = await gateway.reads.registration(registration_id)
        if known is None or not await may_see(request, gateway, known[0]):
            raise _unknown(registration_id)
        view = known[0]
        if view.status == "cancelled":
            return Response(view, status_code=HTTP_200_OK)
        if view.status == "pending":
            raise Problem(
                409,
                "registration-pending",
                "Registration not decided yet",
                "Try again once the registration is decided.",
                registration_id=str(registration_id),
            )
        if view.status not in CANCELLABLE:
            raise _not_cancellable(view)
        command_id = command_id_for(f"cancel:{registration_id}", idempotency_key)
        command = CancelRegistration(
            convention_id=view.convention_id, registration_id=registration_id
        )
        outcome = await gateway.decide(request, command, command_id, ATTENDEE)
        if outcome is None:
            return Response(
                Accepted(
                    registration_id=registration_id,
                    command_id=command_id,
                    status="cancellation-pending",
                ),
                status_code=HTTP_202_ACCEPTED,
                headers={"Location": registration_location(registration_id)},
            )
        current = outcome.registration[0] if outcome.registration else view
        if not outcome.accepted:
            raise _not_cancellable(current)
        return Response(current, status_code=HTTP_200_OK)

    @get(
        "/api/v1/admin/conventions/{convention_id:uuid}/registrations",
        operation_id="adminListRegistrations",
        guards=[convention_guard],
        tags=["admin"],
        summary="A convention's registrations, oldest first, by cursor",
        description="Filters combine (all must hold) and page with the same cursor: pass "
        "the same filters with each `next` cursor.",
    )
    async def list_registrations(
        self,
        gateway: Gateway,
        convention_id: uuid.UUID,
        email: EmailFilter = None,
        name: NameFilter = None,
        status: StatusFilter = None,
        badge_type: BadgeTypeFilter = None,
        cursor: str | None = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> RegistrationPage:
        where = registration_filter(email=email, name=name, status=status, badge_type=badge_type)
        if not await gateway.reads.convention_exists(convention_id):
            raise not_found(convention_id)
        items, next_cursor = await gateway.reads.search_registrations(
            convention_id, where, cursor=cursor, limit=limit
        )
        return RegistrationPage(items=items, next=next_cursor)

    @get(
        "/api/v1/admin/conventions/{convention_id:uuid}/registrations.csv",
        operation_id="adminExportRegistrations",
        guards=[convention_guard],
        tags=["admin"],
        media_type=CSV_MEDIA_TYPE,
        summary="A convention's registrations as CSV, streamed",
        description="The listing's filters; columns registration_id, email, name, badge_type, "
        "status, reason, account_id, created_at (ISO 8601, UTC). Cells a spreadsheet would "
        "read as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) start with `'`.",
    )
    async def export_registrations(
        self,
        gateway: Gateway,
        convention_id: uuid.UUID,
        email: EmailFilter = None,
        name: NameFilter = None,
        status: StatusFilter = None,
        badge_type: BadgeTypeFilter = None,
    ) -> Stream:
        where = registration_filter(email=email, name=name, status=status, badge_type=badge_type)
        if not await gateway.reads.convention_exists(convention_id):
            raise not_found(convention_id)
        return Stream(
            registrations_csv(gateway.reads, convention_id, where),
            media_type=CSV_MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{csv_filename(convention_id)}"'
            },
        )


def _answer(
    request: Request[Any, Any, Any], known: tuple[RegistrationView, str], fingerprint: str
) -> Response[Any]:
    """The decision as the client sees it. A rejection is answered, not raised: in a rush
    most answers are rejections, and the exception path costs the gateway dearly."""
    view, stored_fingerprint = known
    if stored_fingerprint != fingerprint:
        return key_reused_response(request)
    location = {"Location": registration_location(view.registration_id)}
    if view.status == "pending":
        return _pending(view.registration_id)
    if view.status == "rejected" and view.reason == SET_ASIDE:
        return _invalid(request, view.registration_id, headers=location)
    if view.status == "rejected":
        return problem_response(
            request,
            409,
            "registration-rejected",
            "Registration rejected",
            _rejection_detail(view),
            headers=location,
            reason=view.reason,
            registration_id=str(view.registration_id),
            **({"subject": view.subject} if view.subject else {}),
        )
    status = HTTP_201_CREATED if view.status in DECIDED_FOR else HTTP_200_OK
    return Response(view, status_code=status, headers=location)


async def _detail(gateway: Gateway, view: RegistrationView) -> RegistrationDetail:
    """The registration with its orders. The orders projector may be a moment behind the
    website's: right after a decision the registration is shown once its orders have caught
    up (within a bound), so nobody sees a status its orders do not yet show."""
    orders = OrderReads(gateway.read_engine)
    return await until_shown(
        lambda: orders.detail(view), lambda shown: shows_registration(view, shown)
    )


async def _answer_with_order(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    known: tuple[RegistrationView, str],
    fingerprint: str,
) -> Response[Any]:
    """The decision, with the order it recorded: from the decision itself when the event
    stream answered, otherwise from the orders read model, as `GET` shows it."""
    view, stored_fingerprint = known
    if view.status in ("pending", "rejected") or stored_fingerprint != fingerprint:
        return _answer(request, known, fingerprint)
    detail = view if isinstance(view, RegistrationDetail) else await _detail(gateway, view)
    return Response(
        detail,
        status_code=HTTP_201_CREATED if view.status in DECIDED_FOR else HTTP_200_OK,
        headers={"Location": registration_location(view.registration_id)},
    )


def _made_by(known: tuple[RegistrationView, str], command_id: uuid.UUID) -> bool:
    """Whether the command is the request that made this registration (or names no other)."""
    view, fingerprint = known
    if command_id == view.registration_id or not fingerprint:
        return True
    return command_id == request_command_id(view.registration_id, fingerprint)


def _pending(registration_id: uuid.UUID, command_id: uuid.UUID | None = None) -> Response[Any]:
    location = registration_location(registration_id)
    if command_id is not None and command_id != registration_id:
        location += f"?command_id={command_id}"
    return Response(
        Accepted(registration_id=registration_id, command_id=command_id or registration_id),
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": location},
    )


def _refused(
    request: Request[Any, Any, Any],
    registration_id: uuid.UUID,
    command_id: uuid.UUID,
    outcome: Outcome,
) -> Response[Any]:
    """A request decided without deciding the registration: a reused Idempotency-Key, or a
    request the decider could not process (dead-lettered, reason `invalid`)."""
    if outcome.reason == RejectionReason.IDEMPOTENCY_KEY_REUSED:
        return key_reused_response(request)
    return _invalid(request, registration_id, command_id=str(command_id))


def _invalid(
    request: Request[Any, Any, Any],
    registration_id: uuid.UUID,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[Any]:
    return problem_response(
        request,
        422,
        "registration-invalid",
        "Registration could not be processed",
        _REASONS[SET_ASIDE],
        headers=headers,
        reason=SET_ASIDE,
        registration_id=str(registration_id),
        **extra,
    )


def _unknown(registration_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "registration-not-found",
        "Registration not found",
        f"There is no registration {registration_id}.",
    )


def _not_cancellable(view: RegistrationView) -> Problem:
    return Problem(
        409,
        "registration-not-cancellable",
        "Registration cannot be cancelled",
        f"The registration is {view.status}.",
        reason="not_cancellable",
        registration_id=str(view.registration_id),
    )


def _rejection_detail(view: RegistrationView) -> str:
    detail = _REASONS.get(view.reason or "", "The registration was rejected.")
    return detail if view.subject is None else f"{detail} ({view.subject})"


_REASONS = {
    "not_open": "The convention is not open for registration.",
    "unknown_badge_type": "The convention has no such badge type.",
    "sold_out": "The badge type, or an option asked for, is sold out.",
    "already_registered": "This e-mail already holds a registration for this convention.",
    "unknown_option": "The convention sells no such option.",
    "unknown_variant": "The option has no such variant, or needs one to be chosen.",
    "option_not_for_badge": "An option asked for cannot be bought with this badge type.",
    "limit_reached": "More of an option than one registration may hold.",
    "unknown_code": "There is no such promo code.",
    "code_not_yet_valid": "The promo code is not valid yet.",
    "code_expired": "The promo code has expired.",
    "code_used_up": "The promo code has been used as often as it may be.",
    "code_not_applicable": "The promo code does not apply to anything in this order.",
    SET_ASIDE: "The request could not be processed and was set aside for the operators.",
}
