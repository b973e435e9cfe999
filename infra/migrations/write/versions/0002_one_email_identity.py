"""One e-mail identity compared byte for byte; consumer progress; outbox rows by partition;
when each command was decided (for retention).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from consumers.registration.state import recorded_email_key
from infra.db import add_consumer_progress_columns
from schemas.identity import identity_hash

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_consumer_progress_columns()
    op.drop_index("ix_registrations_convention_email", "registrations")
    op.drop_column("registrations", "active_key")
    op.alter_column(
        "registrations",
        "email_key",
        existing_type=sa.String(254),
        type_=sa.String(254, collation="utf8mb4_bin"),
        existing_nullable=False,
    )
    op.add_column("registrations", sa.Column("email_hash", mysql.BINARY(32), nullable=True))
    op.add_column("registrations", sa.Column("active_key", mysql.BINARY(32), nullable=True))
    _rekey_registrations()
    op.alter_column("registrations", "email_hash", existing_type=mysql.BINARY(32), nullable=False)
    op.create_unique_constraint("active_key", "registrations", ["active_key"])
    op.create_index(
        "ix_registrations_convention_email_hash", "registrations", ["convention_id", "email_hash"]
    )
    op.add_column(
        "decided_commands",
        sa.Column(
            "decided_at",
            mysql.DATETIME(fsp=6),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP(6)"),
        ),
    )
    op.create_index("ix_decided_commands_decided_at", "decided_commands", ["decided_at"])
    op.add_column("outbox", sa.Column("partition_no", sa.Integer(), nullable=True))
    op.create_index(
        "ix_outbox_partition_unpublished", "outbox", ["partition_no", "published_at", "seq"]
    )


def _rekey_registrations() -> None:
    """Existing rows get the one identity. Two confirmed rows of one convention that it now
    calls the same address keep one active key (the first); the other stays confirmed."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT registration_id, convention_id, email_key, status FROM registrations "
            "ORDER BY registration_id"
        )
    ).all()
    taken: set[bytes] = set()
    for row in rows:
        key = recorded_email_key(row.email_key)
        active = None
        if row.status == "confirmed":
            candidate = identity_hash(row.convention_id, key)
            if candidate not in taken:
                taken.add(candidate)
                active = candidate
        bind.execute(
            sa.text(
                "UPDATE registrations SET email_key = :key, email_hash = :hash, "
                "active_key = :active WHERE registration_id = :id"
            ),
            {
                "key": key,
                "hash": identity_hash(key),
                "active": active,
                "id": row.registration_id,
            },
        )


def downgrade() -> None:
    op.drop_index("ix_outbox_partition_unpublished", "outbox")
    op.drop_column("outbox", "partition_no")
    op.drop_index("ix_decided_commands_decided_at", "decided_commands")
    op.drop_column("decided_commands", "decided_at")
    op.drop_index("ix_registrations_convention_email_hash", "registrations")
    op.drop_column("registrations", "active_key")
    op.drop_column("registrations", "email_hash")
    op.add_column("registrations", sa.Column("active_key", sa.String(300), nullable=True))
    op.create_unique_constraint("active_key", "registrations", ["active_key"])
    op.create_index(
        "ix_registrations_convention_email", "registrations", ["convention_id", "email_key"]
    )
    op.drop_column("consumer_positions", "seen_at")
    op.drop_column("consumer_positions", "dead_letters")
    op.drop_column("consumer_positions", "progress_at")
