"""Pricing an order: which lines, at which prices, with which discount, or why not.

Pure rules over the decision state: the price of a seat is the tier in force at the
command's time, options are checked against their limits and stock, a promo code against its
window, its uses and what it applies to. The decider records the result in the event; nothing
is ever priced again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consumers.registration.state import Convention, Option, Promo, Registration
from schemas.catalogue import OptionChoice, OrderLine
from schemas.registration import OrderTerms, RejectionReason


@dataclass(frozen=True)
class Refusal:
    reason: RejectionReason
    subject: str = ""
    """The option or promo code the reason is about."""


def badge_line(convention: Convention, code: str, now: datetime) -> OrderLine | None:
    badge = convention.badge(code)
    if badge is None:
        return None
    price, tier = badge.price_at(now)
    return OrderLine(
        kind="badge",
        code=badge.code,
        name=badge.name,
        quantity=1,
        unit_price_cents=price,
        tier=tier,
        total_cents=price,
    )


def merged(choices: Sequence[OptionChoice]) -> list[OptionChoice]:
    """The same option and variant asked for twice is one line of both quantities."""
    totals: dict[tuple[str, str | None], int] = {}
    for choice in choices:
        key = (choice.code, choice.variant)
        totals[key] = totals.get(key, 0) + choice.quantity
    return [
        OptionChoice.model_construct(code=code, variant=variant, quantity=quantity)
        for (code, variant), quantity in totals.items()
    ]


def option_lines(
    convention: Convention,
    badge_type: str,
    choices: Sequence[OptionChoice],
    holder: Registration | None,
) -> list[OrderLine] | Refusal:
    """Lines for the options asked for, with a seat of `badge_type`, by a registration that
    already holds `holder`'s options (None for a new one)."""
    lines = []
    per_option: dict[str, int] = {}
    for choice in merged(choices):
        option = convention.option(choice.code)
        if option is None:
            return Refusal(RejectionReason.UNKNOWN_OPTION, choice.code)
        spec = option.spec
        if spec.badge_types and badge_type not in spec.badge_types:
            return Refusal(RejectionReason.OPTION_NOT_FOR_BADGE, choice.code)
        if option.variants and option.variant(choice.variant) is None:
            return Refusal(RejectionReason.UNKNOWN_VARIANT, choice.code)
        if not option.variants and choice.variant is not None:
            return Refusal(RejectionReason.UNKNOWN_VARIANT, choice.code)
        per_option[choice.code] = per_option.get(choice.code, 0) + choice.quantity
        held = holder.option_units(choice.code) if holder is not None else 0
        if held + per_option[choice.code] > spec.max_per_registration:
            return Refusal(RejectionReason.LIMIT_REACHED, choice.code)
        lines.append(
            OrderLine(
                kind="option",
                code=option.code,
                variant=choice.variant,
                name=_line_name(option, choice.variant),
                quantity=choice.quantity,
                unit_price_cents=spec.price_cents,
                total_cents=spec.price_cents * choice.quantity,
            )
        )
    return _in_stock(convention, lines) or lines


MAX_LINE_NAME = 200


def _line_name(option: Option, variant: str | None) -> str:
    """The option's name with its variant's, cut to what an order line holds everywhere it
    is stored."""
    chosen = option.variant(variant)
    name = option.spec.name if chosen is None else f"{option.spec.name} ({chosen.name})"
    return name[:MAX_LINE_NAME]


def _in_stock(convention: Convention, lines: Sequence[OrderLine]) -> Refusal | None:
    """Every option line fits what is left of its option and of its variant, counting the
    other lines of the same option in this order."""
    asked: dict[str, int] = {}
    for line in lines:
        asked[line.code] = asked.get(line.code, 0) + line.quantity
    for line in lines:
        option = convention.option(line.code)
        if option is None:
            return Refusal(RejectionReason.UNKNOWN_OPTION, line.code)
        if option.spec.quota is not None and option.taken + asked[line.code] > option.spec.quota:
            return Refusal(RejectionReason.SOLD_OUT, line.code)
        variant = option.variant(line.variant)
        left = None if variant is None else variant.remaining
        if left is not None and line.quantity > left:
            return Refusal(RejectionReason.SOLD_OUT, line.code)
    return None


def usable_promo(convention: Convention, code: str, now: datetime) -> Promo | Refusal:
    promo = convention.promo(code)
    if promo is None:
        return Refusal(RejectionReason.UNKNOWN_CODE, code)
    spec = promo.spec
    if spec.valid_from is not None and now < spec.valid_from:
        return Refusal(RejectionReason.CODE_NOT_YET_VALID, promo.code)
    if spec.valid_until is not None and now >= spec.valid_until:
        return Refusal(RejectionReason.CODE_EXPIRED, promo.code)
    if spec.max_uses is not None and promo.uses >= spec.max_uses:
        return Refusal(RejectionReason.CODE_USED_UP, promo.code)
    return promo


def discounted(lines: Sequence[OrderLine], promo: Promo) -> list[OrderLine] | Refusal:
    """The lines with the code's discount spread over those it applies to: a percentage of
    each line (rounded down), or a fixed amount taken line by line in order, never more than
    a line's price."""
    spec = promo.spec
    scoped = bool(spec.badge_types or spec.options)

    def applies(line: OrderLine) -> bool:
        if not scoped:
            return True
        wanted = spec.badge_types if line.kind == "badge" else spec.options
        return line.code in wanted

    if not any(applies(line) and _full(line) > 0 for line in lines):
        return Refusal(RejectionReason.CODE_NOT_APPLICABLE, promo.code)
    left = spec.amount_off_cents or 0
    result = []
    for line in lines:
        full = _full(line)
        discount = 0
        if applies(line):
            if spec.percent_off is not None:
                discount = full * spec.percent_off // 100
            else:
                discount = min(full, left)
                left -= discount
        result.append(
            line.model_copy(update={"discount_cents": discount, "total_cents": full - discount})
        )
    return result


def _full(line: OrderLine) -> int:
    return line.unit_price_cents * line.quantity


def terms(
    order_id: uuid.UUID, lines: Sequence[OrderLine], currency: str, promo: Promo | None
) -> OrderTerms:
    subtotal = sum(_full(line) for line in lines)
    total = sum(line.total_cents for line in lines)
    return OrderTerms(
        order_id=order_id,
        lines=tuple(lines),
        subtotal_cents=subtotal,
        discount_cents=subtotal - total,
        total_cents=total,
        currency=currency,
        promo_code=promo.code if promo is not None else None,
    )


def price(
    convention: Convention,
    order_id: uuid.UUID,
    *,
    badge_type: str,
    seat: bool,
    choices: Sequence[OptionChoice],
    promo_code: str | None,
    now: datetime,
    holder: Registration | None = None,
) -> OrderTerms | Refusal:
    """An order: a seat of `badge_type` when `seat`, the options chosen, the promo code."""
    lines: list[OrderLine] = []
    if seat:
        line = badge_line(convention, badge_type, now)
        if line is None:
            return Refusal(RejectionReason.UNKNOWN_BADGE_TYPE, badge_type)
        lines.append(line)
    options = option_lines(convention, badge_type, choices, holder)
    if isinstance(options, Refusal):
        return options
    lines.extend(options)
    promo = None
    if promo_code is not None:
        found = usable_promo(convention, promo_code, now)
        if isinstance(found, Refusal):
            return found
        promo = found
        priced = discounted(lines, promo)
        if isinstance(priced, Refusal):
            return priced
        lines = priced
    return terms(order_id, lines, convention.policy.currency, promo)
