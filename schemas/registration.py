"""Commands and events of conventions and their registrations.

A published event class is never edited: a new shape is a new `schema_version` with a pure
upcaster registered in `schemas.registry`.
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    UNKNOWN_CONVENTION = "unknown_convention"
    INVALID_TRANSITION = "invalid_transition"


class BadgeTypeSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=100_000_000)
    quota: int = Field(ge=0, le=10_000_000)


class CreateConvention(Command):
    message_type: ClassVar[str] = "CreateConvention"
    name: str = Field(min_length=1, max_length=200)
    starts_on: date
    ends_on: date
    badge_types: tuple[BadgeTypeSpec, ...]
    request_hash: str = Field(max_length=64)


class OpenConvention(Command):
    message_type: ClassVar[str] = "OpenConvention"


class CloseConvention(Command):
    message_type: ClassVar[str] = "CloseConvention"


class RegisterAttendee(Command):
    message_type: ClassVar[str] = "RegisterAttendee"
    registration_id: uuid.UUID
    email: str = Field(min_length=3, max_length=254)
    name: str = Field(min_length=1, max_length=200)
    badge_type: str = Field(min_length=1, max_length=40)
    request_hash: str = Field(max_length=64)


class CancelRegistration(Command):
    message_type: ClassVar[str] = "CancelRegistration"
    registration_id: uuid.UUID


class ConventionCreated(Event):
    message_type: ClassVar[str] = "ConventionCreated"
    name: str
    starts_on: date
    ends_on: date
    badge_types: tuple[BadgeTypeSpec, ...]
    request_hash: str


class ConventionOpened(Event):
    message_type: ClassVar[str] = "ConventionOpened"


class ConventionClosed(Event):
    message_type: ClassVar[str] = "ConventionClosed"


class ConventionCommandRejected(Event):
    message_type: ClassVar[str] = "ConventionCommandRejected"
    command: Literal["CreateConvention", "OpenConvention", "CloseConvention"]
    reason: RejectionReason


class AttendeeRegistered(Event):
    message_type: ClassVar[str] = "AttendeeRegistered"
    registration_id: uuid.UUID
    email: str
    name: str
    badge_type: str
    request_hash: str


class RegistrationRejected(Event):
    message_type: ClassVar[str] = "RegistrationRejected"
    registration_id: uuid.UUID
    email: str
    name: str
    badge_type: str
    request_hash: str
    reason: RejectionReason


class RegistrationCancelled(Event):
    message_type: ClassVar[str] = "RegistrationCancelled"
    registration_id: uuid.UUID
    badge_type: str


class CancellationRejected(Event):
    message_type: ClassVar[str] = "CancellationRejected"
    registration_id: uuid.UUID
    reason: RejectionReason


RegistrationCommand = (
    CreateConvention | OpenConvention | CloseConvention | RegisterAttendee | CancelRegistration
)
RegistrationEvent = (
    ConventionCreated
    | ConventionOpened
    | ConventionClosed
    | ConventionCommandRejected
    | AttendeeRegistered
    | RegistrationRejected
    | RegistrationCancelled
    | CancellationRejected
)

COMMANDS: tuple[type[Command], ...] = (
    CreateConvention,
    OpenConvention,
    CloseConvention,
    RegisterAttendee,
    CancelRegistration,
)
EVENTS: tuple[type[Event], ...] = (
    ConventionCreated,
    ConventionOpened,
    ConventionClosed,
    ConventionCommandRejected,
    AttendeeRegistered,
    RegistrationRejected,
    RegistrationCancelled,
    CancellationRejected,
)
