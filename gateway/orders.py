"""Orders after registration (options added and given back, promo codes), waitlists, and
the admin's view of a convention's orders and lines.

Every write is a command to the registration decider, which decides it in the convention's
order with the seats and stock it touches; the route waits for the decision (202 with a
`Location` when it takes longer) and answers with what the orders read model then shows.
A registration's orders are its owner's: anyone else is told they do not exist, as with the
registration itself.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from gateway.accounts import Principal, caller_of, may_see, signed_in
from gateway.catalogue import CodePath
from gateway.conventions import convention_guard, not_found
from gateway.deps import (
    Gateway,
    IdempotencyKey,
    command_id_for,
    key_reused,
    request_command_id,
    request_hash,
)
from gateway.order_reads import (
    PENDING_PAYMENT,
    OrderReads,
    entry_location,
    order_location,
    registration_location,
    until_shown,
)
from gateway.order_views import (
    NewOrder,
    NewWaitlistEntry,
    OfferAcceptance,
    OrderAccepted,
    OrderPage,
    OrderView,
    PromoCodeBody,
    RegistrationDetail,
    WaitlistEntries,
    WaitlistEntryView,
    WaitlistsView,
)
from gateway.problems import Problem
from gateway.reads import Outcome
from gateway.registrations import ATTENDEE, DECIDED_FOR, owner_of
from gateway.views import RegistrationView
from schemas.identity import email_key
from schemas.orders import (
    AcceptOffer,
    AddOptions,
    ApplyPromoCode,
    JoinWaitlist,
    LeaveWaitlist,
    RemoveOption,
)
from schemas.registration import SET_ASIDE, RejectionReason

ORDER_STATUSES = ("pending_payment", "paid", "expired", "cancelled")
OrderStatusFilter = Annotated[
    str | None, QueryParameter(enum=ORDER_STATUSES, description="Only orders in this status.")
]
Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size")]
VariantQuery = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The variant given back, for an option with variants.",
    ),
]
QuantityQuery = Annotated[int, QueryParameter(ge=1, le=100, description="Units given back.")]


class OrderController(Controller):
    tags = ["orders"]

    @get(
        "/api/v1/registrations/{registration_id:uuid}/orders/{order_id:uuid}",
        operation_id="getOrder",
        summary="One order of a registration: lines, total, paid, refunded, hold",
    )
    async def get_order(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        order_id: uuid.UUID,
    ) -> OrderView:
        await _registration(request, gateway, registration_id)
        order = await OrderReads(gateway.read_engine).order(order_id)
        if order is None or order.registration_id != registration_id:
            raise _unknown_order(order_id)
        return order

    @post(
        "/api/v1/registrations/{registration_id:uuid}/orders",
        operation_id="addOptions",
        status_code=HTTP_201_CREATED,
        summary="Buy options for a registration: a new order, held until paid",
        description="201 with the order: `pending_payment` with a `pay` link and "
        "`hold_until`, or `paid` at once when there is nothing to pay. 409 with the reason "
        "when refused (`sold_out`, `limit_reached`, `unknown_option`, `unknown_variant`, "
        "`option_not_for_badge`, a promo code's reasons). The same Idempotency-Key and body "
        "answer the same order; the key with another body is refused.",
    )
    async def add_options(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        data: NewOrder,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        registration = await _registration(request, gateway, registration_id)
        _check_decided(registration)
        order_id = command_id_for(f"order:{registration_id}", idempotency_key)
        fingerprint = request_hash(
            data.model_dump(mode="json", exclude_defaults=True)
            | {"registration_id": str(registration_id)}
        )
        command_id = order_id
        if idempotency_key is not None:
            command_id = request_command_id(order_id, fingerprint)
        command = AddOptions(
            convention_id=registration.convention_id,
            registration_id=registration_id,
            order_id=order_id,
            options=tuple(data.options),
            promo_code=data.promo_code,
            request_hash=fingerprint,
        )
        outcome = await gateway.decide(request, command, command_id, ATTENDEE)
        location = order_location(registration_id, order_id)
        if outcome is None:
            return _accepted(location, command_id, registration_id, order_id=order_id)
        if not outcome.accepted:
            raise _refused(outcome, registration_id=str(registration_id))
        reads = OrderReads(gateway.read_engine)
        order = await until_shown(lambda: reads.order(order_id), lambda found: found is not None)
        if order is None:
            return _accepted(location, command_id, registration_id, order_id=order_id)
        return Response(order, status_code=HTTP_201_CREATED, headers={"Location": location})

    @delete(
        "/api/v1/registrations/{registration_id:uuid}/options/{code:str}",
        operation_id="removeOption",
        status_code=HTTP_200_OK,
        summary="Give back units of an option; what was paid for them is refunded",
        description="The refund follows the convention's refund rule. 409 `not_removable` "
        "for more units than the registration holds or an option of an unpaid order. Without "
        "an Idempotency-Key every call gives back more units.",
    )
    async def remove_option(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        code: CodePath,
        variant: VariantQuery = None,
        quantity: QuantityQuery = 1,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        registration = await _registration(request, gateway, registration_id)
        _check_decided(registration)
        reads = OrderReads(gateway.read_engine)
        command_id = command_id_for(
            f"remove:{registration_id}:{code}:{variant or ''}:{quantity}", idempotency_key
        )
        before = await reads.detail(registration)
        decided_before = await _decided(gateway, command_id)
        command = RemoveOption(
            convention_id=registration.convention_id,
            registration_id=registration_id,
            code=code,
            variant=variant,
            quantity=quantity,
        )
        outcome = await gateway.decide(request, command, command_id, ATTENDEE)
        location = registration_location(registration_id)
        if outcome is None:
            return _accepted(location, command_id, registration_id)
        if not outcome.accepted:
            raise _refused(outcome, registration_id=str(registration_id), option=code)
        given_back = _removed(before, code, variant)
        detail = await until_shown(
            lambda: reads.detail(registration),
            lambda shown: decided_before or _removed(shown, code, variant) > given_back,
        )
        return Response(detail, status_code=HTTP_200_OK, headers={"Location": location})

    @post(
        "/api/v1/registrations/{registration_id:uuid}/orders/{order_id:uuid}/promo-code",
        operation_id="applyPromoCode",
        status_code=HTTP_200_OK,
        summary="Apply a promo code to an unpaid order, repricing it",
        description="409 with the reason: `unknown_code`, `code_expired`, "
        "`code_not_yet_valid`, `code_used_up`, `code_not_applicable`, "
        "`code_already_applied`, `not_pending_payment`.",
    )
    async def apply_promo_code(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        registration_id: uuid.UUID,
        order_id: uuid.UUID,
        data: PromoCodeBody,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        registration = await _registration(request, gateway, registration_id)
        reads = OrderReads(gateway.read_engine)
        order = await reads.order(order_id)
        if order is None or order.registration_id != registration_id:
            raise _unknown_order(order_id)
        command_id = command_id_for(f"promo:{order_id}", idempotency_key)
        command = ApplyPromoCode(
            convention_id=registration.convention_id,
            registration_id=registration_id,
            order_id=order_id,
            promo_code=data.promo_code,
        )
        outcome = await gateway.decide(request, command, command_id, ATTENDEE)
        location = order_location(registration_id, order_id)
        if outcome is None:
            return _accepted(location, command_id, registration_id, order_id=order_id)
        if not outcome.accepted:
            raise _refused(outcome, registration_id=str(registration_id), order_id=str(order_id))
        code = data.promo_code.casefold()
        repriced = await until_shown(
            lambda: reads.order(order_id),
            lambda shown: shown is not None and (shown.promo_code or "").casefold() == code,
        )
        return Response(repriced or order, status_code=HTTP_200_OK, headers={"Location": location})


class WaitlistController(Controller):
    tags = ["waitlists"]

    @post(
        "/api/v1/conventions/{convention_id:uuid}/waitlist",
        operation_id="joinWaitlist",
        status_code=HTTP_201_CREATED,
        summary="Wait for a sold-out badge type or option",
        description="201 with the entry and its place in line. Logged in, the e-mail and "
        "name default to the account's; guests give them. An option's waitlist is for a "
        "registration of the caller's. 409 `not_sold_out` while there is stock to buy, "
        "`already_waiting` for a second place in the same line.",
    )
    async def join(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: NewWaitlistEntry,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        guests = await gateway.reads.guests_allowed(convention_id)
        if guests is None:
            raise not_found(convention_id)
        who = await caller_of(request)
        registration: RegistrationView | None = None
        if data.registration_id is not None:
            registration = await _registration(request, gateway, data.registration_id)
            if registration.convention_id != convention_id:
                raise _unknown_registration(data.registration_id)
        elif not guests and not who.signed_in and not who.staff_of(convention_id):
            raise Problem(
                401,
                "login-required",
                "Log in to wait for a seat",
                "This convention takes registrations from accounts only: log in first.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        email, name = _who_waits(data, who, registration)
        reads = OrderReads(gateway.read_engine)
        entry_id = command_id_for(f"waitlist:{convention_id}", idempotency_key)
        location = entry_location(entry_id)
        if idempotency_key is not None:
            known = await reads.entry(entry_id)
            if known is not None:
                if not _same_entry(known, data, email):
                    raise key_reused()
                return Response(known, status_code=HTTP_201_CREATED, headers={"Location": location})
        command = JoinWaitlist(
            convention_id=convention_id,
            entry_id=entry_id,
            kind=data.kind,
            code=data.code,
            variant=data.variant,
            quantity=data.quantity,
            email=email,
            name=name,
            account_id=owner_of(who, email),
            registration_id=data.registration_id,
        )
        outcome = await gateway.decide(request, command, entry_id, ATTENDEE)
        if outcome is None:
            return _accepted(location, entry_id, data.registration_id, entry_id=entry_id)
        if not outcome.accepted:
            raise _refused(outcome, entry_id=str(entry_id))
        entry = await until_shown(lambda: reads.entry(entry_id), lambda found: found is not None)
        if entry is None:
            return _accepted(location, entry_id, data.registration_id, entry_id=entry_id)
        return Response(entry, status_code=HTTP_201_CREATED, headers={"Location": location})

    @get(
        "/api/v1/waitlist/{entry_id:uuid}",
        operation_id="getWaitlistEntry",
        summary="A waitlist entry: status, place in line, when an offer runs out",
    )
    async def get_entry(
        self, request: Request[Any, Any, Any], gateway: Gateway, entry_id: uuid.UUID
    ) -> WaitlistEntryView:
        return await _entry(request, gateway, entry_id)

    @delete(
        "/api/v1/waitlist/{entry_id:uuid}",
        operation_id="leaveWaitlist",
        status_code=HTTP_200_OK,
        summary="Leave a waitlist; an open offer goes to the next in line",
    )
    async def leave(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        entry_id: uuid.UUID,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        entry = await _entry(request, gateway, entry_id)
        location = entry_location(entry_id)
        if entry.status == "left":
            return Response(entry, status_code=HTTP_200_OK, headers={"Location": location})
        command_id = command_id_for(f"leave:{entry_id}", idempotency_key)
        command = LeaveWaitlist(convention_id=entry.convention_id, entry_id=entry_id)
        outcome = await gateway.decide(request, command, command_id, ATTENDEE)
        if outcome is None:
            return _accepted(location, command_id, entry.registration_id, entry_id=entry_id)
        if not outcome.accepted:
            raise _refused(outcome, entry_id=str(entry_id))
        reads = OrderReads(gateway.read_engine)
        left = await until_shown(
            lambda: reads.entry(entry_id),
            lambda found: found is not None and found.status == "left",
        )
        return Response(left or entry, status_code=HTTP_200_OK, headers={"Location": location})

    @post(
        "/api/v1/waitlist/{entry_id:uuid}/accept",
        operation_id="acceptOffer",
        status_code=HTTP_201_CREATED,
        summary="Take the stock a waitlist offer holds",
        description="A badge offer becomes a registration placed on the held seat, with "
        "the options and promo code given: 201 with it, `pending_payment` (its order to "
        "pay) or `confirmed`. An option offer becomes an order of the entry's registration: "
        "201 with the registration and its orders. 409 `offer_expired` once the offer ran "
        "out, `no_offer` without one.",
    )
    async def accept(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        entry_id: uuid.UUID,
        data: OfferAcceptance,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        entry = await _entry(request, gateway, entry_id)
        offer_id = command_id_for(f"offer:{entry_id}", idempotency_key)
        fingerprint = request_hash(
            data.model_dump(mode="json", exclude_defaults=True) | {"entry_id": str(entry_id)}
        )
        command_id = offer_id
        if idempotency_key is not None:
            command_id = request_command_id(offer_id, fingerprint)
        registration_id = entry.registration_id if entry.kind == "option" else None
        registration_id = registration_id or offer_id
        if not await _decided(gateway, command_id):
            _check_offered(entry)
        command = AcceptOffer(
            convention_id=entry.convention_id,
            entry_id=entry_id,
            registration_id=registration_id,
            options=tuple(data.options),
            promo_code=data.promo_code,
            request_hash=fingerprint,
        )
        outcome = await gateway.decide(request, command, command_id, ATTENDEE)
        location = registration_location(registration_id)
        if outcome is None:
            return _accepted(location, command_id, registration_id, entry_id=entry_id)
        if not outcome.accepted:
            raise _refused(outcome, entry_id=str(entry_id))
        detail = await _accepted_registration(gateway, entry, registration_id)
        if detail is None:
            return _accepted(location, command_id, registration_id, entry_id=entry_id)
        return Response(detail, status_code=HTTP_201_CREATED, headers={"Location": location})

    @get(
        "/api/v1/me/waitlist",
        operation_id="myWaitlist",
        summary="The caller's waitlist entries",
        description="Those joined while logged in, and the guest entries of the account's "
        "e-mail once it is verified.",
    )
    async def my_waitlist(
        self, request: Request[Any, Any, Any], gateway: Gateway
    ) -> WaitlistEntries:
        who = await signed_in(request)
        assert who.account is not None
        key = who.account.email_key if who.account.verified else None
        reads = OrderReads(gateway.read_engine)
        return WaitlistEntries(items=await reads.entries_of(who.account.account_id, key))


class AdminOrderController(Controller):
    path = "/api/v1/admin/conventions/{convention_id:uuid}"
    guards = [convention_guard]
    tags = ["admin"]

    @get(
        "/orders",
        operation_id="adminListOrders",
        summary="A convention's orders with their lines and totals, oldest first, by cursor",
    )
    async def list_orders(
        self,
        gateway: Gateway,
        convention_id: uuid.UUID,
        status: OrderStatusFilter = None,
        cursor: str | None = None,
        limit: Limit = 50,
    ) -> OrderPage:
        if status is not None and status not in ORDER_STATUSES:
            raise Problem(
                400,
                "validation-error",
                "Invalid request",
                f"status must be one of {', '.join(ORDER_STATUSES)}.",
                errors=[{"field": "status", "message": "unknown status"}],
            )
        if not await gateway.reads.convention_exists(convention_id):
            raise not_found(convention_id)
        items, next_cursor = await OrderReads(gateway.read_engine).orders_page(
            convention_id, status=status, cursor=cursor, limit=limit
        )
        return OrderPage(items=items, next=next_cursor)

    @get(
        "/waitlists",
        operation_id="adminListWaitlists",
        summary="A convention's waitlists: each line in order, with every entry's status",
    )
    async def list_waitlists(self, gateway: Gateway, convention_id: uuid.UUID) -> WaitlistsView:
        if not await gateway.reads.convention_exists(convention_id):
            raise not_found(convention_id)
        return await OrderReads(gateway.read_engine).waitlists(convention_id)


async def _registration(
    request: Request[Any, Any, Any], gateway: Gateway, registration_id: uuid.UUID
) -> RegistrationView:
    """The caller's registration: unknown, or another account's, is a 404."""
    known = await gateway.reads.registration(registration_id)
    if known is None or not await may_see(request, gateway, known[0]):
        raise _unknown_registration(registration_id)
    return known[0]


async def _entry(
    request: Request[Any, Any, Any], gateway: Gateway, entry_id: uuid.UUID
) -> WaitlistEntryView:
    """The caller's waitlist entry. Like a registration, one joined by an account is that
    account's (and visible to staff of its convention and admins); a guest's stays
    reachable by its id."""
    entry = await OrderReads(gateway.read_engine).entry(entry_id)
    if entry is not None and entry.account_id is not None:
        who = await caller_of(request)
        mine = who.account is not None and who.account.account_id == entry.account_id
        if not mine and not who.staff_of(entry.convention_id):
            entry = None
    if entry is None:
        raise Problem(
            404,
            "waitlist-entry-not-found",
            "Waitlist entry not found",
            f"There is no waitlist entry {entry_id}.",
        )
    return entry


def _who_waits(
    data: NewWaitlistEntry, who: Principal, registration: RegistrationView | None
) -> tuple[str, str]:
    """The e-mail and name the entry is for: as given, else the caller's account's, else
    (for an option) the registration's."""
    email = data.email or (who.account.email if who.account else None)
    name = data.name or (who.account.name if who.account else None)
    if registration is not None:
        email = email or registration.email
        name = name or registration.name
    if email is None or name is None:
        missing = [field for field, value in (("email", email), ("name", name)) if value is None]
        raise Problem(
            422,
            "validation-error",
            "Invalid request",
            "Give an e-mail and a name to be offered a place, or log in.",
            errors=[{"field": field, "message": "required unless logged in"} for field in missing],
        )
    return email, name


