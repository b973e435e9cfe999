"""`butterfly trace` on a real broker and MariaDB: a registration's command from the command
topic, its events from the archive the reporting projector fills, its log lines from a file."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra import cli
from infra.bootstrap import build_decider, build_projector
from infra.settings import Settings
from infra.trace import archived_events, collect_trace
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    eventually,
    open_convention_with_quota,
    registration,
    running,
    send_commands,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Registered:
    settings: Settings
    correlation_id: str
    command_id: str


@pytest.fixture(scope="module")
async def registered(make_settings: StackFactory) -> Registered:
    """One registration decided and archived: a decider and the reporting projector ran."""
    settings = await make_settings(partitions=1)
    async with running(build_decider(settings)), running(build_projector(settings, "reporting")):
        convention_id = await open_convention_with_quota(settings, quota=5)
        command, _ = registration(convention_id, "ada@example.org")
        envelope = command_envelope(command)
        await send_commands(settings, envelope)
        correlation_id = str(envelope.correlation_id)
        await eventually(
            lambda: archived_events(settings, correlation_id),
            lambda events: len(events) >= 1,
            what="the registration's events archived",
        )
    return Registered(settings, correlation_id, str(envelope.message_id))


async def test_trace_shows_the_command_then_the_events_it_caused(registered: Registered) -> None:
    trace = await collect_trace(registered.settings, registered.correlation_id)

    topics = Topics(registered.settings.topic_prefix)
    command, *events = trace.items
    assert (command.kind, command.type, command.depth) == ("command", "RegisterAttendee", 0)
    assert command.topic == topics.registration_commands
    assert command.message_id == registered.command_id
    assert events
    assert {e.kind for e in events} == {"event"}
    assert "AttendeeRegistered" in [e.type for e in events]
    for event in events:
        assert event.topic == topics.registration_events
        assert (event.causation_id, event.depth) == (registered.command_id, 1)
        assert event.at >= command.at, "an event is published after the command it decides"
    offsets = [e.offset for e in events]
    assert offsets == sorted(offsets)


def test_cli_trace_prints_a_timeline_with_log_lines_and_json(
    registered: Registered, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    lines = [
        {
            "message": "command_decided",
            "level": "info",
            "role": "decider.registration",
            "timestamp": (now + timedelta(seconds=1)).isoformat(),
            "correlation_id": registered.correlation_id,
            "command_id": registered.command_id,
        },
        {
            "message": "request_answered",
            "level": "info",
            "role": "gateway",
            "timestamp": (now + timedelta(seconds=2)).isoformat(),
            "correlation_id": registered.correlation_id,
        },
        {
            "message": "someone_else",
            "level": "info",
            "role": "gateway",
            "timestamp": now.isoformat(),
            "correlation_id": str(uuid.uuid4()),
        },
    ]
    logs = tmp_path / "butterfly.log"
    logs.write_text(
        "\n".join([*map(json.dumps, lines), f"12:00:00 [info] console {registered.correlation_id}"])
    )

    cli._trace(
        registered.settings,
        cli.build_parser().parse_args(["trace", registered.correlation_id, "--logs", str(logs)]),
    )
    text = capsys.readouterr().out
    assert f"correlation {registered.correlation_id}: 1 command(s)" in text
    assert "2 log line(s)" in text
    body = text.splitlines()[1:]
    assert "RegisterAttendee" in body[0]
    assert any("AttendeeRegistered" in line for line in body)
    decided = next(i for i, line in enumerate(body) if "command_decided" in line)
    assert body[decided].split("log")[0].endswith("  "), "a line about the command hangs under it"
    assert "request_answered" in body[-1]
    assert "someone_else" not in text

    args = cli.build_parser().parse_args(
        ["trace", registered.correlation_id, "--json", "--logs", str(logs)]
    )
    cli._trace(registered.settings, args)
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [i["kind"] for i in items][:1] == ["command"]
    assert items[0]["offset_seconds"] >= 0
    assert {i["kind"] for i in items} == {"command", "event", "log"}
    assert [i["offset_seconds"] >= 0 for i in items] == [True] * len(items)


def test_cli_trace_of_an_unknown_id_says_so_and_exits_1(
    registered: Registered, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(SystemExit) as exited:
        cli._trace(registered.settings, cli.build_parser().parse_args(["trace", unknown]))
    assert str(exited.value.code).startswith(
        f"butterfly trace: nothing carries correlation id {unknown}"
    )
    with pytest.raises(SystemExit) as exited:
        cli._trace(registered.settings, cli.build_parser().parse_args(["trace", "not-a-uuid"]))
    assert "not a correlation id" in str(exited.value.code)
