"""What the lodging decider knows while it decides one batch: plain objects, no I/O.

The runtime (`consumers.lodging.handler`) loads what a batch needs from the lodging tables,
the decider reads and changes it through `evolve`, and the runtime writes back what changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from schemas.lodging import ROOMS_TAKEN, RoomStatus, Stay

BlockKey = tuple[str, str, date]
"""(hotel, room type, night)"""


@dataclass
class ConventionLodging:
    convention_id: uuid.UUID
    starts_on: date
    ends_on: date
    partition_no: int | None = None
    lottery: str = "closed"
    lottery_seed: int | None = None
    sync_id: uuid.UUID | None = None
    synced_at: datetime | None = None
    reconciliation_id: uuid.UUID | None = None


@dataclass
class Block:
    hotel: str
    room_type: str
    night: date
    hotel_name: str
    description: str
    size: int
    rate_cents: int
    booked: int = 0
    sequence: int = -1

    @property
    def key(self) -> BlockKey:
        return (self.hotel, self.room_type, self.night)

    @property
    def left(self) -> int:
        return max(self.size - self.booked, 0)


@dataclass
class RoomRequest:
    request_id: uuid.UUID
    convention_id: uuid.UUID
    registration_id: uuid.UUID
    partition_no: int
    status: RoomStatus
    hotels: tuple[str, ...]
    stay: Stay
    request_hash: str
    created_at: datetime
    updated_at: datetime
    attempt: int = 0
    hotel: str | None = None
    ack: str | None = None
    total_cents: int | None = None
    reason: str | None = None
    detail: str | None = None
    lottery_draw: int | None = None
    next_step: str | None = None
    release_pending: bool = False
    parked_step: str | None = None
    parked_error: str | None = None
    retries: int = 0
    sequence: int = -1

    @property
    def active(self) -> bool:
        return self.status in (
            RoomStatus.REQUESTED,
            RoomStatus.HELD,
            RoomStatus.CONFIRMED,
            RoomStatus.WAITLISTED,
        )

    @property
    def rooms_taken(self) -> bool:
        return self.status in ROOMS_TAKEN

    def taken_nights(self) -> list[BlockKey]:
        """The block nights this request holds a room in (none unless held or confirmed)."""
        if not self.rooms_taken or self.hotel is None:
            return []
        return [(self.hotel, self.stay.room_type, night) for night in self.stay.nights()]


@dataclass
class LotteryEntry:
    registration_id: uuid.UUID
    hotels: tuple[str, ...]
    stay: Stay
    entered_at: datetime


@dataclass
class LodgingState:
    """Everything loaded for one batch, and which of it changed."""

    conventions: dict[uuid.UUID, ConventionLodging] = field(default_factory=dict)
    registrations: dict[uuid.UUID, tuple[uuid.UUID, str]] = field(default_factory=dict)
    """registration id -> (convention id, status: confirmed, rejected or cancelled)"""
    requests: dict[uuid.UUID, RoomRequest] = field(default_factory=dict)
    blocks: dict[uuid.UUID, dict[BlockKey, Block]] = field(default_factory=dict)
    entries: dict[uuid.UUID, dict[uuid.UUID, LotteryEntry]] = field(default_factory=dict)
    """Lottery entries, loaded only for conventions whose lottery a batch touches."""

    changed_conventions: set[uuid.UUID] = field(default_factory=set)
    changed_registrations: set[uuid.UUID] = field(default_factory=set)
    changed_requests: set[uuid.UUID] = field(default_factory=set)
    changed_blocks: set[tuple[uuid.UUID, BlockKey]] = field(default_factory=set)
    changed_entries: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)
    removed_entries: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)

    def requests_of(self, registration_id: uuid.UUID) -> list[RoomRequest]:
        return [r for r in self.requests.values() if r.registration_id == registration_id]

    def active_request_of(self, registration_id: uuid.UUID) -> RoomRequest | None:
        for request in self.requests_of(registration_id):
            if request.active:
                return request
        return None

    def registration_status(self, registration_id: uuid.UUID) -> str | None:
        known = self.registrations.get(registration_id)
        return None if known is None else known[1]

    def blocks_of(self, convention_id: uuid.UUID) -> dict[BlockKey, Block]:
        return self.blocks.setdefault(convention_id, {})

    def entries_of(self, convention_id: uuid.UUID) -> dict[uuid.UUID, LotteryEntry]:
        return self.entries.setdefault(convention_id, {})
