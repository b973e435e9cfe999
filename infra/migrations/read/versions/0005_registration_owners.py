"""Registrations know their owner: the account that made one while logged in, or the e-mail
identity a guest registration is claimed by.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schemas.identity import email_key

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "registrations",
        sa.Column("email_key", sa.String(254, collation="utf8mb4_bin"), nullable=True),
    )
    op.add_column("registrations", sa.Column("account_id", sa.String(36), nullable=True))
    _fill_email_keys()
    op.create_index("ix_registrations_account", "registrations", ["account_id", "created_at"])
    op.create_index("ix_registrations_email_key", "registrations", ["email_key", "created_at"])


def _fill_email_keys() -> None:
    """Registrations made before this revision were all guests: their e-mail identity."""
    registrations = sa.table(
        "registrations",
        sa.column("registration_id", sa.String),
        sa.column("email", sa.String),
        sa.column("email_key", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(registrations.c.registration_id, registrations.c.email))
    for registration_id, email in rows.all():
        try:
            key = email_key(email)
        except ValueError:
            continue
        connection.execute(
            registrations.update()
            .where(registrations.c.registration_id == registration_id)
            .values(email_key=key)
        )


def downgrade() -> None:
    op.drop_index("ix_registrations_email_key", "registrations")
    op.drop_index("ix_registrations_account", "registrations")
    op.drop_column("registrations", "account_id")
    op.drop_column("registrations", "email_key")
