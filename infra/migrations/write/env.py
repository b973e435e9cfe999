"""Alembic environment for the decider's database (`butterfly_write`)."""

from consumers.registration.tables import metadata
from infra.migrations.runner import run_env

run_env(metadata)
