"""Consumer progress: when each partition last moved, and its dead letters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from infra.db import add_consumer_progress_columns

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_consumer_progress_columns()


def downgrade() -> None:
    op.drop_column("consumer_positions", "seen_at")
    op.drop_column("consumer_positions", "dead_letters")
    op.drop_column("consumer_positions", "progress_at")
