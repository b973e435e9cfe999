"""Accounts: the account decider's accounts, mailed tokens, roles, mail outbox, decided commands
and outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_decided_commands",
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("decided_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
    )
    op.create_index(
        "ix_account_decided_commands_decided_at",
        "account_decided_commands",
        ["decided_at"],
        unique=False,
    )
    op.create_table(
        "account_outbox",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("message_key", sa.String(length=400), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column(
            "value", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=False
        ),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("published_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("partition_no", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_account_outbox_partition_unpublished",
        "account_outbox",
        ["partition_no", "published_at", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_account_outbox_unpublished", "account_outbox", ["published_at", "seq"], unique=False
    )
    op.create_table(
        "account_roles",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("granted_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "role", "scope"),
    )
    op.create_table(
        "account_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("expires_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("used_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(
        "ix_account_tokens_account", "account_tokens", ["account_id", "purpose"], unique=False
    )
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("email_key", sa.String(length=254, collation="utf8mb4_bin"), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=400), nullable=False),
        sa.Column("verified", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("password_changed_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint("email_key"),
    )
    op.create_table(
        "mail_outbox",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("mail_id", sa.String(length=36), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("sent_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("mail_id"),
    )
    op.create_index("ix_mail_outbox_unsent", "mail_outbox", ["sent_at", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_unsent", table_name="mail_outbox")
    op.drop_table("mail_outbox")
    op.drop_table("accounts")
    op.drop_index("ix_account_tokens_account", table_name="account_tokens")
    op.drop_table("account_tokens")
    op.drop_table("account_roles")
    op.drop_index("ix_account_outbox_unpublished", table_name="account_outbox")
    op.drop_index("ix_account_outbox_partition_unpublished", table_name="account_outbox")
    op.drop_table("account_outbox")
    op.drop_index("ix_account_decided_commands_decided_at", table_name="account_decided_commands")
    op.drop_table("account_decided_commands")
