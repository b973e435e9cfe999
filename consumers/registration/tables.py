"""The registration decider's own state in `butterfly_write`: what its rules need to decide."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import BINARY, DATETIME, LONGBLOB

from infra.db import consumer_positions_table

metadata = MetaData()

conventions = Table(
    "conventions",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
)

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
    Index("ix_registrations_convention_email_hash", "convention_id", "email_hash"),
)
"""`email_key` is `schemas.identity.email_key` of the address; `email_hash` and `active_key`
are `identity_hash`es of it, compared byte for byte. `active_key` is set only while
confirmed: the database itself refuses a second active registration for one e-mail in one
convention."""

decided_commands = Table(
    "decided_commands",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("decided_at", DATETIME(fsp=6), nullable=False),
    Index("ix_decided_commands_decided_at", "decided_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("message_key", String(400), nullable=False),
    Column("headers", Text, nullable=False),
    Column("value", LargeBinary().with_variant(LONGBLOB(), "mysql"), nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("published_at", DATETIME(fsp=6), nullable=True),
    Column("partition_no", Integer, nullable=True),
    Index("ix_outbox_unpublished", "published_at", "seq"),
    Index("ix_outbox_partition_unpublished", "partition_no", "published_at", "seq"),
)
"""`partition_no` is the command partition whose decisions staged the row: whoever takes that
partition over publishes its leftovers before deciding anything new."""

consumer_positions = consumer_positions_table(metadata)
