"""The lodging partner's own event format, as Butterfly reads it: the bridge translates it
into lodging commands (`producers.partner_bridge`), and the event contract describes the
partner's topic with it (`schemas.asyncapi`).

    {"event_id", "type", "convention_id", "sequence", "occurred_at", "ack", "data"}
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.lodging import MAX_NIGHTS

MAX_SEQUENCE = 2**63 - 1
"""Sequences are stored in BIGINT columns."""
MAX_RATE_CENTS = 100_000_000
MAX_TOTAL_CENTS = MAX_RATE_CENTS * MAX_NIGHTS
MAX_TEXT = 1000
MAX_ITEMS = 100
"""Partner strings and lists are bounded here only so a huge value is refused cheaply; what
a valid hotel code, guest list or reference is, the command schema says."""

PartnerText = Annotated[str, Field(max_length=MAX_TEXT)]
EventId = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$")]
"""Printable ASCII without spaces: the partner's ids are UUIDs today, and an id ends up in
our logs and our command ids."""


class PartnerModel(BaseModel):
    """A third party's format: strict about the fields the bridge uses, silent about any it
    does not (the partner may add fields without telling us)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class ReservationData(PartnerModel):
    """The reservation as it stands after the change (only the fields the bridge uses)."""

    ack: PartnerText
    reference: PartnerText
    hotel: PartnerText
    room_type: PartnerText
    check_in: date
    check_out: date
    guests: Annotated[list[PartnerText], Field(max_length=MAX_ITEMS)]
    total_cents: int = Field(ge=0, le=MAX_TOTAL_CENTS)
    by: Literal["guest", "hotel"] = "guest"
    """Who made the change; absent on holds and waitlistings, which the guest asked for."""


class BlockData(PartnerModel):
    hotel: PartnerText
    room_type: PartnerText
    night: date
    size: int = Field(ge=0, le=100_000)


class RateData(PartnerModel):
    hotel: PartnerText
    room_type: PartnerText
    night: date
    rate_cents: int = Field(ge=0, le=MAX_RATE_CENTS)


DataT = TypeVar("DataT", bound=PartnerModel)


class PartnerEvent(PartnerModel, Generic[DataT]):
    """One record of the partner's feed; `sequence` orders one convention's events."""

    event_id: EventId
    type: PartnerText
    convention_id: uuid.UUID
    sequence: int = Field(ge=0, le=MAX_SEQUENCE)
    occurred_at: AwareDatetime
    ack: PartnerText | None = None
    data: DataT


class Kind(PartnerModel):
    """Just enough of a record to pick the model that reads the rest."""

    type: Annotated[str, Field(max_length=100)]


RESERVATION_CHANGES = ("held", "waitlisted", "confirmed", "cancelled", "modified")
RESERVATION_PREFIX = "reservation."
DATA_OF: dict[str, type[PartnerModel]] = {
    **{f"{RESERVATION_PREFIX}{change}": ReservationData for change in RESERVATION_CHANGES},
    "block.changed": BlockData,
    "rate.changed": RateData,
}
"""What `data` holds for each type of event the partner publishes."""
