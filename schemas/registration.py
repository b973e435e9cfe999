"""Commands and events of conventions and their registrations.

A published event class is never edited: a new shape is a new `schema_version` with a pure
upcaster registered in `schemas.registry`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from schemas.catalogue import Code as PromoCode
from schemas.catalogue import OptionChoice, OrderLine, OrderPolicy
from schemas.identity import check_text, email_identity


def _valid_email(value: str) -> str:
    email_identity(value)
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_valid_email)]
"""An address whose identity key can be derived: a command's e-mail is checked on decoding,
so an address the gateway would refuse never reaches a decision."""
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_text)]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    message_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    convention_id: uuid.UUID


class Command(Message):
    pass


class Event(Message):
    pass


class RejectionReason(StrEnum):
    NOT_OPEN = "not_open"
    UNKNOWN_BADGE_TYPE = "unknown_badge_type"
    SOLD_OUT = "sold_out"
    ALREADY_REGISTERED = "already_registered"
    UNKNOWN_REGISTRATION = "unknown_registration"
    NOT_CANCELLABLE = "not_cancellable"
    NOT_TRANSFERABLE = "not_transferable"
    UNKNOWN_CONVENTION = "unknown_convention"
    INVALID_TRANSITION = "invalid_transition"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    NOT_ACTIVE = "not_active"
    UNKNOWN_OPTION = "unknown_option"
    UNKNOWN_VARIANT = "unknown_variant"
    OPTION_NOT_FOR_BADGE = "option_not_for_badge"
    LIMIT_REACHED = "limit_reached"
    UNKNOWN_CODE = "unknown_code"
    CODE_NOT_YET_VALID = "code_not_yet_valid"
    CODE_EXPIRED = "code_expired"
    CODE_USED_UP = "code_used_up"
    CODE_NOT_APPLICABLE = "code_not_applicable"
    CODE_ALREADY_APPLIED = "code_already_applied"
    CODE_EXISTS = "code_exists"
    NOT_PENDING_PAYMENT = "not_pending_payment"
    NOT_REMOVABLE = "not_removable"
    QUOTA_BELOW_TAKEN = "quota_below_taken"
    UNKNOWN_ORDER = "unknown_order"
    NOT_SOLD_OUT = "not_sold_out"
    ALREADY_WAITING = "already_waiting"
    UNKNOWN_ENTRY = "unknown_entry"
    NO_OFFER = "no_offer"
    OFFER_EXPIRED = "offer_expired"
    CURRENCY_MISMATCH = "currency_mismatch"


BadgeCode = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]


SET_ASIDE = "invalid"
"""The reason a client is given for a command no decider decided: it could not be processed
and went to the dead-letter topic. Not a `RejectionReason`: no event carries it."""


class BadgeTypeSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: BadgeCode
    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=100_000_000)
    quota: int = Field(ge=0, le=10_000_000)


class OrderTerms(BaseModel):
    """An order as the decider priced it: its lines, what they come to, the discount of the
    promo code applied, and the total to pay. Recorded in the event, never recomputed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: uuid.UUID
    lines: tuple[OrderLine, ...]
    subtotal_cents: int
    discount_cents: int = 0
    total_cents: int
    currency: str
    promo_code: str | None = None


class CreateConvention(Command):
    message_type: ClassVar[str] = "CreateConvention"
    schema_version: ClassVar[int] = 2
    name: Text
    starts_on: date
    ends_on: date
    badge_types: tuple[BadgeTypeSpec, ...]
    request_hash: str = Field(max_length=64)
    allow_guests: bool = True
    """Whether people without an account may register (staff at the door always may)."""
    policy: OrderPolicy = OrderPolicy()

    @field_validator("badge_types")
    @classmethod
    def _badge_names_are_text(cls, value: tuple[BadgeTypeSpec, ...]) -> tuple[BadgeTypeSpec, ...]:
        for badge in value:
            check_text(badge.name)
        if len({badge.code.casefold() for badge in value}) != len(value):
            raise ValueError("badge type codes must be unique, whatever their case")
        return value


class OpenConvention(Command):
    message_type: ClassVar[str] = "OpenConvention"


class CloseConvention(Command):
    message_type: ClassVar[str] = "CloseConvention"


class RegisterAttendee(Command):
    message_type: ClassVar[str] = "RegisterAttendee"
    schema_version: ClassVar[int] = 2
    registration_id: uuid.UUID
    email: Email
    name: Text
    badge_type: BadgeCode
    request_hash: str = Field(max_length=64)
    account_id: uuid.UUID | None = None
    """The account registering, when logged in; None for a guest registration, which
    belongs to its e-mail."""
    options: Annotated[tuple[OptionChoice, ...], Field(max_length=50)] = ()
    promo_code: PromoCode | None = None


