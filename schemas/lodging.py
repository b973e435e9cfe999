"""Commands and events of lodging: hotel blocks, room requests, the hotel lottery.

Everything about one convention's lodging is keyed by the convention id, like its
registrations, so one partition of `lodging.commands` (and of `registration.events`) holds
all one lodging decision needs.

Who sends which command:
- the gateway: `RequestRoom`, `CancelRoomRequest`, `SyncHotels`, `OpenLottery`,
  `EnterLottery`, `RunLottery`, `ReconcileLodging`, `RetryRoomRequest`;
- the lodging process manager, after calling the partner: `RecordHold`, `RecordConfirmation`,
  `RecordRelease`, `ParkRoomRequest`, `RecordHotelInventory`, `RecordReconciliation`;
- the partner bridge, translating the partner's own events: `ApplyPartnerReservation`,
  `ApplyPartnerBlock` (their ids derive from the partner's event id, so a repeated partner
  event is the same command and is decided once).

A published event class is never edited: a new shape is a new `schema_version` with a pure
upcaster registered in `schemas.registry`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from schemas.identity import check_text
from schemas.registration import Command, Event

LODGING_NAMESPACE = uuid.UUID("6f1d8a52-4c1e-4b8e-9a57-0d7b3c1f2e90")
"""Namespace of the ids lodging derives (partner events, lottery awards, reconciliations)."""

MAX_NIGHTS = 14
MAX_GUESTS = 4
MAX_PREFERENCES = 5

HotelCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")]
RoomType = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")]
GuestName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(check_text)]
Guests = Annotated[tuple[GuestName, ...], Field(min_length=1, max_length=MAX_GUESTS)]
Preferences = Annotated[tuple[HotelCode, ...], Field(min_length=1, max_length=MAX_PREFERENCES)]
Ack = Annotated[str, Field(min_length=1, max_length=64)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class RoomStatus(StrEnum):
    """Where a room request stands, as an attendee sees it."""

    REQUESTED = "requested"
    HELD = "held"
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset(
    {RoomStatus.REQUESTED, RoomStatus.HELD, RoomStatus.CONFIRMED, RoomStatus.WAITLISTED}
)
ROOMS_TAKEN = frozenset({RoomStatus.HELD, RoomStatus.CONFIRMED})
"""Statuses in which the request holds rooms of a block."""


class FailureReason(StrEnum):
    UNKNOWN_CONVENTION = "unknown_convention"
    UNKNOWN_REGISTRATION = "unknown_registration"
    REGISTRATION_NOT_CONFIRMED = "registration_not_confirmed"
    REGISTRATION_CANCELLED = "registration_cancelled"
    ALREADY_REQUESTED = "already_requested"
    HOTELS_NOT_SYNCED = "hotels_not_synced"
    UNKNOWN_HOTEL = "unknown_hotel"
    UNKNOWN_ROOM_TYPE = "unknown_room_type"
    NIGHTS_OUTSIDE_BLOCK = "nights_outside_block"
    NO_AVAILABILITY = "no_availability"
    REFUSED_BY_PARTNER = "refused_by_partner"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    LOTTERY_NOT_OPEN = "lottery_not_open"
    LOTTERY_ALREADY_RUN = "lottery_already_run"
    UNKNOWN_REQUEST = "unknown_request"
    NOT_CANCELLABLE = "not_cancellable"
    NOT_PARKED = "not_parked"


class CancelledBy(StrEnum):
    ATTENDEE = "attendee"
    REGISTRATION = "registration"
    HOTEL = "hotel"
    RECONCILIATION = "reconciliation"


class Stay(BaseModel):
    """Which room, which nights, for whom. `check_out` is the morning after the last night."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    room_type: RoomType
    check_in: date
    check_out: date
    guests: Guests

    @model_validator(mode="after")
    def _nights(self) -> Stay:
        nights = (self.check_out - self.check_in).days
        if nights < 1:
            raise ValueError("check_out must be after check_in")
        if nights > MAX_NIGHTS:
            raise ValueError(f"at most {MAX_NIGHTS} nights")
        return self

    def nights(self) -> list[date]:
        return [
            date.fromordinal(n)
            for n in range(self.check_in.toordinal(), self.check_out.toordinal())
        ]


