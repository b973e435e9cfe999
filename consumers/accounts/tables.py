"""The account decider's own state in `butterfly_write`.

`accounts.password_hash` is the only copy of a password (as an argon2 hash): no event carries
it. The gateway reads it, and nothing else here, to check a login (`gateway.credentials`).
`mail_outbox` holds the mails the decider decided to send, written in the same transaction
as the decision; the mailer role delivers them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
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

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("email_key", String(254, collation="utf8mb4_bin"), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(400), nullable=False),
    Column("verified", Boolean, nullable=False, server_default=text("0")),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("password_changed_at", DATETIME(fsp=6), nullable=False),
)

account_tokens = Table(
    "account_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("expires_at", DATETIME(fsp=6), nullable=False),
    Column("used_at", DATETIME(fsp=6), nullable=True),
    Index("ix_account_tokens_account", "account_id", "purpose"),
)
"""Mailed tokens, by the sha256 of the token: a token is good once, until it expires, and a
newer one of the same purpose replaces the older ones."""

account_roles = Table(
    "account_roles",
    metadata,
    Column("account_id", String(36), nullable=False),
    Column("role", String(16), nullable=False),
    Column("scope", String(36), nullable=False),
    Column("granted_at", DATETIME(fsp=6), nullable=False),
    PrimaryKeyConstraint("account_id", "role", "scope"),
)
"""`scope` is the convention id of a staff grant, empty for the others."""

mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("mail_id", String(36), nullable=False, unique=True),
    Column("to_address", String(254), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("sent_at", DATETIME(fsp=6), nullable=True),
    Index("ix_mail_outbox_unsent", "sent_at", "seq"),
)
"""`mail_id` derives from the deciding command, so a decision made twice mails once."""

decided_commands = decided_commands_table(metadata, "account_decided_commands")

outbox = outbox_table(metadata, "account_outbox")