class CancelRegistration(Command):
    message_type: ClassVar[str] = "CancelRegistration"
    registration_id: uuid.UUID


class TransferRegistration(Command):
    """Hand a confirmed registration to another account: its seat moves with it (the quota
    does not change), and it takes the new holder's e-mail and name."""

    message_type: ClassVar[str] = "TransferRegistration"
    registration_id: uuid.UUID
    to_account_id: uuid.UUID
    email: Email
    name: Text


class ConventionCreated(Event):
    message_type: ClassVar[str] = "ConventionCreated"
    schema_version: ClassVar[int] = 2
    name: str
    starts_on: date
    ends_on: date
    badge_types: tuple[BadgeTypeSpec, ...]
    request_hash: str
    allow_guests: bool = True
    policy: OrderPolicy = OrderPolicy()


class ConventionOpened(Event):
    message_type: ClassVar[str] = "ConventionOpened"


class ConventionClosed(Event):
    message_type: ClassVar[str] = "ConventionClosed"


class ConventionCommandRejected(Event):
    message_type: ClassVar[str] = "ConventionCommandRejected"
    command: Literal["CreateConvention", "OpenConvention", "CloseConvention"]
    reason: RejectionReason


class AttendeeRegistered(Event):
    """A registration confirmed at once: nothing to pay (free, or discounted to nothing)."""

    message_type: ClassVar[str] = "AttendeeRegistered"
    schema_version: ClassVar[int] = 2
    registration_id: uuid.UUID
    email: str
    name: str
    badge_type: str
    request_hash: str
    account_id: uuid.UUID | None = None
    order: OrderTerms | None = None
    """None in events recorded before registrations were orders."""


class OrderPlaced(Event):
    """A registration with something to pay: its seat and options are held until
    `hold_until`; paid by then it is confirmed, otherwise it expires and frees them."""

    message_type: ClassVar[str] = "OrderPlaced"
    registration_id: uuid.UUID
    email: str
    name: str
    badge_type: str
    request_hash: str
    account_id: uuid.UUID | None = None
    order: OrderTerms
    hold_until: datetime


class RegistrationRejected(Event):
    message_type: ClassVar[str] = "RegistrationRejected"
    schema_version: ClassVar[int] = 2
    registration_id: uuid.UUID
    email: str
    name: str
    badge_type: str
    request_hash: str
    reason: RejectionReason
    account_id: uuid.UUID | None = None
    subject: str = ""
    """The option or promo code the reason is about ("" for the seat itself)."""


class RegistrationCancelled(Event):
    message_type: ClassVar[str] = "RegistrationCancelled"
    schema_version: ClassVar[int] = 2
    registration_id: uuid.UUID
    badge_type: str
    options_released: tuple[OrderLine, ...] = ()
    """The option units the registration held, back in stock. (A seat sold at a price tier
    stays counted at that tier: it was sold.)"""


class RegistrationTransferred(Event):
    message_type: ClassVar[str] = "RegistrationTransferred"
    registration_id: uuid.UUID
    badge_type: str
    email: str
    name: str
    account_id: uuid.UUID


class TransferRejected(Event):
    message_type: ClassVar[str] = "TransferRejected"
    registration_id: uuid.UUID
    reason: RejectionReason


class RegistrationRequestRefused(Event):
    """A second, different request under a registration's idempotency key: the registration
    stays as it was; only the refused command gets this answer."""

    message_type: ClassVar[str] = "RegistrationRequestRefused"
    registration_id: uuid.UUID
    request_hash: str
    reason: RejectionReason


class CancellationRejected(Event):
    message_type: ClassVar[str] = "CancellationRejected"
    registration_id: uuid.UUID
    reason: RejectionReason


RegistrationCommand = (
    CreateConvention
    | OpenConvention
    | CloseConvention
    | RegisterAttendee
    | CancelRegistration
    | TransferRegistration
)
RegistrationEvent = (
    ConventionCreated
    | ConventionOpened
    | ConventionClosed
    | ConventionCommandRejected
    | AttendeeRegistered
    | OrderPlaced
    | RegistrationRejected
    | RegistrationCancelled
    | RegistrationTransferred
    | TransferRejected
    | RegistrationRequestRefused
    | CancellationRejected
)

COMMANDS: tuple[type[Command], ...] = (
    CreateConvention,
    OpenConvention,
    CloseConvention,
    RegisterAttendee,
    CancelRegistration,
    TransferRegistration,
)
EVENTS: tuple[type[Event], ...] = (
    ConventionCreated,
    ConventionOpened,
    ConventionClosed,
    ConventionCommandRejected,
    AttendeeRegistered,
    OrderPlaced,
    RegistrationRejected,
    RegistrationCancelled,
    RegistrationTransferred,
    TransferRejected,
    RegistrationRequestRefused,
    CancellationRejected,
)
