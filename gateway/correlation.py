"""The correlation id of a request: the caller's `X-Correlation-ID` if it is a UUID, else a
new one. It is sent back on every answer and travels with every command and event."""

from __future__ import annotations

import uuid

CORRELATION_HEADER = "X-Correlation-ID"


def correlation_from(raw: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        return uuid.uuid4()