class BlockNight(BaseModel):
    """One night of one room type's block at one hotel, as the partner reported it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    night: date
    size: int = Field(ge=0, le=100_000)
    booked: int = Field(ge=0, le=100_000)
    rate_cents: int = Field(ge=0, le=100_000_000)
    release_date: date | None = None


class RoomTypeBlock(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: RoomType
    description: str = Field(max_length=200)
    nights: tuple[BlockNight, ...] = Field(max_length=400)


class HotelInventory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: HotelCode
    name: str = Field(min_length=1, max_length=200)
    room_types: tuple[RoomTypeBlock, ...] = Field(max_length=20)


class DriftKind(StrEnum):
    """What reconciliation can find between our bookings and the partner's."""

    MISSING_AT_PARTNER = "missing_at_partner"
    """We hold or confirmed a room the partner has no reservation for."""
    CANCELLED_AT_PARTNER = "cancelled_at_partner"
    """The partner cancelled a reservation we still count as booked."""
    STATUS_DIFFERS = "status_differs"
    """The partner confirmed (or waitlisted) what we show otherwise."""
    STAY_DIFFERS = "stay_differs"
    """Hotel, room type, nights or guests differ."""
    ORPHAN_AT_PARTNER = "orphan_at_partner"
    """The partner holds a room for a request of ours that is cancelled, failed or unknown."""


