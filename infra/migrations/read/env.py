"""Alembic environment for the website read models (`butterfly_read`)."""

from infra.migrations.runner import run_env
from projections.website.tables import metadata

run_env(metadata)
