"""Consumer progress; when each event was applied (for retention).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from infra.db import add_consumer_progress_columns

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_consumer_progress_columns()
    op.add_column(
        "applied_events",
        sa.Column(
            "applied_at",
            mysql.DATETIME(fsp=6),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP(6)"),
        ),
    )
    op.create_index("ix_applied_events_applied_at", "applied_events", ["applied_at"])
    op.create_index("ix_command_outcomes_recorded_at", "command_outcomes", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_command_outcomes_recorded_at", "command_outcomes")
    op.drop_index("ix_applied_events_applied_at", "applied_events")
    op.drop_column("applied_events", "applied_at")
    op.drop_column("consumer_positions", "seen_at")
    op.drop_column("consumer_positions", "dead_letters")
    op.drop_column("consumer_positions", "progress_at")
