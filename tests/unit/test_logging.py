"""Log rendering (console at a terminal, JSON lines otherwise, stdlib loggers included) and
the correlation id on every line logged while a record is handled."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog
from aiokafka.structs import ConsumerRecord

from gateway.app import create_app
from gateway.deps import Gateway
from infra.logging import HANDLER_NAME, chosen_rendering, configure_logging
from infra.pipeline.exactly_once import batch_correlation, correlated, record_correlation
from schemas.registration import OpenConvention
from schemas.registry import wrap


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def record(
    correlation: str | None, value: bytes = b"{}", *, header: bool = True
) -> ConsumerRecord[bytes, bytes]:
    headers = [("correlation_id", correlation.encode())] if correlation and header else []
    return ConsumerRecord("t", 0, 0, 0, 0, b"k", value, None, 1, len(value), headers)


def test_auto_renders_for_a_person_at_a_terminal_and_json_for_anything_else() -> None:
    assert chosen_rendering("auto", Terminal()) == "console"
    assert chosen_rendering("auto", io.StringIO()) == "json"
    assert chosen_rendering("json", Terminal()) == "json"
    assert chosen_rendering("console", io.StringIO()) == "console"
    with pytest.raises(ValueError, match="auto, console or json"):
        chosen_rendering("xml", io.StringIO())


def test_json_lines_carry_role_level_time_message_and_bound_correlation() -> None:
    out = io.StringIO()
    assert configure_logging("decider.registration", "INFO", "auto", stream=out) == "json"
    structlog.contextvars.bind_contextvars(correlation_id="c-1")
    structlog.get_logger("test").info("command_decided", events=["AttendeeRegistered"])
    structlog.get_logger("test").debug("not shown at INFO")

    [line] = json_lines(out)
    assert line["message"] == "command_decided"
    assert line["role"] == "decider.registration"
    assert line["level"] == "info"
    assert line["correlation_id"] == "c-1"
    assert line["events"] == ["AttendeeRegistered"]
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None


def test_stdlib_loggers_go_through_the_same_renderer() -> None:
    out = io.StringIO()
    configure_logging("gateway", "INFO", "json", stream=out)
    structlog.contextvars.bind_contextvars(correlation_id="c-2")
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed for %s", "group-a")
    logging.getLogger("aiokafka.consumer").info("below the stdlib threshold")

    [line] = json_lines(out)
    assert line["message"] == "heartbeat failed for group-a"
    assert line["logger"] == "aiokafka.consumer"
    assert (line["role"], line["level"], line["correlation_id"]) == ("gateway", "warning", "c-2")


def test_console_rendering_is_for_people() -> None:
    out = io.StringIO()
    assert configure_logging("relay", "INFO", "console", stream=out) == "console"
    structlog.get_logger("test").info("outbox_relayed", count=3)
    logging.getLogger("uvicorn.error").error("port in use")

    first, second = out.getvalue().splitlines()
    assert not first.startswith("{")
    assert "outbox_relayed" in first
    assert "count=3" in first
    assert "role=relay" in first
    assert "port in use" in second
    assert "\x1b[" not in out.getvalue(), "no colours where no terminal reads them"


def test_configuring_again_replaces_only_its_own_stdlib_handler() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    try:
        configure_logging("a", stream=io.StringIO())
        configure_logging("b", stream=io.StringIO())
        handlers = logging.getLogger().handlers
        assert other in handlers
        assert sum(1 for h in handlers if h.name == HANDLER_NAME) == 1
    finally:
        logging.getLogger().removeHandler(other)


def test_a_record_correlation_comes_from_its_header_else_its_envelope() -> None:
    envelope = wrap(
        OpenConvention(convention_id=uuid.uuid4()),
        message_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        key="k",
        actor="test",
    )
    assert record_correlation(record("from-header", envelope.encode())) == "from-header"
    assert record_correlation(record("x", envelope.encode(), header=False)) == str(
        envelope.correlation_id
    )
    assert record_correlation(record(None, b"\xff not json")) is None


def test_a_batch_is_bound_to_a_correlation_only_when_all_its_records_share_it() -> None:
    assert batch_correlation([record("a"), record("a")]) == "a"
    assert batch_correlation([record("a"), record("b")]) is None
    assert batch_correlation([record("a"), record(None)]) is None


async def test_lines_logged_while_handling_a_record_carry_its_correlation() -> None:
    out = io.StringIO()
    configure_logging("projector.website", "INFO", "json", stream=out)
    log = structlog.get_logger("test")

    async def handle() -> None:
        with correlated(record_correlation(record("c-3"))):
            log.info("inside")
            await asyncio.sleep(0)
            log.warning("named", correlation_id="c-other")
            with correlated(None):
                log.info("still inside")
        log.info("after")

    await asyncio.create_task(handle())
    inside, named, still, after = json_lines(out)
    assert inside["correlation_id"] == "c-3"
    assert named["correlation_id"] == "c-other"
    assert still["correlation_id"] == "c-3"
    assert "correlation_id" not in after


def test_the_gateway_app_leaves_the_stdlib_loggers_to_butterfly() -> None:
    """Litestar configures logging of its own unless told not to: stdlib lines (aiokafka's,
    and httpx's for every in-process API call of a page) then bypassed the renderer."""
    out = io.StringIO()
    configure_logging("gateway", "INFO", "json", stream=out)
    create_app(cast(Gateway, SimpleNamespace()))
    logging.getLogger("httpx").info("HTTP Request: GET /api/v1/conventions")
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed")

    [line] = json_lines(out)
    assert (line["logger"], line["message"]) == ("aiokafka.consumer", "heartbeat failed")
