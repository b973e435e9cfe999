"""Alembic environment for the deciders' database (`butterfly_write`)."""

from consumers.accounts.tables import metadata as account_metadata
from consumers.lodging.tables import metadata as lodging_metadata
from consumers.registration.tables import metadata as registration_metadata
from infra.db import merged_metadata
from infra.migrations.runner import run_env

run_env(merged_metadata(registration_metadata, lodging_metadata, account_metadata))
