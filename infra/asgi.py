"""ASGI entry point for uvicorn workers: `infra.asgi:app`."""

from __future__ import annotations

from infra.bootstrap import build_gateway_app
from infra.logging import configure_logging
from infra.runtime import tune_garbage_collection
from infra.settings import settings_or_exit

tune_garbage_collection()
_settings = settings_or_exit()
configure_logging("gateway", _settings.log_level, _settings.log_format)
app = build_gateway_app(_settings)
