"""Commands and events of what a convention sells and how its orders are paid: price tiers,
options, promo codes, payments, holds that expire, refunds and waitlists.

They travel on the registration topics, keyed by convention like every registration
message, so one decider decides a convention's seats, options, codes and waitlists in one
order, with the same exactness. A published event class is never edited (see
`schemas.registration`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from schemas.catalogue import (
    MAX_TIERS,
    Cents,
    Code,
    Currency,
    OptionChoice,
    OptionSpec,
    OrderLine,
    OrderPolicy,
    PriceTier,
    PromoCodeSpec,
    Quantity,
    StockKind,
)
from schemas.registration import (
    Command,
    Email,
    Event,
    OrderTerms,
    RejectionReason,
    Text,
)

# The catalogue, set by admins and staff of the convention.


class DefinePriceTiers(Command):
    """Replace a badge type's price tiers (an empty list: its own price only). A tier that
    keeps its name keeps its count of seats sold at it."""

    message_type: ClassVar[str] = "DefinePriceTiers"
    badge_type: Code
    tiers: Annotated[tuple[PriceTier, ...], Field(max_length=MAX_TIERS)]

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, value: tuple[PriceTier, ...]) -> tuple[PriceTier, ...]:
        if len({tier.name for tier in value}) != len(value):
            raise ValueError("tier names must be unique: a tier's count of seats goes by its name")
        return value


class SetBadgeQuota(Command):
    """Raise or lower a badge type's quota; raising it offers the freed seats to its
    waitlist. It can never go below the seats taken."""

    message_type: ClassVar[str] = "SetBadgeQuota"
    badge_type: Code
    quota: Annotated[int, Field(ge=0, le=10_000_000)]


class DefineOption(Command):
    """Add an option, or change one: name, price (for orders placed from now on), quota and
    limits. Its variants can be added to, never taken away."""

    message_type: ClassVar[str] = "DefineOption"
    option: OptionSpec


class CreatePromoCode(Command):
    message_type: ClassVar[str] = "CreatePromoCode"
    promo: PromoCodeSpec


class SetOrderPolicy(Command):
    message_type: ClassVar[str] = "SetOrderPolicy"
    policy: OrderPolicy


class PriceTiersDefined(Event):
    message_type: ClassVar[str] = "PriceTiersDefined"
    badge_type: str
    tiers: tuple[PriceTier, ...]


class BadgeQuotaSet(Event):
    message_type: ClassVar[str] = "BadgeQuotaSet"
    badge_type: str
    quota: int


class OptionDefined(Event):
    message_type: ClassVar[str] = "OptionDefined"
    option: OptionSpec


class PromoCodeCreated(Event):
    message_type: ClassVar[str] = "PromoCodeCreated"
    promo: PromoCodeSpec


class OrderPolicySet(Event):
    message_type: ClassVar[str] = "OrderPolicySet"
    policy: OrderPolicy


class CatalogueChangeRejected(Event):
    message_type: ClassVar[str] = "CatalogueChangeRejected"
    command: Literal[
        "DefinePriceTiers", "SetBadgeQuota", "DefineOption", "CreatePromoCode", "SetOrderPolicy"
    ]
    subject: str
    """The badge type, option or promo code the command named ("" for the policy)."""
    reason: RejectionReason


# Orders after registration: options added and removed, promo codes, payment, expiry.


class AddOptions(Command):
    """Buy options for a registration already made: a new order of its own, held until
    paid like the first one (confirmed at once when there is nothing to pay)."""

    message_type: ClassVar[str] = "AddOptions"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    options: Annotated[tuple[OptionChoice, ...], Field(min_length=1, max_length=50)]
    promo_code: Code | None = None
    request_hash: str = Field(max_length=64)


class RemoveOption(Command):
    """Give back units of a paid (or free) option: the stock is freed and the price paid
    for them refunded by the convention's refund rule."""

    message_type: ClassVar[str] = "RemoveOption"
    registration_id: uuid.UUID
    code: Code
    variant: Code | None = None
    quantity: Quantity = 1


