"""What a convention sells and what an order holds: price tiers, add-on options, promo codes,
order lines. Values inside commands and events; money is always integer minor units
(cents) in the convention's currency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from schemas.identity import check_text

Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_text)]
Cents = Annotated[int, Field(ge=0, le=100_000_000)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Quantity = Annotated[int, Field(ge=1, le=100)]
MAX_TIERS = 20
MAX_OPTIONS = 200
MAX_VARIANTS = 50
MAX_LINES = 50


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("a time must say its offset (e.g. 2027-03-01T00:00:00Z)")
    return None if value is None else value.astimezone(UTC)


Moment = Annotated[datetime, AfterValidator(_aware)]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceTier(Value):
    """A price that holds until a moment (`until`, exclusive), for the first `size` seats
    sold at it, or both; the first tier in order that still holds is the price in force,
    and the badge type's own price once none does."""

    name: Name
    price_cents: Cents
    until: Moment | None = None
    size: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class VariantSpec(Value):
    code: Code
    name: Name
    quota: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    """The variant's own stock (a T-shirt size); None: only the option's quota bounds it."""


class OptionSpec(Value):
    """An add-on: a T-shirt with sizes, a banquet seat, a workshop."""

    code: Code
    name: Name
    price_cents: Cents
    quota: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    """Units the convention can sell; None for no limit."""
    max_per_registration: Quantity = 1
    variants: Annotated[tuple[VariantSpec, ...], Field(max_length=MAX_VARIANTS)] = ()
    badge_types: Annotated[tuple[Code, ...], Field(max_length=100)] = ()
    """The badge types it may be bought with; empty for every badge type."""

    @model_validator(mode="after")
    def _unique_variants(self) -> Self:
        if len({v.code.casefold() for v in self.variants}) != len(self.variants):
            raise ValueError("variant codes must be unique, whatever their case")
        return self


class PromoCodeSpec(Value):
    """A discount: percent or a fixed amount, on the whole order or on the badge types and
    options it names, at most `max_uses` orders, within its validity window."""

    code: Code
    percent_off: Annotated[int, Field(ge=1, le=100)] | None = None
    amount_off_cents: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    badge_types: Annotated[tuple[Code, ...], Field(max_length=100)] = ()
    options: Annotated[tuple[Code, ...], Field(max_length=MAX_OPTIONS)] = ()
    max_uses: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    valid_from: Moment | None = None
    valid_until: Moment | None = None

    @model_validator(mode="after")
    def _one_discount(self) -> Self:
        if (self.percent_off is None) == (self.amount_off_cents is None):
            raise ValueError("give exactly one of percent_off and amount_off_cents")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must come after valid_from")
        return self


class OptionChoice(Value):
    """What an attendee asks for: an option, its variant when it has variants, how many."""

    code: Code
    variant: Code | None = None
    quantity: Quantity = 1


StockKind = Literal["badge", "option"]


class OrderLine(Value):
    """One line of an order as the decider priced it: never recomputed later."""

    kind: StockKind
    code: str
    variant: str | None = None
    name: str
    quantity: int
    unit_price_cents: int
    tier: str | None = None
    """The price tier a badge line was sold at; None for the badge type's own price."""
    discount_cents: int = 0
    total_cents: int

    @property
    def stock_key(self) -> str:
        return stock_key(self.kind, self.code, self.variant)


def stock_key(kind: StockKind, code: str, variant: str | None = None) -> str:
    """One name for a unit of stock a waitlist can wait on: `badge:FULL`,
    `option:TSHIRT`, `option:TSHIRT/L`."""
    return f"{kind}:{code}" + (f"/{variant}" if variant else "")


class OrderPolicy(Value):
    """How a convention sells: its currency, how long an unpaid order holds its stock, how
    long a waitlist offer holds, and what share of the paid price a cancellation refunds."""

    currency: Currency = "EUR"
    hold_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 15
    offer_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    refund_percent: Annotated[int, Field(ge=0, le=100)] = 100
