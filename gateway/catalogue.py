"""The admin catalogue: what a convention sells beyond its badge types' seats (price tiers,
quotas, add-on options, promo codes) and how it sells (its order policy).

Each write is a command to the registration decider, which decides it in the convention's
order with every registration; the route waits for the decision and answers with what the
read model then shows. Catalogue commands replace what they name, so a retry under the same
`Idempotency-Key` is the same command, decided once: it is answered from the catalogue as
it is, and refused as a reused key when that no longer shows the retried body.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, Response, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from gateway.conventions import ADMIN, convention_guard, not_found
from gateway.deps import Gateway, IdempotencyKey, command_id_for, key_reused
from gateway.order_reads import OrderReads, until_shown
from gateway.order_views import (
    NewOption,
    NewPromoCode,
    OptionBody,
    OrderAccepted,
    OrderPolicyBody,
    PolicyView,
    PriceTiersBody,
    PromoCodeList,
    PromoCodeView,
    QuotaBody,
)
from gateway.problems import Problem
from gateway.views import BadgeTypeView, ConventionView, OptionView
from schemas.catalogue import OptionSpec, OrderPolicy, PromoCodeSpec
from schemas.orders import (
    CreatePromoCode,
    DefineOption,
    DefinePriceTiers,
    SetBadgeQuota,
    SetOrderPolicy,
)
from schemas.registration import SET_ASIDE, Command, RejectionReason

V = TypeVar("V")
CodePath = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="A badge type or option code.",
    ),
]


def catalogue_location(convention_id: uuid.UUID) -> str:
    return f"/api/v1/conventions/{convention_id}"


class CatalogueController(Controller):
    path = "/api/v1/admin/conventions/{convention_id:uuid}"
    guards = [convention_guard]
    tags = ["admin"]

    @put(
        "/badge-types/{code:str}/tiers",
        operation_id="definePriceTiers",
        status_code=HTTP_200_OK,
        summary="Replace a badge type's price tiers",
        description="Answers the badge type at the price now in force. A tier that keeps "
        "its name keeps its count of seats sold. 404 for a badge type the convention does "
        "not have.",
    )
    async def define_tiers(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        code: CodePath,
        data: PriceTiersBody,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        badge = _badge_type(await _convention(gateway, convention_id), code)
        wanted = [_tier_terms(tier) for tier in data.tiers]

        async def shown() -> BadgeTypeView | None:
            return _find_badge_type(await gateway.reads.convention(convention_id), badge.code)

        return await _change(
            request,
            gateway,
            DefinePriceTiers(
                convention_id=convention_id, badge_type=badge.code, tiers=tuple(data.tiers)
            ),
            idempotency_key,
            scope=f"tiers:{convention_id}:{badge.code}",
            read=shown,
            matches=lambda view: [_tier_terms(tier) for tier in view.tiers] == wanted,
            status=HTTP_200_OK,
        )

    @put(
        "/badge-types/{code:str}/quota",
        operation_id="setBadgeQuota",
        status_code=HTTP_200_OK,
        summary="Raise or lower a badge type's quota",
        description="409 `quota_below_taken` below the seats taken. Seats freed go to the "
        "badge type's waitlist first.",
    )
    async def set_quota(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        code: CodePath,
        data: QuotaBody,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        badge = _badge_type(await _convention(gateway, convention_id), code)

        async def shown() -> BadgeTypeView | None:
            return _find_badge_type(await gateway.reads.convention(convention_id), badge.code)

        return await _change(
            request,
            gateway,
            SetBadgeQuota(convention_id=convention_id, badge_type=badge.code, quota=data.quota),
            idempotency_key,
            scope=f"quota:{convention_id}:{badge.code}",
            read=shown,
            matches=lambda view: view.quota == data.quota,
            status=HTTP_200_OK,
        )

    @post(
        "/options",
        operation_id="defineOption",
        status_code=HTTP_201_CREATED,
        summary="Add an option: a T-shirt with sizes, a banquet seat, a workshop",
        description="409 `code_exists` for a code the convention has (change it with PUT); "
        "422 `unknown_badge_type` for a badge type it does not have.",
    )
    async def add_option(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: NewOption,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        convention = await _convention(gateway, convention_id)
        spec = data.spec(data.code)
        scope = f"option:{convention_id}:{spec.code.casefold()}"
        if _find_option(convention, spec.code) is not None and not await _decided(
            gateway, scope, idempotency_key
        ):
            raise Problem(
                409,
                "option-exists",
                "Option exists",
                f"The convention has an option {spec.code} already: change it with PUT.",
                reason=RejectionReason.CODE_EXISTS.value,
                subject=spec.code,
            )
        return await _define_option(
            request, gateway, convention, spec, idempotency_key, scope, HTTP_201_CREATED
        )

    @put(
        "/options/{code:str}",
        operation_id="changeOption",
        status_code=HTTP_200_OK,
        summary="Change an option: name, price (for orders from now on), quota, limits",
        description="Variants can be added, never taken away. 404 for an option the "
        "convention does not have.",
    )
    async def change_option(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        code: CodePath,
        data: OptionBody,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        convention = await _convention(gateway, convention_id)
        option = _find_option(convention, code)
        if option is None:
            raise Problem(
                404,
                "option-not-found",
                "Option not found",
                f"The convention has no option {code}.",
                reason=RejectionReason.UNKNOWN_OPTION.value,
            )
        spec = data.spec(option.code)
        scope = f"option-change:{convention_id}:{option.code.casefold()}"
        return await _define_option(
            request, gateway, convention, spec, idempotency_key, scope, HTTP_200_OK
        )

    @post(
        "/promo-codes",
        operation_id="createPromoCode",
        status_code=HTTP_201_CREATED,
        summary="Create a promo code: percent or amount off, limited in uses and time",
        description="409 `code_exists` for a code the convention has, whatever its case.",
    )
    async def create_promo_code(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: NewPromoCode,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        reads = OrderReads(gateway.read_engine)
        promo = PromoCodeSpec(**data.model_dump())
        wanted = _promo_terms(promo.model_dump())

        async def shown() -> PromoCodeView | None:
            found = await reads.promo_codes(convention_id, data.code)
            return found[0] if found else None

        return await _change(
            request,
            gateway,
            CreatePromoCode(convention_id=convention_id, promo=promo),
            idempotency_key,
            scope=f"promo:{convention_id}:{data.code.casefold()}",
            read=shown,
            matches=lambda view: _promo_terms(view.model_dump()) == wanted,
            status=HTTP_201_CREATED,
        )

    @get(
        "/promo-codes",
        operation_id="listPromoCodes",
        summary="The convention's promo codes, with their uses",
    )
    async def list_promo_codes(self, gateway: Gateway, convention_id: uuid.UUID) -> PromoCodeList:
        await _convention(gateway, convention_id)
        return PromoCodeList(items=await OrderReads(gateway.read_engine).promo_codes(convention_id))

    @put(
        "/order-policy",
        operation_id="setOrderPolicy",
        status_code=HTTP_200_OK,
        summary="Set how the convention sells: currency, holds, offers, refunds",
        description="409 `currency_mismatch` for a new currency once something is priced "
        "in the old one.",
    )
    async def set_policy(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        data: OrderPolicyBody,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        await _convention(gateway, convention_id)
        policy = data.policy()
        reads = OrderReads(gateway.read_engine)
        return await _change(
            request,
            gateway,
            SetOrderPolicy(convention_id=convention_id, policy=policy),
            idempotency_key,
            scope=f"policy:{convention_id}",
            read=lambda: reads.policy(convention_id),
            matches=lambda view: _policy_of(view) == policy,
            status=HTTP_200_OK,
        )

    @get(
        "/order-policy",
        operation_id="getOrderPolicy",
        summary="How the convention sells: currency, holds, offers, refunds",
    )
    async def get_policy(self, gateway: Gateway, convention_id: uuid.UUID) -> PolicyView:
        await _convention(gateway, convention_id)
        found = await OrderReads(gateway.read_engine).policy(convention_id)
        if found is not None:
            return found
        default = OrderPolicy()
        return PolicyView(convention_id=convention_id, **default.model_dump())


async def _define_option(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    convention: ConventionView,
    spec: OptionSpec,
    idempotency_key: str | None,
    scope: str,
    status: int,
) -> Response[Any]:
    known = {badge.code.casefold() for badge in convention.badge_types}
    unknown = [code for code in spec.badge_types if code.casefold() not in known]
    if unknown:
        detail = f"The convention has no badge type {', '.join(unknown)}."
        raise Problem(
            422,
            "unknown-badge-type",
            "Unknown badge type",
            detail,
            reason=RejectionReason.UNKNOWN_BADGE_TYPE.value,
            errors=[{"field": "badge_types", "message": detail}],
        )
    convention_id = convention.convention_id

    async def shown() -> OptionView | None:
        return _find_option(await gateway.reads.convention(convention_id), spec.code)

    return await _change(
        request,
        gateway,
        DefineOption(convention_id=convention_id, option=spec),
        idempotency_key,
        scope=scope,
        read=shown,
        matches=lambda view: _option_shows(view, spec),
        status=status,
    )


async def _change(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    command: Command,
    idempotency_key: str | None,
    *,
    scope: str,
    read: Callable[[], Awaitable[V | None]],
    matches: Callable[[V], bool],
    status: int,
) -> Response[Any]:
    """Decide a catalogue command and answer with what it changed, once the read model
    shows it (202 if it is not decided, or not shown, within the wait)."""
    command_id = command_id_for(scope, idempotency_key)
    location = {"Location": catalogue_location(command.convention_id)}

    def shown(view: V | None) -> bool:
        return view is not None and matches(view)

    if idempotency_key is not None:
        earlier = (await gateway.reads.outcomes([str(command_id)])).get(str(command_id))
        if earlier is not None:
            if not earlier.accepted:
                raise _rejected(command, earlier.reason)
            current = await read()
            if not shown(current):
                raise key_reused()
            return Response(current, status_code=status, headers=location)
    outcome = await gateway.decide(request, command, command_id, ADMIN)
    if outcome is None:
        return _accepted(command, command_id)
    if not outcome.accepted:
        raise _rejected(command, outcome.reason)
    current = await until_shown(read, shown)
    if current is None or not shown(current):
        return _accepted(command, command_id)
    return Response(current, status_code=status, headers=location)


async def _decided(gateway: Gateway, scope: str, idempotency_key: str | None) -> bool:
    """Whether this key's command was decided already (a retry, answered as decided)."""
    if idempotency_key is None:
        return False
    command_id = str(command_id_for(scope, idempotency_key))
    return command_id in await gateway.reads.outcomes([command_id])


