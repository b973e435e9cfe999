"""The reporting database `butterfly_reporting`: the archive of every event, for refilling a
wiped broker, and a star schema analysts query directly.

The star schema's facts say what happened (registrations, order lines, payments, refunds,
room nights, daily sales) and its dimensions say what it happened to (convention, badge type,
option, hotel, date, account). Accounts are pseudonymous: `account_key` is a keyed hash of the
e-mail identity, so analysts can count and follow people without ever seeing who they are.
Money is integer minor units in the convention's `currency`.
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
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT

from infra.db import consumer_positions_table

metadata = MetaData()

event_archive = Table(
    "event_archive",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("partition_no", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("message_key", String(400), nullable=False),
    Column("occurred_at", DATETIME(fsp=6), nullable=False),
    Column("correlation_id", String(36), nullable=False),
    Column("causation_id", String(36), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("payload", LONGTEXT().with_variant(Text(), "sqlite"), nullable=False),
    Column("envelope", LONGTEXT().with_variant(Text(), "sqlite"), nullable=False),
    Column("registration_id", String(36), nullable=True),
    Index("ix_event_archive_order", "topic", "partition_no", "source_offset"),
    Index("ix_event_archive_type", "event_type", "occurred_at"),
    Index("ix_event_archive_correlation", "correlation_id"),
    Index("ix_event_archive_registration", "registration_id"),
)

consumer_positions = consumer_positions_table(metadata)

# --- dimensions ------------------------------------------------------------------------------

dim_convention = Table(
    "dim_convention",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("opened_at", DATETIME(fsp=6), nullable=True),
    Column("closed_at", DATETIME(fsp=6), nullable=True),
)

dim_badge_type = Table(
    "dim_badge_type",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("badge_type", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("quota", Integer, nullable=False),
)

dim_option = Table(
    "dim_option",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("option_code", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("quota", Integer, nullable=True),
)

dim_hotel = Table(
    "dim_hotel",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("hotel_code", String(16), primary_key=True),
    Column("name", String(200), nullable=False),
)

dim_date = Table(
    "dim_date",
    metadata,
    Column("date_key", Date, primary_key=True),
    Column("year", SmallInteger, nullable=False),
    Column("quarter", SmallInteger, nullable=False),
    Column("month", SmallInteger, nullable=False),
    Column("day", SmallInteger, nullable=False),
    Column("iso_week", SmallInteger, nullable=False),
    Column("weekday", SmallInteger, nullable=False),
    Column("is_weekend", Boolean, nullable=False),
)

dim_account = Table(
    "dim_account",
    metadata,
    Column("account_key", String(64), primary_key=True),
    Column("first_seen_at", DATETIME(fsp=6), nullable=False),
)

# --- facts -----------------------------------------------------------------------------------

fact_registrations = Table(
    "fact_registrations",
    metadata,
    Column("registration_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("badge_type", String(40), nullable=False),
    Column("account_key", String(64), nullable=False),
    Column("signed_in", Boolean, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("tier", String(200), nullable=True),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("created_on", Date, nullable=False),
    Column("decided_at", DATETIME(fsp=6), nullable=True),
    Column("cancelled_at", DATETIME(fsp=6), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("subtotal_cents", BigInteger, nullable=False),
    Column("discount_cents", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("paid_cents", BigInteger, nullable=False),
    Column("refunded_cents", BigInteger, nullable=False),
    Index("ix_fact_registrations_convention", "convention_id", "created_at"),
)

fact_order_lines = Table(
    "fact_order_lines",
    metadata,
    Column("line_id", String(80), primary_key=True),
    Column("order_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("code", String(40), nullable=False),
    Column("variant", String(40), nullable=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
    Column("discount_cents", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("order_status", String(20), nullable=False),
    Column("ordered_at", DATETIME(fsp=6), nullable=False),
    Column("ordered_on", Date, nullable=False),
    Index("ix_fact_order_lines_order", "order_id"),
    Index("ix_fact_order_lines_convention", "convention_id", "kind", "code"),
)

fact_payments = Table(
    "fact_payments",
    metadata,
    Column("payment_key", String(36), primary_key=True),
    Column("payment_id", String(64), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_at", DATETIME(fsp=6), nullable=False),
    Column("paid_on", Date, nullable=False),
    Index("ix_fact_payments_convention", "convention_id", "paid_at"),
)

fact_refunds = Table(
    "fact_refunds",
    metadata,
    Column("refund_id", String(36), primary_key=True),
    Column("payment_id", String(64), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("issued_at", DATETIME(fsp=6), nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("completed_at", DATETIME(fsp=6), nullable=True),
    Index("ix_fact_refunds_convention", "convention_id", "issued_at"),
)

fact_waitlist_entries = Table(
    "fact_waitlist_entries",
    metadata,
    Column("entry_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("code", String(40), nullable=False),
    Column("variant", String(40), nullable=True),
    Column("quantity", Integer, nullable=False),
    Column("account_key", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("joined_at", DATETIME(fsp=6), nullable=False),
    Column("joined_on", Date, nullable=False),
    Column("offered_at", DATETIME(fsp=6), nullable=True),
    Column("ended_at", DATETIME(fsp=6), nullable=True),
    Column("registration_id", String(36), nullable=True),
    Index("ix_fact_waitlist_entries_convention", "convention_id", "kind", "code"),
)

fact_lodging_nights = Table(
    "fact_lodging_nights",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("night", Date, primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("hotel_code", String(16), nullable=False),
    Column("room_type", String(16), nullable=False),
    Column("status", String(20), nullable=False),
    Column("guests", SmallInteger, nullable=False),
    Column("rate_cents", BigInteger, nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Index("ix_fact_lodging_nights_hotel", "convention_id", "hotel_code", "night"),
)

fact_block_nights = Table(
    "fact_block_nights",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("hotel_code", String(16), primary_key=True),
    Column("room_type", String(16), primary_key=True),
    Column("night", Date, primary_key=True),
    Column("size", Integer, nullable=False),
    Column("rate_cents", BigInteger, nullable=False),
)

fact_daily_sales = Table(
    "fact_daily_sales",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("badge_type", String(40), primary_key=True),
    Column("sale_date", Date, primary_key=True),
    Column("registrations", Integer, nullable=False),
    Column("cancellations", Integer, nullable=False),
    Column("paid_cents", BigInteger, nullable=False),
    Column("refunded_cents", BigInteger, nullable=False),
    Column("revenue_cents", BigInteger, nullable=False),
)

STAR_TABLES: tuple[Table, ...] = (
    dim_convention,
    dim_badge_type,
    dim_option,
    dim_hotel,
    dim_date,
    dim_account,
    fact_registrations,
    fact_order_lines,
    fact_payments,
    fact_refunds,
    fact_waitlist_entries,
    fact_lodging_nights,
    fact_block_nights,
    fact_daily_sales,
)
"""What analysts may read: the `analyst` database user is granted SELECT on these only (the
archive holds e-mails in its payloads)."""
