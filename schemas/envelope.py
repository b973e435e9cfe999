"""The message envelope every command and event travels in, and its wire encoding."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

HEADER_TYPE = "type"
HEADER_CORRELATION_ID = "correlation_id"
HEADER_SCHEMA_VERSION = "schema_version"
HEADER_ERROR = "error"
HEADER_ERROR_CLASS = "error_class"
HEADER_SOURCE_TOPIC = "source_topic"
HEADER_SOURCE_PARTITION = "source_partition"
HEADER_SOURCE_OFFSET = "source_offset"
HEADER_CONSUMER_GROUP = "consumer_group"

Headers = list[tuple[str, bytes]]


class Envelope(BaseModel):
    """Metadata shared by every message, with the payload as plain JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: uuid.UUID
    type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(ge=1)
    occurred_at: datetime
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    key: str = Field(min_length=1, max_length=400)
    actor: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self) -> Headers:
        return [
            (HEADER_TYPE, self.type.encode()),
            (HEADER_CORRELATION_ID, str(self.correlation_id).encode()),
            (HEADER_SCHEMA_VERSION, str(self.schema_version).encode()),
        ]


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    """A Kafka header as text, so tools (and logs) can route without decoding the body."""
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace")
    return None


def correlation_of(headers: Sequence[tuple[str, bytes]] | None, envelope: Envelope) -> str:
    """The correlation id a record travels with: its header, else its envelope's."""
    return header(headers, HEADER_CORRELATION_ID) or str(envelope.correlation_id)


class UndecodableMessage(ValueError):
    """A record that is not a valid envelope: it belongs in the dead-letter topic."""


def decode_envelope(value: bytes | None) -> Envelope:
    if value is None:
        raise UndecodableMessage("record has no value")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UndecodableMessage(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise UndecodableMessage("envelope is not a JSON object")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        raise UndecodableMessage(f"invalid envelope: {_first_errors(exc)}") from exc


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def describe_validation_error(exc: ValidationError) -> str:
    return _first_errors(exc)