def _accepted(command: Command, command_id: uuid.UUID) -> Response[Any]:
    return Response(
        OrderAccepted(command_id=command_id, convention_id=command.convention_id),
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": catalogue_location(command.convention_id)},
    )


CONFLICTS = frozenset(
    {
        RejectionReason.QUOTA_BELOW_TAKEN.value,
        RejectionReason.CODE_EXISTS.value,
        RejectionReason.CURRENCY_MISMATCH.value,
        RejectionReason.INVALID_TRANSITION.value,
        RejectionReason.NOT_OPEN.value,
    }
)
"""Rejections for the state the convention is in (409); the others name something the
convention does not have, or terms it cannot take (422)."""

_REASONS = {
    RejectionReason.QUOTA_BELOW_TAKEN.value: "The quota cannot go below the seats taken.",
    RejectionReason.CODE_EXISTS.value: "The convention has this code already.",
    RejectionReason.CURRENCY_MISMATCH.value: "Prices are set in another currency already.",
    RejectionReason.UNKNOWN_BADGE_TYPE.value: "The convention has no such badge type.",
    RejectionReason.UNKNOWN_OPTION.value: "The convention has no such option.",
    RejectionReason.UNKNOWN_VARIANT.value: "A variant cannot be taken away from an option.",
    RejectionReason.UNKNOWN_CONVENTION.value: "There is no such convention.",
    SET_ASIDE: "The request could not be processed and was set aside for the operators.",
}


