"""The account read models in `butterfly_read`, beside the website's and lodging's: what the
gateway answers account questions from (who is this, are they verified, which sessions are
still good, which roles do they hold, how did a command end).

They live in a metadata of their own so the accounts projector can be rebuilt (its tables
dropped and refilled from `accounts.events`) without touching the other read models; its
consumer positions go to the website's `consumer_positions` table under a group of its own.
No password and no token is ever here: events do not carry them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME

metadata = MetaData()

accounts = Table(
    "account_views",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("email", String(254), nullable=False),
    Column("email_key", String(254, collation="utf8mb4_bin"), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("verified", Boolean, nullable=False, server_default=text("0")),
    Column("sessions_valid_after", DATETIME(fsp=6), nullable=True),
    Column("last_mailed_at", DATETIME(fsp=6), nullable=True),
    Column("created_at", DATETIME(fsp=6), nullable=False),
)
"""One account. `email_key` compares byte for byte, as `schemas.identity.email_key` does, so
MariaDB never takes two identities for one. A session made before `sessions_valid_after`
(the last password change) is over; null: every session since sign-up is good."""

roles = Table(
    "account_view_roles",
    metadata,
    Column("account_id", String(36), nullable=False),
    Column("role", String(16), nullable=False),
    Column("scope", String(36), nullable=False),
    Column("granted_at", DATETIME(fsp=6), nullable=False),
    PrimaryKeyConstraint("account_id", "role", "scope"),
)
"""The roles an account holds now. `scope` is the convention id of a staff grant, empty for
the others (a primary key cannot hold null)."""

role_changes = Table(
    "account_role_changes",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("role", String(16), nullable=False),
    Column("scope", String(36), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", DATETIME(fsp=6), nullable=False),
    Index("ix_account_role_changes_account", "account_id", "at", "event_id"),
)
"""Every grant and revocation, with who did it: the audit trail, never pruned."""

command_outcomes = Table(
    "account_command_outcomes",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("command", String(40), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("recorded_at", DATETIME(fsp=6), nullable=False),
    Index("ix_account_command_outcomes_recorded_at", "recorded_at"),
)
"""How each account command ended (its id is the causation id of its events): what the
gateway waits on to answer a write. `outcome` is `accepted` or `rejected` (with the
machine-readable `reason`); a rejection replaces an acceptance recorded before it."""

applied_events = Table(
    "account_applied_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("applied_at", DATETIME(fsp=6), nullable=False),
    Index("ix_account_applied_events_applied_at", "applied_at"),
)
"""Events already projected, so a redelivered one changes nothing twice."""