class ApplyPromoCode(Command):
    message_type: ClassVar[str] = "ApplyPromoCode"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    promo_code: Code


class RecordPayment(Command):
    """The payment provider's word on a payment for an order: it succeeded or failed. A
    notification repeated, or a second payment for a paid order, is decided once; money
    that arrives for an order no longer payable is refunded."""

    message_type: ClassVar[str] = "RecordPayment"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    payment_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    amount_cents: Cents
    currency: Currency
    succeeded: bool


class RecordRefund(Command):
    """The payment provider has paid a refund back."""

    message_type: ClassVar[str] = "RecordRefund"
    registration_id: uuid.UUID
    refund_id: uuid.UUID


class ExpireOrder(Command):
    """Sent by the order clock once an order's hold has run out; decided only if the order
    is still unpaid and its hold is over by the command's own time."""

    message_type: ClassVar[str] = "ExpireOrder"
    registration_id: uuid.UUID
    order_id: uuid.UUID


class OptionsOrdered(Event):
    """Options ordered for an existing registration: held until `hold_until`, or confirmed
    at once (`hold_until` None) when there is nothing to pay."""

    message_type: ClassVar[str] = "OptionsOrdered"
    registration_id: uuid.UUID
    order: OrderTerms
    request_hash: str
    hold_until: datetime | None


class OptionRemoved(Event):
    message_type: ClassVar[str] = "OptionRemoved"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    line: OrderLine
    """The units given back from that order, with their share of what it was paid."""


class PromoCodeApplied(Event):
    """A pending order repriced with a promo code: its new lines and total."""

    message_type: ClassVar[str] = "PromoCodeApplied"
    registration_id: uuid.UUID
    order: OrderTerms


class OrderPaid(Event):
    """An order paid in full (or brought to nothing by a promo code: `payment_id` None).
    A registration's first order paid confirms the registration."""

    message_type: ClassVar[str] = "OrderPaid"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    payment_id: str | None
    amount_cents: int
    currency: str
    confirms_registration: bool


class PaymentDeclined(Event):
    message_type: ClassVar[str] = "PaymentDeclined"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    payment_id: str


class OrderExpired(Event):
    """An unpaid order's hold ran out: its stock is free again. A registration whose first
    order expired is expired too."""

    message_type: ClassVar[str] = "OrderExpired"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    lines: tuple[OrderLine, ...]
    expires_registration: bool
    promo_code: str | None = None
    """The promo code the order held: its use is given back."""


class RefundReason(StrEnum):
    CANCELLED = "cancelled"
    OPTION_REMOVED = "option_removed"
    LATE_PAYMENT = "late_payment"
    """Money that arrived after the order expired or was cancelled."""
    DUPLICATE_PAYMENT = "duplicate_payment"
    AMOUNT_MISMATCH = "amount_mismatch"


class RefundIssued(Event):
    """Money to give back, decided: the order clock asks the provider to pay it (the
    refund id is the provider's idempotency key), and `RefundCompleted` follows."""

    message_type: ClassVar[str] = "RefundIssued"
    registration_id: uuid.UUID
    order_id: uuid.UUID
    refund_id: uuid.UUID
    payment_id: str
    amount_cents: int
    currency: str
    reason: RefundReason


class RefundCompleted(Event):
    message_type: ClassVar[str] = "RefundCompleted"
    registration_id: uuid.UUID
    refund_id: uuid.UUID


class OrderRejected(Event):
    """A command about a registration's orders refused, with the reason."""

    message_type: ClassVar[str] = "OrderRejected"
    registration_id: uuid.UUID
    order_id: uuid.UUID | None
    command: Literal[
        "AddOptions", "RemoveOption", "ApplyPromoCode", "RecordPayment", "RecordRefund"
    ]
    reason: RejectionReason
    subject: str = ""
    """The option or promo code the reason is about, when there is one."""


# Waitlists.


