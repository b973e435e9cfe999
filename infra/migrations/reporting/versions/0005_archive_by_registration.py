"""The event archive by registration: a registration's history is read without reading the
whole archive. Events archived before this revision get the registration their payload
names; the `analyst` user is granted nothing new (the archive stays out of its reach).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("event_archive", sa.Column("registration_id", sa.String(36), nullable=True))
    op.execute(
        "UPDATE event_archive "
        "SET registration_id = JSON_VALUE(payload, '$.registration_id') "
        "WHERE JSON_TYPE(JSON_EXTRACT(payload, '$.registration_id')) = 'STRING' "
        "AND CHAR_LENGTH(JSON_VALUE(payload, '$.registration_id')) BETWEEN 1 AND 36"
    )
    op.create_index(
        "ix_event_archive_registration", "event_archive", ["registration_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_event_archive_registration", table_name="event_archive")
    op.drop_column("event_archive", "registration_id")
