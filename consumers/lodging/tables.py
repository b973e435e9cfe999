"""The lodging decider's own state in `butterfly_write`, beside the registration decider's.

The process manager reads `lodging_requests.next_step` (and the pending sync and
reconciliation of `lodging_conventions`) to know which partner call is due; it never writes
these tables: what the partner answered comes back as a command and is decided here.
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
from sqlalchemy.dialects.mysql import DATETIME

from infra.db import decided_commands_table, outbox_table

metadata = MetaData()

conventions = Table(
    "lodging_conventions",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("partition_no", Integer, nullable=True),
    Column("lottery", String(16), nullable=False, server_default=text("'closed'")),
    Column("lottery_seed", BigInteger, nullable=True),
    Column("sync_id", String(36), nullable=True),
    Column("synced_at", DATETIME(fsp=6), nullable=True),
    Column("reconciliation_id", String(36), nullable=True),
    Index("ix_lodging_conventions_work", "partition_no"),
)
"""One row per convention, made from `ConventionCreated`. `lottery` is closed, open or
drawn; `sync_id` and `reconciliation_id` are set while a sync or a reconciliation waits for
the process manager; `partition_no` is the `lodging.commands` partition that owns it."""

registrations = Table(
    "lodging_registrations",
    metadata,
    Column("registration_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
)
"""What lodging needs of registrations (from the registration events): which are confirmed."""

blocks = Table(
    "lodging_blocks",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("hotel", String(16), nullable=False),
    Column("room_type", String(16), nullable=False),
    Column("night", Date, nullable=False),
    Column("hotel_name", String(200), nullable=False),
    Column("description", String(200), nullable=False),
    Column("size", Integer, nullable=False),
    Column("rate_cents", BigInteger, nullable=False),
    Column("booked", Integer, nullable=False, server_default=text("0")),
    Column("sequence", BigInteger, nullable=False, server_default=text("-1")),
    PrimaryKeyConstraint("convention_id", "hotel", "room_type", "night"),
)
"""The room blocks as last synced or changed by the partner; `booked` counts our requests
holding a room that night; `sequence` is the last partner event applied to the row."""

requests = Table(
    "lodging_requests",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("partition_no", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("hotels", Text, nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("hotel", String(16), nullable=True),
    Column("stay", Text, nullable=False),
    Column("ack", String(64), nullable=True),
    Column("total_cents", BigInteger, nullable=True),
    Column("reason", String(40), nullable=True),
    Column("detail", String(500), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("lottery_draw", Integer, nullable=True),
    Column("next_step", String(16), nullable=True),
    Column("release_pending", Boolean, nullable=False, server_default=text("0")),
    Column("parked_step", String(16), nullable=True),
    Column("parked_error", String(500), nullable=True),
    Column("retries", Integer, nullable=False, server_default=text("0")),
    Column("sequence", BigInteger, nullable=False, server_default=text("-1")),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Index("ix_lodging_requests_registration", "registration_id"),
    Index("ix_lodging_requests_convention", "convention_id", "status"),
    Index("ix_lodging_requests_work", "next_step", "partition_no"),
)
"""Room requests. `hotels` is the JSON list of preferred codes and `attempt` the index of
the one being tried; `stay` is the JSON `schemas.lodging.Stay`. `next_step` is the partner
call due (hold, confirm, release; NULL when none or while parked); `retries` counts admin
retries (it keys the process manager's records); `sequence` is the last partner event
applied."""

lottery_entries = Table(
    "lodging_lottery_entries",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("hotels", Text, nullable=False),
    Column("stay", Text, nullable=False),
    Column("entered_at", DATETIME(fsp=6), nullable=False),
    PrimaryKeyConstraint("convention_id", "registration_id"),
)

decided_commands = decided_commands_table(metadata, "lodging_decided_commands")

outbox = outbox_table(metadata, "lodging_outbox")