def _rejected(command: Command, reason: str | None) -> Problem:
    reason = reason or "rejected"
    return Problem(
        409 if reason in CONFLICTS else 422,
        "catalogue-change-rejected",
        "Catalogue change rejected",
        _REASONS.get(reason, f"The convention refused the change ({reason})."),
        reason=reason,
        command=command.message_type,
        convention_id=str(command.convention_id),
    )


async def _convention(gateway: Gateway, convention_id: uuid.UUID) -> ConventionView:
    view = await gateway.reads.convention(convention_id)
    if view is None:
        raise not_found(convention_id)
    return view


def _find_badge_type(view: ConventionView | None, code: str) -> BadgeTypeView | None:
    if view is None:
        return None
    return next((b for b in view.badge_types if b.code.casefold() == code.casefold()), None)


def _badge_type(view: ConventionView, code: str) -> BadgeTypeView:
    found = _find_badge_type(view, code)
    if found is None:
        raise Problem(
            404,
            "badge-type-not-found",
            "Badge type not found",
            f"The convention has no badge type {code}.",
            reason=RejectionReason.UNKNOWN_BADGE_TYPE.value,
        )
    return found


def _find_option(view: ConventionView | None, code: str) -> OptionView | None:
    if view is None:
        return None
    return next((o for o in view.options if o.code.casefold() == code.casefold()), None)


def _tier_terms(tier: Any) -> tuple[str, int, Any, int | None]:
    """What a tier was defined with, from a `PriceTier` or a `TierView` alike."""
    return (tier.name, tier.price_cents, tier.until, tier.size)


def _option_shows(view: OptionView, spec: OptionSpec) -> bool:
    """The option shows the terms defined: its own, and every variant named (those defined
    before stay)."""
    variants = {v.code.casefold(): v for v in view.variants}
    return (
        (view.name, view.price_cents, view.quota, view.max_per_registration)
        == (spec.name, spec.price_cents, spec.quota, spec.max_per_registration)
        and sorted(b.casefold() for b in view.badge_types)
        == sorted(b.casefold() for b in spec.badge_types)
        and all(
            (found := variants.get(v.code.casefold())) is not None
            and (found.name, found.quota) == (v.name, v.quota)
            for v in spec.variants
        )
    )


PROMO_TERMS = ("percent_off", "amount_off_cents", "max_uses", "valid_from", "valid_until")


def _promo_terms(promo: dict[str, Any]) -> tuple[Any, ...]:
    return (
        *(promo.get(name) for name in PROMO_TERMS),
        sorted(promo.get("badge_types", ())),
        sorted(promo.get("options", ())),
    )


def _policy_of(view: PolicyView) -> OrderPolicy:
    return OrderPolicy(**view.model_dump(exclude={"convention_id"}))