def _same_entry(known: WaitlistEntryView, data: NewWaitlistEntry, email: str) -> bool:
    """Whether a retried join asks for what the key's first join did."""
    return (
        (known.kind, known.code.casefold(), (known.variant or "").casefold(), known.quantity)
        == (data.kind, data.code.casefold(), (data.variant or "").casefold(), data.quantity)
        and email_key(known.email) == email_key(email)
        and known.registration_id == data.registration_id
    )


async def _decided(gateway: Gateway, command_id: uuid.UUID) -> bool:
    return str(command_id) in await gateway.reads.outcomes([str(command_id)])


async def _accepted_registration(
    gateway: Gateway, entry: WaitlistEntryView, registration_id: uuid.UUID
) -> RegistrationDetail | None:
    """The registration an accepted offer placed (or added an order to), once both read
    models show it: the registration decided, the entry accepted, an unpaid order with it."""
    reads = OrderReads(gateway.read_engine)

    async def probe() -> RegistrationDetail | None:
        known = await gateway.reads.registration(registration_id)
        if known is None or known[0].status not in DECIDED_FOR:
            return None
        current = await reads.entry(entry.entry_id)
        if current is None or current.status != "accepted":
            return None
        return await reads.detail(known[0])

    def shown(detail: RegistrationDetail | None) -> bool:
        return detail is not None and (
            detail.status != PENDING_PAYMENT or detail.amount_due_cents > 0
        )

    return await until_shown(probe, shown)