class JoinWaitlist(Command):
    """Wait for a sold-out badge type (a registration to come) or option (for the
    registration `registration_id`)."""

    message_type: ClassVar[str] = "JoinWaitlist"
    entry_id: uuid.UUID
    kind: StockKind
    code: Code
    variant: Code | None = None
    quantity: Quantity = 1
    email: Email
    name: Text
    account_id: uuid.UUID | None = None
    registration_id: uuid.UUID | None = None
    """For an option: the registration it is for."""


class LeaveWaitlist(Command):
    message_type: ClassVar[str] = "LeaveWaitlist"
    entry_id: uuid.UUID


class AcceptOffer(Command):
    """Take the stock offered: for a badge type, a registration (`registration_id`, with
    the options and promo code given) placed like any other, on the held seat."""

    message_type: ClassVar[str] = "AcceptOffer"
    entry_id: uuid.UUID
    registration_id: uuid.UUID
    options: Annotated[tuple[OptionChoice, ...], Field(max_length=50)] = ()
    promo_code: Code | None = None
    request_hash: str = Field(max_length=64)


class ExpireOffer(Command):
    """Sent by the order clock once an offer's time has run out."""

    message_type: ClassVar[str] = "ExpireOffer"
    entry_id: uuid.UUID


class WaitlistJoined(Event):
    message_type: ClassVar[str] = "WaitlistJoined"
    entry_id: uuid.UUID
    kind: StockKind
    code: str
    variant: str | None
    quantity: int
    email: str
    name: str
    account_id: uuid.UUID | None
    registration_id: uuid.UUID | None
    position: int
    """Place in line when joining (1: next to be offered)."""
    seq: int
    """The entry's place in the convention's order of joining: the line is ordered by it."""
    stock: str


class WaitlistLeft(Event):
    message_type: ClassVar[str] = "WaitlistLeft"
    entry_id: uuid.UUID
    stock: str
    released: int
    """Units an open offer held, back in stock (0 when there was no offer)."""


class WaitlistOfferMade(Event):
    """Stock freed and held for the first in line until `expires_at`."""

    message_type: ClassVar[str] = "WaitlistOfferMade"
    entry_id: uuid.UUID
    stock: str
    quantity: int
    expires_at: datetime


class WaitlistOfferExpired(Event):
    message_type: ClassVar[str] = "WaitlistOfferExpired"
    entry_id: uuid.UUID
    stock: str
    released: int


class WaitlistOfferAccepted(Event):
    """The offer taken; the order it becomes follows (`OrderPlaced`, `AttendeeRegistered`
    or `OptionsOrdered`)."""

    message_type: ClassVar[str] = "WaitlistOfferAccepted"
    entry_id: uuid.UUID
    registration_id: uuid.UUID
    stock: str
    released: int
    """The units the offer held, released to the order that follows, which takes them."""


class WaitlistRejected(Event):
    message_type: ClassVar[str] = "WaitlistRejected"
    entry_id: uuid.UUID
    command: Literal["JoinWaitlist", "LeaveWaitlist", "AcceptOffer"]
    reason: RejectionReason


ORDER_COMMANDS: tuple[type[Command], ...] = (
    DefinePriceTiers,
    SetBadgeQuota,
    DefineOption,
    CreatePromoCode,
    SetOrderPolicy,
    AddOptions,
    RemoveOption,
    ApplyPromoCode,
    RecordPayment,
    RecordRefund,
    ExpireOrder,
    JoinWaitlist,
    LeaveWaitlist,
    AcceptOffer,
    ExpireOffer,
)
ORDER_EVENTS: tuple[type[Event], ...] = (
    PriceTiersDefined,
    BadgeQuotaSet,
    OptionDefined,
    PromoCodeCreated,
    OrderPolicySet,
    CatalogueChangeRejected,
    OptionsOrdered,
    OptionRemoved,
    PromoCodeApplied,
    OrderPaid,
    PaymentDeclined,
    OrderExpired,
    RefundIssued,
    RefundCompleted,
    OrderRejected,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferMade,
    WaitlistOfferExpired,
    WaitlistOfferAccepted,
    WaitlistRejected,
)
