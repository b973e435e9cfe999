"""The lodging read models in `butterfly_read`, beside the website's: what the gateway answers
lodging questions from. They live in a metadata of their own so the lodging projector can be
rebuilt (its tables dropped and refilled from `lodging.events`) without touching the
registration read models; its consumer positions go to the website's `consumer_positions`
table under a group of its own.

Lists (preferred hotels, declined hotels, guests, drifts) are stored as JSON text: they are
only ever read whole, never queried into.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT

metadata = MetaData()

hotel_nights = Table(
    "lodging_hotel_nights",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("hotel", String(16), nullable=False),
    Column("room_type", String(16), nullable=False),
    Column("night", Date, nullable=False),
    Column("hotel_name", String(200), nullable=False, server_default=text("''")),
    Column("description", String(200), nullable=False, server_default=text("''")),
    Column("size", Integer, nullable=False, server_default=text("0")),
    Column("rate_cents", BigInteger, nullable=False, server_default=text("0")),
    Column("release_date", Date, nullable=True),
    Column("booked", Integer, nullable=False, server_default=text("0")),
    Column("listed_at", DATETIME(fsp=6), nullable=True),
    PrimaryKeyConstraint("convention_id", "hotel", "room_type", "night"),
)
"""One night of one room type's block. `booked` counts our requests holding a room that
night (never the partner's figure); a row can exist for `booked` alone (a room held on a
night no sync reported yet), and `listed_at` says when a sync or a block change last
described the night (null: not part of any known block)."""

requests = Table(
    "lodging_requests",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("hotels", String(200), nullable=False),
    Column("declined", String(400), nullable=False, server_default=text("'[]'")),
    Column("hotel", String(16), nullable=True),
    Column("room_type", String(16), nullable=False),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    Column("guests", Text, nullable=False),
    Column("ack", String(64), nullable=True),
    Column("total_cents", BigInteger, nullable=True),
    Column("reason", String(40), nullable=True),
    Column("detail", String(500), nullable=True),
    Column("waitlist_position", Integer, nullable=True),
    Column("parked_step", String(16), nullable=True),
    Column("parked_error", String(500), nullable=True),
    Column("cancelled_by", String(16), nullable=True),
    Column("released", Boolean, nullable=False, server_default=text("0")),
    Column("lottery_draw", Integer, nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("accepted", Boolean, nullable=False, server_default=text("0")),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Index("ix_lodging_requests_listing", "convention_id", "created_at", "request_id"),
    Index("ix_lodging_requests_by_status", "convention_id", "status", "created_at", "request_id"),
    Index("ix_lodging_requests_registration", "registration_id"),
)
"""One room request as the attendee sees it. `accepted` says a `RoomRequested` event made
it: a row only its command made (shown as requested at once) is answered as failed if that
command is refused."""

syncs = Table(
    "lodging_syncs",
    metadata,
    Column("sync_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_night", Date, nullable=True),
    Column("last_night", Date, nullable=True),
    Column("error", String(500), nullable=True),
    Column("requested_at", DATETIME(fsp=6), nullable=False),
    Column("finished_at", DATETIME(fsp=6), nullable=True),
    Index("ix_lodging_syncs_convention", "convention_id", "status", "finished_at"),
)

reconciliations = Table(
    "lodging_reconciliations",
    metadata,
    Column("reconciliation_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("drifts", Text().with_variant(LONGTEXT(), "mysql"), nullable=False),
    Column("error", String(500), nullable=True),
    Column("requested_at", DATETIME(fsp=6), nullable=False),
    Column("reconciled_at", DATETIME(fsp=6), nullable=True),
    Index("ix_lodging_reconciliations_convention", "convention_id", "requested_at"),
)

lottery = Table(
    "lodging_lottery",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("seed", BigInteger, nullable=True),
    Column("entries", Integer, nullable=True),
    Column("opened_at", DATETIME(fsp=6), nullable=True),
    Column("drawn_at", DATETIME(fsp=6), nullable=True),
)
"""A convention's hotel lottery: closed (no row), open or drawn."""

lottery_entries = Table(
    "lodging_lottery_entries",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("hotels", String(200), nullable=False),
    Column("room_type", String(16), nullable=False),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    Column("guests", Text, nullable=False),
    Column("entered_at", DATETIME(fsp=6), nullable=False),
    Column("result", String(16), nullable=True),
    Column("request_id", String(36), nullable=True),
    Column("hotel", String(16), nullable=True),
    Column("rank", Integer, nullable=True),
    Column("draw", Integer, nullable=True),
    Column("waitlist_position", Integer, nullable=True),
    PrimaryKeyConstraint("convention_id", "registration_id"),
    Index("ix_lodging_lottery_entries_draw", "convention_id", "draw"),
)
"""Each entrant with the result of the draw (`awarded` or `waitlisted`) once drawn."""

command_outcomes = Table(
    "lodging_command_outcomes",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("command", String(40), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("subject_id", String(36), nullable=True),
    Column("recorded_at", DATETIME(fsp=6), nullable=False),
    Index("ix_lodging_command_outcomes_recorded_at", "recorded_at"),
)
"""How each lodging command ended (its id is the causation id of its events): a rejection
replaces an acceptance recorded before it."""

applied_events = Table(
    "lodging_applied_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("applied_at", DATETIME(fsp=6), nullable=False),
    Index("ix_lodging_applied_events_applied_at", "applied_at"),
)
