"""What the lodging API accepts and answers with. Request bodies are checked with the
contract's own types (`schemas.lodging`), so a body the gateway takes is a command the
decider can decode."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field, model_validator

from gateway.views import Body
from schemas.lodging import (
    MAX_GUESTS,
    MAX_PREFERENCES,
    Drift,
    GuestName,
    HotelCode,
    RoomType,
    Stay,
)


class NewRoomRequest(Body):
    hotels: list[HotelCode] = Field(
        min_length=1, max_length=MAX_PREFERENCES, description="Hotel codes, preferred first."
    )
    room_type: RoomType
    check_in: date
    check_out: date = Field(description="The morning after the last night.")
    guests: list[GuestName] = Field(min_length=1, max_length=MAX_GUESTS)

    @model_validator(mode="after")
    def _consistent(self) -> NewRoomRequest:
        if len(set(self.hotels)) != len(self.hotels):
            raise ValueError("hotels must be distinct")
        self.stay()
        return self

    def stay(self) -> Stay:
        """The stay, checked as the contract checks it (nights in order, at most 14)."""
        return Stay(
            room_type=self.room_type,
            check_in=self.check_in,
            check_out=self.check_out,
            guests=tuple(self.guests),
        )


class NewLotteryEntry(NewRoomRequest):
    registration_id: uuid.UUID


class LotteryRun(Body):
    seed: int = Field(ge=0, le=2**63 - 1, description="Makes the draw reproducible.")


class LodgingAccepted(BaseModel):
    """A lodging write taken: it is decided asynchronously, poll `Location`."""

    status: str
    command_id: uuid.UUID
    request_id: uuid.UUID | None = None
    registration_id: uuid.UUID | None = None
    convention_id: uuid.UUID | None = None
    sync_id: uuid.UUID | None = None
    reconciliation_id: uuid.UUID | None = None


class NightView(BaseModel):
    night: date
    block: int
    booked: int
    left: int
    rate_cents: int
    release_date: date | None


class RoomTypeView(BaseModel):
    code: str
    description: str
    nights: list[NightView]


class HotelView(BaseModel):
    code: str
    name: str
    room_types: list[RoomTypeView]


class HotelsView(BaseModel):
    convention_id: uuid.UUID
    synced_at: datetime | None
    hotels: list[HotelView]
    lottery: str = Field(
        description="The hotel lottery: `closed` (none opened), `open` (taking entries) or "
        "`drawn` (its rooms awarded)."
    )


class SyncView(BaseModel):
    sync_id: uuid.UUID
    convention_id: uuid.UUID
    status: str
    error: str | None
    first_night: date | None
    last_night: date | None
    requested_at: datetime
    finished_at: datetime | None


class Parked(BaseModel):
    step: str
    error: str | None


class RoomRequestView(BaseModel):
    request_id: uuid.UUID
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    status: str
    hotels: list[str]
    declined: list[str]
    hotel: str | None
    room_type: str
    check_in: date
    check_out: date
    nights: int
    guests: list[str]
    ack: str | None
    total_cents: int | None
    reason: str | None
    detail: str | None
    waitlist_position: int | None
    parked: Parked | None
    cancelled_by: str | None
    released: bool
    lottery_draw: int | None
    created_at: datetime
    updated_at: datetime


class RoomRequestPage(BaseModel):
    items: list[RoomRequestView]
    next: str | None


class RoomRequestList(BaseModel):
    items: list[RoomRequestView]


class PickupNight(BaseModel):
    night: date
    block: int
    booked: int
    pickup_percent: float


class RoomTypePickup(BaseModel):
    code: str
    description: str
    block: int
    booked: int
    pickup_percent: float
    nights: list[PickupNight]


class HotelPickup(BaseModel):
    code: str
    name: str
    block: int = Field(description="Room nights in the hotel's blocks.")
    booked: int = Field(description="Room nights our requests hold at the hotel.")
    pickup_percent: float
    room_types: list[RoomTypePickup]


class PickupView(BaseModel):
    convention_id: uuid.UUID
    block: int = Field(description="Room nights in every block of the convention.")
    booked: int = Field(description="Room nights our requests hold.")
    pickup_percent: float
    hotels: list[HotelPickup]


class LotteryAwardView(BaseModel):
    registration_id: uuid.UUID
    request_id: uuid.UUID | None
    hotel: str | None
    rank: int | None
    draw: int | None


class LotteryWaitlistView(BaseModel):
    registration_id: uuid.UUID
    request_id: uuid.UUID | None
    position: int | None
    draw: int | None


class LotteryView(BaseModel):
    convention_id: uuid.UUID
    status: str
    seed: int | None
    entries: int
    awards: list[LotteryAwardView]
    waitlist: list[LotteryWaitlistView]


class ReconciliationView(BaseModel):
    reconciliation_id: uuid.UUID
    convention_id: uuid.UUID
    status: str
    drifts: list[Drift]
    error: str | None
    requested_at: datetime
    reconciled_at: datetime | None


def pickup_percent(booked: int, block: int) -> float:
    """Booked as a share of the block, one decimal; 0 for an empty block."""
    return round(100 * booked / block, 1) if block > 0 else 0.0