class Drift(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: DriftKind
    request_id: uuid.UUID | None = None
    ack: Ack | None = None
    ours: str = Field(max_length=500)
    theirs: str = Field(max_length=500)
    repair: str = Field(max_length=500)


class Correction(BaseModel):
    """What reconciliation changes on our side for one request: the partner's truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: uuid.UUID
    status: RoomStatus
    hotel: HotelCode | None = None
    ack: Ack | None = None
    stay: Stay | None = None
    total_cents: int | None = Field(default=None, ge=0)


class LotteryAward(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    registration_id: uuid.UUID
    request_id: uuid.UUID
    hotel: HotelCode
    rank: int = Field(ge=1)
    """Which of the entrant's preferences it got (1 = first choice)."""
    draw: int = Field(ge=1)
    """The entrant's place in the draw."""


class LotteryWaitlisted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    registration_id: uuid.UUID
    request_id: uuid.UUID
    position: int = Field(ge=1)
    draw: int = Field(ge=1)


# --- commands -------------------------------------------------------------------------------


class RequestRoom(Command):
    message_type: ClassVar[str] = "RequestRoom"
    request_id: uuid.UUID
    registration_id: uuid.UUID
    hotels: Preferences
    stay: Stay
    request_hash: str = Field(max_length=64)


class CancelRoomRequest(Command):
    message_type: ClassVar[str] = "CancelRoomRequest"
    request_id: uuid.UUID


class RetryRoomRequest(Command):
    """An admin sends a parked request back to the process manager."""

    message_type: ClassVar[str] = "RetryRoomRequest"
    request_id: uuid.UUID


class SyncHotels(Command):
    message_type: ClassVar[str] = "SyncHotels"
    sync_id: uuid.UUID


class OpenLottery(Command):
    message_type: ClassVar[str] = "OpenLottery"


class EnterLottery(Command):
    message_type: ClassVar[str] = "EnterLottery"
    registration_id: uuid.UUID
    hotels: Preferences
    stay: Stay


class RunLottery(Command):
    message_type: ClassVar[str] = "RunLottery"
    seed: int = Field(ge=0, le=2**63 - 1)


class ReconcileLodging(Command):
    message_type: ClassVar[str] = "ReconcileLodging"
    reconciliation_id: uuid.UUID


class RecordHold(Command):
    """The partner's answer to a hold at `hotel` (the `attempt`-th preferred hotel):
    `held`, `waitlisted`, or `refused` (full with more hotels to try, or refused outright)."""

    message_type: ClassVar[str] = "RecordHold"
    request_id: uuid.UUID
    attempt: int = Field(ge=0, le=MAX_PREFERENCES)
    hotel: HotelCode
    outcome: Literal["held", "waitlisted", "refused"]
    ack: Ack | None = None
    total_cents: int | None = Field(default=None, ge=0, le=MAX_NIGHTS * 100_000_000)
    reason: Reason | None = None


class RecordConfirmation(Command):
    message_type: ClassVar[str] = "RecordConfirmation"
    request_id: uuid.UUID
    ack: Ack


class RecordRelease(Command):
    """The partner cancelled what it held for a cancelled request (acks: every reservation
    found under the request, possibly none)."""

    message_type: ClassVar[str] = "RecordRelease"
    request_id: uuid.UUID
    acks: tuple[Ack, ...] = Field(max_length=MAX_PREFERENCES + 1)


class ParkRoomRequest(Command):
    """The process manager gave up on a step after its retries: an admin can retry it."""

    message_type: ClassVar[str] = "ParkRoomRequest"
    request_id: uuid.UUID
    step: Literal["hold", "confirm", "release"]
    error: Reason


class RecordHotelInventory(Command):
    message_type: ClassVar[str] = "RecordHotelInventory"
    sync_id: uuid.UUID
    hotels: tuple[HotelInventory, ...] = Field(max_length=100)
    error: Reason | None = None
    """Set when the partner could not be asked: the sync ends without changes."""


class RecordReconciliation(Command):
    message_type: ClassVar[str] = "RecordReconciliation"
    reconciliation_id: uuid.UUID
    drifts: tuple[Drift, ...] = Field(max_length=100_000)
    corrections: tuple[Correction, ...] = Field(max_length=100_000)
    error: Reason | None = None


class ApplyPartnerReservation(Command):
    """A partner reservation event, translated. `sequence` is the partner's per-convention
    order: an event older than the last one applied to the request changes nothing."""

    message_type: ClassVar[str] = "ApplyPartnerReservation"
    partner_event_id: Annotated[str, Field(min_length=1, max_length=64)]
    sequence: int = Field(ge=0, le=2**63 - 1)
    change: Literal["held", "waitlisted", "confirmed", "cancelled", "modified"]
    by: Literal["guest", "hotel"]
    ack: Ack
    reference: Annotated[str, Field(max_length=200)]
    hotel: HotelCode
    stay: Stay
    total_cents: int = Field(ge=0, le=MAX_NIGHTS * 100_000_000)


class ApplyPartnerBlock(Command):
    message_type: ClassVar[str] = "ApplyPartnerBlock"
    partner_event_id: Annotated[str, Field(min_length=1, max_length=64)]
    sequence: int = Field(ge=0, le=2**63 - 1)
    hotel: HotelCode
    room_type: RoomType
    night: date
    size: int | None = Field(default=None, ge=0, le=100_000)
    rate_cents: int | None = Field(default=None, ge=0, le=100_000_000)


# --- events ---------------------------------------------------------------------------------


class RoomRequested(Event):
    message_type: ClassVar[str] = "RoomRequested"
    request_id: uuid.UUID
    registration_id: uuid.UUID
    hotels: tuple[str, ...]
    stay: Stay
    request_hash: str
    lottery_draw: int | None = None


class RoomRequestRefused(Event):
    """A request that never became a room request (its request id stays free), e.g. a
    reused idempotency key with another body."""

    message_type: ClassVar[str] = "RoomRequestRefused"
    request_id: uuid.UUID
    request_hash: str
    reason: FailureReason


class HotelDeclined(Event):
    """Compensation: a preferred hotel could not hold the room; the next one is tried."""

    message_type: ClassVar[str] = "HotelDeclined"
    request_id: uuid.UUID
    hotel: str
    reason: str


class RoomHeld(Event):
    message_type: ClassVar[str] = "RoomHeld"
    request_id: uuid.UUID
    hotel: str
    ack: str
    stay: Stay
    total_cents: int


class RoomConfirmed(Event):
    message_type: ClassVar[str] = "RoomConfirmed"
    request_id: uuid.UUID
    hotel: str
    ack: str
    stay: Stay
    total_cents: int
    by: Literal["guest", "hotel", "reconciliation"] = "guest"


class RoomWaitlisted(Event):
    message_type: ClassVar[str] = "RoomWaitlisted"
    request_id: uuid.UUID
    hotel: str | None
    ack: str | None
    position: int | None = None


class RoomChanged(Event):
    """The hotel (or reconciliation) changed the stay of a booked room."""

    message_type: ClassVar[str] = "RoomChanged"
    request_id: uuid.UUID
    hotel: str
    ack: str
    previous: Stay
    stay: Stay
    total_cents: int
    by: Literal["hotel", "reconciliation"]


class RoomRequeued(Event):
    """The partner has no reservation for a room we counted as held or confirmed
    (reconciliation found it): the rooms are given back here and the hold is made again."""

    message_type: ClassVar[str] = "RoomRequeued"
    request_id: uuid.UUID
    reason: str


class RoomRequestFailed(Event):
    message_type: ClassVar[str] = "RoomRequestFailed"
    request_id: uuid.UUID
    reason: FailureReason
    detail: str = ""


class RoomCancelled(Event):
    """The request is cancelled for the attendee; `release` says the partner still has to
    be told (the process manager then cancels there and records `RoomReleased`)."""

    message_type: ClassVar[str] = "RoomCancelled"
    request_id: uuid.UUID
    by: CancelledBy
    release: bool


class RoomReleased(Event):
    message_type: ClassVar[str] = "RoomReleased"
    request_id: uuid.UUID
    acks: tuple[str, ...]


class RoomRequestParked(Event):
    message_type: ClassVar[str] = "RoomRequestParked"
    request_id: uuid.UUID
    step: str
    error: str


class RoomRequestRetried(Event):
    message_type: ClassVar[str] = "RoomRequestRetried"
    request_id: uuid.UUID


class LodgingCommandRejected(Event):
    """A lodging command that changed nothing, and why (the command's id is its cause)."""

    message_type: ClassVar[str] = "LodgingCommandRejected"
    command: str
    request_id: uuid.UUID | None = None
    registration_id: uuid.UUID | None = None
    reason: FailureReason


class HotelSyncRequested(Event):
    message_type: ClassVar[str] = "HotelSyncRequested"
    sync_id: uuid.UUID
    first_night: date
    last_night: date


class HotelInventorySynced(Event):
    message_type: ClassVar[str] = "HotelInventorySynced"
    sync_id: uuid.UUID
    hotels: tuple[HotelInventory, ...]
    error: str | None = None


class HotelBlockChanged(Event):
    message_type: ClassVar[str] = "HotelBlockChanged"
    hotel: str
    room_type: str
    night: date
    size: int
    rate_cents: int


class LotteryOpened(Event):
    message_type: ClassVar[str] = "LotteryOpened"


class LotteryEntered(Event):
    message_type: ClassVar[str] = "LotteryEntered"
    registration_id: uuid.UUID
    hotels: tuple[str, ...]
    stay: Stay


class LotteryDrawn(Event):
    message_type: ClassVar[str] = "LotteryDrawn"
    seed: int
    entries: int
    awards: tuple[LotteryAward, ...]
    waitlisted: tuple[LotteryWaitlisted, ...]


class ReconciliationRequested(Event):
    message_type: ClassVar[str] = "ReconciliationRequested"
    reconciliation_id: uuid.UUID


class LodgingReconciled(Event):
    message_type: ClassVar[str] = "LodgingReconciled"
    reconciliation_id: uuid.UUID
    drifts: tuple[Drift, ...]
    error: str | None = None
    reconciled_at: datetime | None = None


LODGING_COMMANDS: tuple[type[Command], ...] = (
    RequestRoom,
    CancelRoomRequest,
    RetryRoomRequest,
    SyncHotels,
    OpenLottery,
    EnterLottery,
    RunLottery,
    ReconcileLodging,
    RecordHold,
    RecordConfirmation,
    RecordRelease,
    ParkRoomRequest,
    RecordHotelInventory,
    RecordReconciliation,
    ApplyPartnerReservation,
    ApplyPartnerBlock,
)
LODGING_EVENTS: tuple[type[Event], ...] = (
    RoomRequested,
    RoomRequestRefused,
    HotelDeclined,
    RoomHeld,
    RoomConfirmed,
    RoomWaitlisted,
    RoomChanged,
    RoomRequeued,
    RoomRequestFailed,
    RoomCancelled,
    RoomReleased,
    RoomRequestParked,
    RoomRequestRetried,
    LodgingCommandRejected,
    HotelSyncRequested,
    HotelInventorySynced,
    HotelBlockChanged,
    LotteryOpened,
    LotteryEntered,
    LotteryDrawn,
    ReconciliationRequested,
    LodgingReconciled,
)


def partner_command_id(partner_event_id: str) -> uuid.UUID:
    """The command id of a translated partner event: a repeat of the event is the same
    command, decided once."""
    return uuid.uuid5(LODGING_NAMESPACE, f"partner-event:{partner_event_id}")


def lottery_request_id(convention_id: uuid.UUID, registration_id: uuid.UUID) -> uuid.UUID:
    """The room request a lottery award (or its waitlisting) becomes: one per entrant."""
    return uuid.uuid5(LODGING_NAMESPACE, f"lottery:{convention_id}:{registration_id}")


def reply_command_id(request_id: uuid.UUID, step: str, attempt: int | str = 0) -> uuid.UUID:
    """The id of the process manager's record of one step: doing the step twice (a crash, a
    second member) records it once."""
    return uuid.uuid5(LODGING_NAMESPACE, f"reply:{request_id}:{step}:{attempt}")


def partner_idempotency_key(request_id: uuid.UUID, hotel: str) -> str:
    """The key the partner sees on every retry of one request's hold at one hotel."""
    return f"butterfly-{request_id}-{hotel}"
