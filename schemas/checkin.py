"""Check-in at the door: a station scanned a ticket, and the registration decider decides.

Check-ins travel on the registration topics, keyed by convention like every registration
message, so one decider orders a registration's check-in with its payment, transfer and
cancellation. A scan's `scan_id` is the station's own id for that scan: the command id is
derived from it, so a station that sends its queue again (it went offline mid-sync) has each
scan decided once.

Stations may check tickets in offline and sync later, so the same ticket can be scanned at
two stations without either knowing. The earliest scan wins, whichever reaches the decider
first: a later scan is refused as `already_checked_in`, naming the winner; an earlier scan
that arrives after a later one was accepted replaces it (`CheckInSuperseded`), and the
station of the replaced scan is told when it asks. `scanned_at` then `station` order scans,
so the outcome does not depend on the order they arrive in.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from schemas.registration import Command, Event

Station = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9 _.:-]+$")]


class CheckInRefusal(StrEnum):
    ALREADY_CHECKED_IN = "already_checked_in"
    UNKNOWN_REGISTRATION = "unknown_registration"
    """No such registration in this convention (a ticket of another convention is refused
    by the gateway before it gets here)."""
    REVOKED = "revoked"
    """The registration was cancelled, or transferred since the ticket was issued."""
    NOT_PAID = "not_paid"
    """The registration holds its seat but is not paid (or it expired unpaid)."""


class CheckInAttendee(Command):
    message_type: ClassVar[str] = "CheckInAttendee"
    registration_id: uuid.UUID
    ticket_serial: int = Field(ge=0, le=1_000_000)
    station: Station
    scanned_at: datetime
    """When the station scanned the ticket, by its clock: the earliest scan wins."""
    scan_id: uuid.UUID
    staff_account_id: uuid.UUID | None = None


class AttendeeCheckedIn(Event):
    message_type: ClassVar[str] = "AttendeeCheckedIn"
    registration_id: uuid.UUID
    badge_type: str
    name: str
    station: Station
    scanned_at: datetime
    scan_id: uuid.UUID


class CheckInSuperseded(Event):
    """An earlier scan of an already checked-in registration arrived (a station that was
    offline): it becomes the check-in, and the scan it replaces is told so."""

    message_type: ClassVar[str] = "CheckInSuperseded"
    registration_id: uuid.UUID
    badge_type: str
    name: str
    station: Station
    scanned_at: datetime
    scan_id: uuid.UUID
    superseded_station: Station
    superseded_scanned_at: datetime
    superseded_scan_id: uuid.UUID


class CheckInRefused(Event):
    message_type: ClassVar[str] = "CheckInRefused"
    registration_id: uuid.UUID
    station: Station
    scanned_at: datetime
    scan_id: uuid.UUID
    reason: CheckInRefusal
    checked_in_station: Station | None = None
    """With `already_checked_in`: where and when the registration was checked in."""
    checked_in_at: datetime | None = None


CHECKIN_COMMANDS: tuple[type[Command], ...] = (CheckInAttendee,)
CHECKIN_EVENTS: tuple[type[Event], ...] = (AttendeeCheckedIn, CheckInSuperseded, CheckInRefused)
