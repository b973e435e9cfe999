"""What the API answers with and accepts: request bodies and views of the read models."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from schemas.catalogue import Code, OptionChoice, OrderPolicy
from schemas.identity import check_text, email_identity
from schemas.registration import BadgeCode, BadgeTypeSpec


def _email(value: str) -> str:
    """The address as the validator normalises it (the identity key is derived from it)."""
    return email_identity(value).address


Email = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_email)]
"""At most 320 characters as sent; the identity itself checks 254 once blanks are trimmed
and the address is normalised."""
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_text)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class NewConvention(Body):
    name: Text
    starts_on: date
    ends_on: date
    badge_types: list[NewBadgeType] = Field(min_length=1, max_length=50)
    allow_guests: bool = Field(
        default=True,
        description="Whether people without an account may register; staff of the "
        "convention and admins may always register someone at the door.",
    )
    policy: OrderPolicy | None = Field(
        default=None,
        description="How it sells: currency, how long an unpaid order and a waitlist offer "
        "hold, the share of the price a cancellation refunds. Defaults when left out.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> NewConvention:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        codes = [b.code.casefold() for b in self.badge_types]
        if len(set(codes)) != len(codes):
            raise ValueError("badge type codes must be unique, whatever their case")
        return self

    def fingerprint_body(self) -> dict[str, Any]:
        """The body as its request fingerprint reads it: one sent without a policy hashes as
        it did before conventions had one."""
        return self.model_dump(mode="json", exclude={"policy"} if self.policy is None else None)


class NewRegistration(Body):
    email: Email
    name: Text
    badge_type: BadgeCode
    options: list[OptionChoice] = Field(
        default_factory=list,
        max_length=50,
        description="Add-on options bought with the badge: code, variant when the option "
        "has variants, quantity.",
    )
    promo_code: Code | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        """The body as its request fingerprint reads it: defaults left out, so a registration
        without options hashes as it did before there were any, and an option sent with its
        default quantity hashes like one sent without."""
        return self.model_dump(mode="json", exclude_defaults=True)


class NewBadgeType(BadgeTypeSpec):
    name: Text


class TierView(BaseModel):
    name: str
    price_cents: int
    until: datetime | None
    size: int | None
    sold: int
    remaining: int | None
    """Seats left at this tier's price; None for a tier bounded by time only."""


class BadgeTypeView(BaseModel):
    code: str
    name: str
    price_cents: int = Field(
        description="The price in force now: the first tier still open, else the badge "
        "type's own price."
    )
    quota: int
    sold: int
    remaining: int
    tier: str | None = Field(default=None, description="The tier whose price is in force.")
    remaining_at_price: int | None = Field(
        default=None, description="Seats left at this price, when its tier has a size."
    )
    tiers: list[TierView] = []


class VariantView(BaseModel):
    code: str
    name: str
    quota: int | None
    taken: int
    remaining: int | None
    """Units left of this variant, within the option's own quota; None for no limit."""


class OptionView(BaseModel):
    code: str
    name: str
    price_cents: int
    quota: int | None
    sold: int
    remaining: int | None
    max_per_registration: int
    badge_types: list[str] = Field(
        description="The badge types it can be bought with; empty for every one."
    )
    variants: list[VariantView]


class ConventionView(BaseModel):
    convention_id: uuid.UUID
    name: str
    starts_on: date
    ends_on: date
    status: str
    badge_types: list[BadgeTypeView]
    created_at: datetime
    updated_at: datetime
    allow_guests: bool = True
    currency: str = "EUR"
    options: list[OptionView] = []


class ConventionPage(BaseModel):
    items: list[ConventionView]
    next: str | None


class RegistrationView(BaseModel):
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    email: str
    name: str
    badge_type: str
    status: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
    account_id: uuid.UUID | None = None
    """The owner when it was made while logged in; a guest registration has none."""
    subject: str | None = None
    """For a rejection: the option or promo code its reason is about (none: the seat)."""
    _has_order: bool = PrivateAttr(default=False)

    @property
    def has_order(self) -> bool:
        """Whether its decision recorded an order (not shown: the orders say it)."""
        return self._has_order

    def with_order_recorded(self, recorded: bool) -> RegistrationView:
        self._has_order = recorded
        return self


class RegistrationPage(BaseModel):
    items: list[RegistrationView]
    next: str | None


class Accepted(BaseModel):
    """A write taken but not yet decided: poll `Location`."""

    status: str = "pending"
    registration_id: uuid.UUID | None = None
    convention_id: uuid.UUID | None = None
    command_id: uuid.UUID
