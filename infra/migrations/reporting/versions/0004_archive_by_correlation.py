"""The event archive by correlation id: `butterfly trace` finds a request's events without
reading the whole archive.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_event_archive_correlation", "event_archive", ["correlation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_event_archive_correlation", table_name="event_archive")
