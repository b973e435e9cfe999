"""The website read models in `butterfly_read`: what the gateway answers from."""

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
    text,
)
from sqlalchemy.dialects.mysql import DATETIME

from infra.db import consumer_positions_table

metadata = MetaData()

conventions = Table(
    "conventions",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Column("allow_guests", Boolean, nullable=False, server_default=text("1")),
    Index("ix_conventions_created", "created_at", "convention_id"),
)

badge_types = Table(
    "badge_types",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("code", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("quota", Integer, nullable=False),
    Column("sold", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("convention_id", "code"),
)

registrations = Table(
    "registrations",
    metadata,
    Column("registration_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=False),
    Column("badge_type", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Column("email_key", String(254, collation="utf8mb4_bin"), nullable=True),
    Column("account_id", String(36), nullable=True),
    Column("reason_subject", String(40), nullable=True),
    Column("has_order", Boolean, nullable=False, server_default=text("0")),
    Column("ticket_serial", Integer, nullable=False, server_default=text("0")),
    Column("checked_in_at", DATETIME(fsp=6), nullable=True),
    Column("checked_in_station", String(60), nullable=True),
    Index("ix_registrations_listing", "convention_id", "status", "created_at", "registration_id"),
    Index("ix_registrations_by_convention", "convention_id", "created_at", "registration_id"),
    Index("ix_registrations_account", "account_id", "created_at"),
    Index("ix_registrations_email_key", "email_key", "created_at"),
)
"""`reason_subject` names the option or promo code a rejection's reason is about (NULL
when it is about the seat); `has_order` says the decision recorded an order, which the
orders read model shows (registrations decided before orders existed have none).
`account_id` is the owner of a registration made while logged in; a guest registration (no
account) belongs to its `email_key` (`schemas.identity.email_key`): an account with that
address verified sees it as its own. `ticket_serial` counts its transfers (the serial its
ticket carries); `checked_in_at` and `checked_in_station` are the winning scan's (the
earliest), NULL until checked in."""

registration_transfers = Table(
    "registration_transfers",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("from_account_id", String(36), nullable=True),
    Column("from_email_key", String(254, collation="utf8mb4_bin"), nullable=True),
    Column("to_account_id", String(36), nullable=False),
    Column("transferred_at", DATETIME(fsp=6), nullable=False),
    Index("ix_registration_transfers_from_account", "from_account_id", "transferred_at"),
    Index("ix_registration_transfers_from_email", "from_email_key", "transferred_at"),
)
"""Who held a registration before each transfer: the earlier holder still sees it."""

check_in_scans = Table(
    "check_in_scans",
    metadata,
    Column("scan_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("station", String(60), nullable=False),
    Column("scanned_at", DATETIME(fsp=6), nullable=False),
    Column("outcome", String(30), nullable=False),
    Column("winner_station", String(60), nullable=True),
    Column("winner_scanned_at", DATETIME(fsp=6), nullable=True),
    Column("decided_at", DATETIME(fsp=6), nullable=False),
    Index("ix_check_in_scans_station", "convention_id", "station", "scanned_at"),
    Index("ix_check_in_scans_registration", "registration_id"),
)
"""Every scan decided, once (`docs/CHECKIN.md`): `outcome` is `checked_in`, `superseded` (an
earlier scan, at `winner_station` at `winner_scanned_at`, became the check-in) or the
refusal's reason (`already_checked_in` names the winner the same way). Times are naive
UTC; `decided_at` is when the command was taken."""

command_outcomes = Table(
    "command_outcomes",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("subject_id", String(36), nullable=False),
    Column("recorded_at", DATETIME(fsp=6), nullable=False),
    Index("ix_command_outcomes_recorded_at", "recorded_at"),
)
"""How each decided command ended: what the gateway waits on to answer a write."""

applied_events = Table(
    "applied_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("applied_at", DATETIME(fsp=6), nullable=False),
    Index("ix_applied_events_applied_at", "applied_at"),
)

consumer_positions = consumer_positions_table(metadata)