def _removed(detail: RegistrationDetail, code: str, variant: str | None) -> int:
    """Units of an option the registration gave back so far."""
    return sum(
        line.removed
        for order in detail.orders
        for line in order.lines
        if line.kind == "option"
        and line.code.casefold() == code.casefold()
        and (line.variant or "").casefold() == (variant or "").casefold()
    )


def _check_decided(registration: RegistrationView) -> None:
    if registration.status == "pending":
        raise Problem(
            409,
            "registration-pending",
            "Registration not decided yet",
            "Try again once the registration is decided.",
            registration_id=str(registration.registration_id),
        )


def _check_offered(entry: WaitlistEntryView) -> None:
    if entry.status == "offered":
        return
    reason = (
        RejectionReason.OFFER_EXPIRED if entry.status == "expired" else RejectionReason.NO_OFFER
    )
    raise Problem(
        409,
        "offer-refused",
        "No offer to accept",
        _REASONS[reason.value],
        reason=reason.value,
        entry_id=str(entry.entry_id),
        entry_status=entry.status,
    )


def _accepted(
    location: str,
    command_id: uuid.UUID,
    registration_id: uuid.UUID | None,
    *,
    order_id: uuid.UUID | None = None,
    entry_id: uuid.UUID | None = None,
) -> Response[Any]:
    return Response(
        OrderAccepted(
            command_id=command_id,
            registration_id=registration_id,
            order_id=order_id,
            entry_id=entry_id,
        ),
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": location},
    )


