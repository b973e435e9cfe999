"""Frozen decision state of conventions and registrations, and how events evolve it."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

from schemas.identity import InvalidEmail, email_key
from schemas.registration import (
    AttendeeRegistered,
    CancellationRejected,
    ConventionClosed,
    ConventionCommandRejected,
    ConventionCreated,
    ConventionOpened,
    Event,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationTransferred,
)


class ConventionStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class RegistrationStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


def recorded_email_key(email: str) -> str:
    """The identity key of the address in a recorded event. Events decided before the one
    e-mail identity existed may hold an address it refuses: such a registration gets a key
    that no valid address can have, so it never blocks anyone else."""
    try:
        return email_key(email)
    except InvalidEmail:
        digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()
        return f"unnormalisable:{digest}"


@dataclass(frozen=True)
class BadgeType:
    code: str
    name: str
    price_cents: int
    quota: int
    confirmed: int = 0

    @property
    def remaining(self) -> int:
        return max(self.quota - self.confirmed, 0)


@dataclass(frozen=True)
class Convention:
    convention_id: uuid.UUID
    name: str
    status: ConventionStatus
    badge_types: tuple[BadgeType, ...]
    request_hash: str = ""

    def badge(self, code: str) -> BadgeType | None:
        return next((b for b in self.badge_types if b.code == code), None)

    def with_badge(self, badge: BadgeType) -> Convention:
        return replace(
            self,
            badge_types=tuple(badge if b.code == badge.code else b for b in self.badge_types),
        )


@dataclass(frozen=True)
class Registration:
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    email_key: str
    badge_type: str
    status: RegistrationStatus
    request_hash: str

    @property
    def active(self) -> bool:
        return self.status is RegistrationStatus.CONFIRMED


@dataclass(frozen=True)
class Situation:
    """What one decision may look at: the convention, the registration the command names,
    and the active registration already holding the command's e-mail, if any."""

    convention: Convention | None
    registration: Registration | None = None
    email_holder: Registration | None = None


def evolve_convention(convention: Convention | None, event: Event) -> Convention | None:
    match event:
        case ConventionCreated():
            return Convention(
                convention_id=event.convention_id,
                name=event.name,
                status=ConventionStatus.DRAFT,
                badge_types=tuple(
                    BadgeType(b.code, b.name, b.price_cents, b.quota) for b in event.badge_types
                ),
                request_hash=event.request_hash,
            )
        case ConventionOpened() if convention is not None:
            return replace(convention, status=ConventionStatus.OPEN)
        case ConventionClosed() if convention is not None:
            return replace(convention, status=ConventionStatus.CLOSED)
        case AttendeeRegistered() if convention is not None:
            return _count(convention, event.badge_type, +1)
        case RegistrationCancelled() if convention is not None:
            return _count(convention, event.badge_type, -1)
        case _:
            return convention


def _count(convention: Convention, code: str, delta: int) -> Convention:
    badge = convention.badge(code)
    if badge is None:
        return convention
    return convention.with_badge(replace(badge, confirmed=badge.confirmed + delta))


def evolve_registration(registration: Registration | None, event: Event) -> Registration | None:
    match event:
        case AttendeeRegistered():
            return Registration(
                event.registration_id,
                event.convention_id,
                recorded_email_key(event.email),
                event.badge_type,
                RegistrationStatus.CONFIRMED,
                event.request_hash,
            )
        case RegistrationRejected():
            return Registration(
                event.registration_id,
                event.convention_id,
                recorded_email_key(event.email),
                event.badge_type,
                RegistrationStatus.REJECTED,
                event.request_hash,
            )
        case RegistrationCancelled() if registration is not None:
            return replace(registration, status=RegistrationStatus.CANCELLED)
        case RegistrationTransferred() if registration is not None:
            return replace(registration, email_key=recorded_email_key(event.email))
        case ConventionCommandRejected() | CancellationRejected():
            return registration
        case _:
            return registration
