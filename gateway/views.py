"""What the API answers with and accepts: request bodies and views of the read models."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

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

    @model_validator(mode="after")
    def _consistent(self) -> NewConvention:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        codes = [b.code.casefold() for b in self.badge_types]
        if len(set(codes)) != len(codes):
            raise ValueError("badge type codes must be unique, whatever their case")
        return self


class NewRegistration(Body):
    email: Email
    name: Text
    badge_type: BadgeCode


class NewBadgeType(BadgeTypeSpec):
    name: Text


class BadgeTypeView(BaseModel):
    code: str
    name: str
    price_cents: int
    quota: int
    sold: int
    remaining: int


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


class RegistrationPage(BaseModel):
    items: list[RegistrationView]
    next: str | None


class Accepted(BaseModel):
    """A write taken but not yet decided: poll `Location`."""

    status: str = "pending"
    registration_id: uuid.UUID | None = None
    convention_id: uuid.UUID | None = None
    command_id: uuid.UUID
