"""The hotels a convention gets the first time the bureau is asked about it.

Everything is derived from a hash of the convention id, never from a clock or a random
generator, so the same id always gets the same hotels, codes, rates and block sizes: a test
or a developer can predict what the bureau offers without asking it first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

HOTEL_POOL = (
    ("GRANDPL", "Grand Plaza Hotel"),
    ("RIVERSD", "Riverside Suites"),
    ("CONVCTR", "Convention Center Marriott"),
    ("PARKINN", "Park Inn Downtown"),
    ("HARBORV", "Harbor View Resort"),
    ("UNIONSQ", "Union Square Hyatt"),
    ("LAKESHR", "Lakeshore Hilton"),
    ("OLDTOWN", "Old Town Inn"),
)
ROOM_TYPES = {"KING": "one king bed", "DQ": "two queen beds"}
HOTELS_PER_CONVENTION = 3
RELEASE_DAYS_BEFORE = 30
"""Rooms of a block not booked by this many days before the night go back to the hotel."""


@dataclass(frozen=True)
class SeedBlock:
    room_type: str
    size: int
    rate_cents: int


@dataclass(frozen=True)
class SeedHotel:
    code: str
    name: str
    blocks: tuple[SeedBlock, ...]


def _digest(convention_id: str) -> bytes:
    return hashlib.sha256(f"lodging-partner:{convention_id}".encode()).digest()


def hotels_for(convention_id: str) -> tuple[SeedHotel, ...]:
    """Three distinct hotels from the pool, each with a KING and a DQ block."""
    digest = _digest(convention_id)
    pool = list(HOTEL_POOL)
    chosen: list[tuple[str, str]] = []
    for i in range(HOTELS_PER_CONVENTION):
        chosen.append(pool.pop(digest[i] % len(pool)))
    hotels = []
    for i, (code, name) in enumerate(chosen):
        blocks = []
        for j, room_type in enumerate(ROOM_TYPES):
            byte = digest[8 + 2 * i + j]
            blocks.append(
                SeedBlock(
                    room_type=room_type,
                    size=10 + byte % 41,
                    rate_cents=14_900 + (byte % 12) * 1_000 + (2_000 if room_type == "DQ" else 0),
                )
            )
        hotels.append(SeedHotel(code, name, tuple(blocks)))
    return tuple(hotels)


def nights_between(first: date, last: date) -> list[date]:
    """Every night from `first` to `last`, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def release_date(night: date) -> date:
    return night - timedelta(days=RELEASE_DAYS_BEFORE)
