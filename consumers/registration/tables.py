"""The registration decider's own state in `butterfly_write`: what its rules need to decide."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.mysql import BINARY, DATETIME, MEDIUMTEXT

from infra.db import consumer_positions_table, decided_commands_table, outbox_table

metadata = MetaData()

conventions = Table(
    "conventions",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("catalogue", MEDIUMTEXT, nullable=True),
)
"""`catalogue` is the JSON of what the convention sells beyond its badge types' seats (see
`consumers.registration.book.catalogue_json`): the order policy, each badge type's price
tiers with the seats sold at each, options with units taken, promo codes with their uses.
NULL for a convention created before conventions sold anything else."""

badge_types = Table(
    "badge_types",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("code", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("quota", Integer, nullable=False),
    Column("confirmed", Integer, nullable=False),
    PrimaryKeyConstraint("convention_id", "code"),
)

registrations = Table(
    "registrations",
    metadata,
    Column("registration_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("email_key", String(254, collation="utf8mb4_bin"), nullable=False),
    Column("badge_type", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("email_hash", BINARY(32), nullable=False),
    Column("active_key", BINARY(32), nullable=True, unique=True),
    Column("email", String(254), nullable=True),
    Column("name", String(200), nullable=True),
    Column("ticket_serial", Integer, nullable=False, server_default=text("0")),
    Column("checked_in_station", String(60), nullable=True),
    Column("checked_in_at", DATETIME(fsp=6), nullable=True),
    Column("check_in_scan_id", String(36), nullable=True),
    Index("ix_registrations_convention_email_hash", "convention_id", "email_hash"),
)
"""`email_key` is `schemas.identity.email_key` of the address; `email_hash` and `active_key`
are `identity_hash`es of it, compared byte for byte. `active_key` is set only while
confirmed: the database itself refuses a second active registration for one e-mail in one
convention. `ticket_serial` counts the registration's transfers (a ticket with another
serial is revoked); `checked_in_*` is the scan it was checked in by (naive UTC), NULL
until it is."""

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first", Boolean, nullable=False),
    Column("hold_until", DATETIME(fsp=6), nullable=True),
    Column("total_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("terms", MEDIUMTEXT, nullable=False),
    Column("payment_id", String(64), nullable=True),
    Column("settled_payments", MEDIUMTEXT, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Index("ix_orders_registration", "registration_id"),
    Index("ix_orders_convention", "convention_id"),
    Index("ix_orders_due", "status", "hold_until"),
)
"""Every order of a registration: the first one places the registration, later ones add
options. `status` is pending_payment, paid, expired or cancelled; `hold_until` (naive UTC)
is when an unpaid one expires; `terms` the JSON `OrderTerms` as priced (the lines' quantities
shrink as options are given back); `settled_payments` the JSON list of payment ids already
applied or refunded, so a repeated notification changes nothing."""

waitlist_entries = Table(
    "waitlist_entries",
    metadata,
    Column("entry_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("stock", String(100), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=False),
    Column("account_id", String(36), nullable=True),
    Column("registration_id", String(36), nullable=True),
    Column("offer_expires_at", DATETIME(fsp=6), nullable=True),
    Index("ix_waitlist_line", "convention_id", "stock", "seq"),
    Index("ix_waitlist_offers_due", "status", "offer_expires_at"),
)
"""Who waits for what (`stock` as `schemas.catalogue.stock_key`), in line by `seq`;
`status` is waiting, offered, accepted, expired or left."""

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(36), primary_key=True),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("payment_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("issued_at", DATETIME(fsp=6), nullable=False),
    Index("ix_refunds_status", "status", "issued_at"),
)
"""Refunds decided (`issued`) and paid back by the provider (`completed`): the order clock
asks the provider for every issued one until it is completed."""

decided_commands = decided_commands_table(metadata)

outbox = outbox_table(metadata)

consumer_positions = consumer_positions_table(metadata)
