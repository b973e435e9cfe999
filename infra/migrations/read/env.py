"""Alembic environment for the read models (`butterfly_read`): the website's, lodging's,
accounts' and orders'."""

from infra.db import merged_metadata
from infra.migrations.runner import run_env
from projections.accounts.tables import metadata as accounts_metadata
from projections.lodging.tables import metadata as lodging_metadata
from projections.orders.tables import metadata as orders_metadata
from projections.website.tables import metadata as website_metadata

run_env(merged_metadata(website_metadata, lodging_metadata, accounts_metadata, orders_metadata))
