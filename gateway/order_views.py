"""What the catalogue, order and waitlist API accepts and answers with. Request bodies are
checked with the contract's own types (`schemas.catalogue`), so a body the gateway takes is a
command the decider can decode."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from gateway.views import Body, Email, RegistrationView, Text
from schemas.catalogue import (
    MAX_TIERS,
    MAX_VARIANTS,
    Cents,
    Code,
    Currency,
    Name,
    OptionChoice,
    OptionSpec,
    OrderPolicy,
    PriceTier,
    PromoCodeSpec,
    Quantity,
    StockKind,
    VariantSpec,
)

Units = Annotated[int, Field(ge=0, le=10_000_000)]
Minutes = Annotated[int, Field(ge=1, le=7 * 24 * 60)]
MAX_CHOICES = 50


# --- admin bodies -----------------------------------------------------------------------------


class PriceTiersBody(Body):
    tiers: list[PriceTier] = Field(
        max_length=MAX_TIERS,
        description="In order: the first that still holds (before its `until`, with seats "
        "left of its `size`) is the price; none holding, the badge type's own price. An empty "
        "list leaves the badge type's own price only.",
    )


class QuotaBody(Body):
    quota: Units = Field(
        description="Never below the seats taken; raising it offers the "
        "freed seats to the waitlist."
    )


class OptionBody(Body):
    """An option's terms; its code comes from the path (change) or the body (new)."""

    name: Name
    price_cents: Cents
    quota: Units | None = Field(default=None, description="Units for sale; none for no limit.")
    max_per_registration: Quantity = 1
    variants: list[VariantSpec] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description="Sizes, menus…: each with its own quota if it has one. A change can add "
        "variants, never take one away.",
    )
    badge_types: list[Code] = Field(
        default_factory=list,
        max_length=100,
        description="The badge types it can be bought with; empty for every one.",
    )

    @model_validator(mode="after")
    def _unique_variants(self) -> Self:
        if len({v.code.casefold() for v in self.variants}) != len(self.variants):
            raise ValueError("variant codes must be unique, whatever their case")
        return self

    def spec(self, code: str) -> OptionSpec:
        return OptionSpec(code=code, **self.model_dump(exclude={"code"}))


class NewOption(OptionBody):
    code: Code


class NewPromoCode(PromoCodeSpec):
    """A promo code: exactly one of `percent_off` and `amount_off_cents`; `badge_types` and
    `options` narrow what it discounts (both empty: the whole order)."""


class OrderPolicyBody(Body):
    currency: Currency
    hold_minutes: Minutes = Field(description="How long an unpaid order holds its stock.")
    offer_minutes: Minutes = Field(description="How long a waitlist offer holds.")
    refund_percent: int = Field(
        ge=0, le=100, description="The share of the price paid that a cancellation refunds."
    )

    def policy(self) -> OrderPolicy:
        return OrderPolicy(**self.model_dump())


# --- attendee bodies --------------------------------------------------------------------------


class NewOrder(Body):
    options: list[OptionChoice] = Field(min_length=1, max_length=MAX_CHOICES)
    promo_code: Code | None = None


class PromoCodeBody(Body):
    promo_code: Code


class NewWaitlistEntry(Body):
    kind: StockKind = Field(description="`badge` to wait for a seat, `option` for an option.")
    code: Code = Field(description="The badge type or option code.")
    variant: Code | None = None
    quantity: Quantity = 1
    email: Email | None = Field(
        default=None, description="Who to offer it to; the logged-in account's if left out."
    )
    name: Text | None = None
    registration_id: uuid.UUID | None = Field(
        default=None, description="For an option: the registration it is for (the caller's)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "option" and self.registration_id is None:
            raise ValueError("an option waitlist needs the registration it is for")
        if self.kind == "badge" and self.registration_id is not None:
            raise ValueError("a badge waitlist is for a registration to come: no registration_id")
        if self.kind == "badge" and self.variant is not None:
            raise ValueError("badge types have no variants")
        return self


class OfferAcceptance(Body):
    options: list[OptionChoice] = Field(
        default_factory=list,
        max_length=MAX_CHOICES,
        description="For a badge offer: options bought with the registration it becomes.",
    )
    promo_code: Code | None = None


# --- answers ----------------------------------------------------------------------------------


class PolicyView(BaseModel):
    convention_id: uuid.UUID
    currency: str
    hold_minutes: int
    offer_minutes: int
    refund_percent: int


class PromoCodeView(BaseModel):
    code: str
    percent_off: int | None
    amount_off_cents: int | None
    badge_types: list[str]
    options: list[str]
    max_uses: int | None
    uses: int = Field(description="Orders holding the code, unpaid or paid.")
    remaining_uses: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    created_at: datetime


class PromoCodeList(BaseModel):
    items: list[PromoCodeView]


class OrderLineView(BaseModel):
    kind: str
    code: str
    variant: str | None
    name: str
    quantity: int
    removed: int = Field(description="Units given back since (options only).")
    unit_price_cents: int
    tier: str | None
    discount_cents: int
    total_cents: int


class OrderView(BaseModel):
    order_id: uuid.UUID
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    status: str = Field(description="pending_payment, paid, expired or cancelled.")
    first: bool = Field(description="The order that placed the registration.")
    lines: list[OrderLineView]
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    paid_cents: int
    refunded_cents: int
    currency: str
    promo_code: str | None
    hold_until: datetime | None = Field(description="When an unpaid order gives its stock back.")
    created_at: datetime
    updated_at: datetime
    links: dict[str, str] = Field(description="`self`, and `pay` while payment is due.")


class RefundView(BaseModel):
    refund_id: uuid.UUID
    order_id: uuid.UUID
    payment_id: str
    amount_cents: int
    currency: str
    reason: str
    status: str = Field(description="issued, then completed once the provider paid it back.")
    issued_at: datetime
    completed_at: datetime | None


class RegistrationDetail(RegistrationView):
    """A registration with its orders and refunds, and what is left to pay."""

    orders: list[OrderView] = []
    refunds: list[RefundView] = []
    amount_due_cents: int = Field(
        default=0, description="What the unpaid orders still ask for, before their holds end."
    )


class OrderPage(BaseModel):
    items: list[OrderView]
    next: str | None


class WaitlistEntryView(BaseModel):
    entry_id: uuid.UUID
    convention_id: uuid.UUID
    kind: str
    code: str
    variant: str | None
    stock: str
    quantity: int
    email: str
    name: str
    account_id: uuid.UUID | None
    registration_id: uuid.UUID | None
    status: str = Field(description="waiting, offered, accepted, expired or left.")
    position: int | None = Field(
        description="Place in line (1: next to be offered) while waiting or offered."
    )
    offer_expires_at: datetime | None
    accepted_registration_id: uuid.UUID | None
    joined_at: datetime
    updated_at: datetime
    links: dict[str, str]


class WaitlistEntries(BaseModel):
    items: list[WaitlistEntryView]


class StockLine(BaseModel):
    """The line for one unit of stock (a badge type, an option, an option's variant)."""

    stock: str
    kind: str
    code: str
    variant: str | None
    waiting: int
    offered: int
    entries: list[WaitlistEntryView]


class WaitlistsView(BaseModel):
    convention_id: uuid.UUID
    stocks: list[StockLine]


class OrderAccepted(BaseModel):
    """An order write taken but not decided yet: poll `Location`."""

    status: str = "pending"
    command_id: uuid.UUID
    registration_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    entry_id: uuid.UUID | None = None
    convention_id: uuid.UUID | None = None
