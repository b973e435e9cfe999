"""The registration decider's own state in `butterfly_write`: what its rules need to decide."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)
from sqlalchemy.dialects.mysql import BINARY

from infra.db import consumer_positions_table, decided_commands_table, outbox_table

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

decided_commands = decided_commands_table(metadata)

outbox = outbox_table(metadata)

consumer_positions = consumer_positions_table(metadata)
