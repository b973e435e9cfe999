"""Alembic environment for the reporting database (`butterfly_reporting`)."""

from infra.migrations.runner import run_env
from projections.reporting.tables import metadata

run_env(metadata)