def _refused(outcome: Outcome, **subject: Any) -> Problem:
    """A decided refusal as problem details: a reused key and a request the decider could
    not process are the request's fault (422); the rest are the state of the convention or
    the registration (409)."""
    reason = outcome.reason or "rejected"
    if reason == RejectionReason.IDEMPOTENCY_KEY_REUSED.value:
        return key_reused()
    if reason == SET_ASIDE:
        return Problem(
            422,
            "request-invalid",
            "Request could not be processed",
            _REASONS[SET_ASIDE],
            reason=SET_ASIDE,
            **subject,
        )
    return Problem(
        409,
        "order-refused",
        "Refused",
        _REASONS.get(reason, f"The request was refused ({reason})."),
        reason=reason,
        **subject,
    )


def _unknown_registration(registration_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "registration-not-found",
        "Registration not found",
        f"There is no registration {registration_id}.",
    )


def _unknown_order(order_id: uuid.UUID) -> Problem:
    return Problem(404, "order-not-found", "Order not found", f"There is no order {order_id}.")


_REASONS = {
    "not_open": "The convention is not open for registration.",
    "unknown_badge_type": "The convention has no such badge type.",
    "sold_out": "What was asked for is sold out.",
    "unknown_registration": "There is no such registration.",
    "already_registered": "This e-mail already holds a registration for this convention.",
    "not_active": "The registration no longer holds its seat (cancelled or expired).",
    "invalid_transition": "The registration is not in a state that allows this.",
    "unknown_option": "The convention sells no such option.",
    "unknown_variant": "The option has no such variant, or needs one to be chosen.",
    "option_not_for_badge": "The option cannot be bought with this registration's badge type.",
    "limit_reached": "More of an option than one registration may hold.",
    "unknown_code": "There is no such promo code.",
    "code_not_yet_valid": "The promo code is not valid yet.",
    "code_expired": "The promo code has expired.",
    "code_used_up": "The promo code has been used as often as it may be.",
    "code_not_applicable": "The promo code does not apply to anything in this order.",
    "code_already_applied": "The order has a promo code already.",
    "not_pending_payment": "The order is not waiting for its payment.",
    "not_removable": "The registration does not hold that many paid units of this option.",
    "unknown_order": "There is no such order.",
    "not_sold_out": "There is stock left to buy: no need to wait.",
    "already_waiting": "This e-mail waits in this line already.",
    "unknown_entry": "There is no such waitlist entry.",
    "no_offer": "The entry has no open offer.",
    "offer_expired": "The offer ran out.",
    "currency_mismatch": "The order is priced in another currency.",
    SET_ASIDE: "The request could not be processed and was set aside for the operators.",
}
