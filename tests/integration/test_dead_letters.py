"""Listing and replaying the dead-letter topic on a real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from infra import cli
from infra.bootstrap import build_decider, group_name
from infra.settings import Settings
from producers.dead_letters import (
    HEADER_REPLAYED_FROM,
    DeadLetterEntry,
    read_dead_letters,
    replay,
)
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    Headers,
)
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    eventually,
    open_convention,
    produce,
    read_topic,
    running,
)

pytestmark = pytest.mark.integration

GROUP = "test.group.decider"


def dead_letter_headers(
    original: Headers, *, source_topic: str, partition: int, offset: int, error: Exception
) -> Headers:
    """The headers ExactlyOnceConsumer puts on a dead letter: the record's own, then its own."""
    return [
        *original,
        (HEADER_ERROR, str(error).encode()),
        (HEADER_ERROR_CLASS, type(error).__name__.encode()),
        (HEADER_SOURCE_TOPIC, source_topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
        (HEADER_CONSUMER_GROUP, GROUP.encode()),
    ]


async def two_dead_letters(settings: Settings) -> tuple[str, bytes, Headers, bytes, Headers]:
    """Dead-letters a command and a non-JSON record of one key (so one partition, in order);
    the second record has an `error` header of its own, which must stay an original header."""
    topics = Topics(settings.topic_prefix)
    envelope = command_envelope(open_convention(uuid.uuid4()))
    key = envelope.key
    command_headers = envelope.headers()
    junk = b"\xff not json"
    junk_headers: Headers = [("error", b"the client's own header")]
    await produce(
        settings,
        topics.dead_letter,
        [
            (
                key,
                envelope.encode(),
                dead_letter_headers(
                    command_headers,
                    source_topic=topics.registration_commands,
                    partition=1,
                    offset=7,
                    error=RuntimeError("the handler failed\nwith a second line"),
                ),
            ),
            (
                key,
                junk,
                dead_letter_headers(
                    junk_headers,
                    source_topic=topics.registration_commands,
                    partition=1,
                    offset=8,
                    error=ValueError("not JSON"),
                ),
            ),
        ],
    )
    return key, envelope.encode(), command_headers, junk, junk_headers


async def test_read_dead_letters_parses_what_the_consumer_wrote(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    key, value, headers, junk, junk_headers = await two_dead_letters(settings)

    entries = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)

    assert len(entries) == 2
    command, poison = entries
    assert command.partition == poison.partition
    assert poison.offset > command.offset
    assert command.id == f"{command.partition}:{command.offset}"
    assert command.dead_letter_topic == topics.dead_letter
    assert command.source_topic == topics.registration_commands
    assert (command.source_partition, command.source_offset) == (1, 7)
    assert command.consumer_group == GROUP
    assert command.error_class == "RuntimeError"
    assert command.error == "the handler failed\nwith a second line"
    assert command.message_type == "OpenConvention"
    assert command.key == key
    assert command.value == value
    assert list(command.headers) == headers
    assert abs(command.timestamp - datetime.now(UTC)) < timedelta(minutes=5)
    assert (poison.source_offset, poison.error_class, poison.error) == (8, "ValueError", "not JSON")
    assert poison.message_type is None
    assert poison.value == junk
    assert list(poison.headers) == junk_headers


async def test_an_empty_or_missing_topic_has_no_dead_letters(make_settings: StackFactory) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    servers = settings.kafka_bootstrap_servers
    assert await read_dead_letters(servers, topics.dead_letter) == []
    assert await read_dead_letters(servers, f"{settings.topic_prefix}no-such-topic") == []


async def test_replay_sends_the_original_record_back_to_its_source_topic(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    key, value, headers, _, _ = await two_dead_letters(settings)
    command, _ = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)

    assert await replay(settings.kafka_bootstrap_servers, [command]) == 1

    [replayed] = await eventually(
        lambda: read_topic(settings, topics.registration_commands),
        lambda records: len(records) >= 1,
        what="the replayed command",
    )
    assert replayed.key == key.encode()
    assert replayed.value == value
    assert list(replayed.headers) == [
        *headers,
        (HEADER_REPLAYED_FROM, f"{topics.dead_letter}:{command.id}".encode()),
    ]


async def test_replay_refuses_a_dead_letter_without_a_source_topic(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    await produce(settings, topics.dead_letter, [("k", b"hand-made", [])])
    [entry] = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)
    assert entry.source_topic is None
    with pytest.raises(ValueError, match="source topic"):
        await replay(settings.kafka_bootstrap_servers, [entry])


async def test_a_poison_record_is_listed_and_replayed_into_the_decider_again(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    servers = settings.kafka_bootstrap_servers
    key = str(uuid.uuid4())
    poison = b"\xff poison"
    await produce(settings, topics.registration_commands, [(key, poison, [])])
    [sent] = await read_topic(settings, topics.registration_commands)

    def count_at_least(n: int) -> Callable[[list[DeadLetterEntry]], bool]:
        return lambda entries: len(entries) >= n

    async with running(build_decider(settings)):
        [first] = await eventually(
            lambda: read_dead_letters(servers, topics.dead_letter),
            count_at_least(1),
            what="the poison record dead-lettered",
        )
        assert first.source_topic == topics.registration_commands
        assert (first.source_partition, first.source_offset) == (sent.partition, sent.offset)
        assert first.consumer_group == group_name(settings, "decider.registration")
        assert first.error_class == "UndecodableMessage"
        assert first.error is not None
        assert "not JSON" in first.error
        assert (first.key, first.value, first.headers) == (key, poison, ())

        assert await replay(servers, [first]) == 1
        letters = await eventually(
            lambda: read_dead_letters(servers, topics.dead_letter),
            count_at_least(2),
            what="the replayed poison record dead-lettered again",
        )
    again = next(entry for entry in letters if entry.id != first.id)
    assert again.source_offset is not None
    assert first.source_offset is not None
    assert again.source_offset > first.source_offset
    assert again.headers == ((HEADER_REPLAYED_FROM, f"{topics.dead_letter}:{first.id}".encode()),)


@pytest.fixture
async def with_two_dead_letters(make_settings: StackFactory) -> Settings:
    settings = await make_settings()
    await two_dead_letters(settings)
    return settings


def test_dlq_list_prints_a_line_per_dead_letter_and_a_count(
    with_two_dead_letters: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = with_two_dead_letters
    topics = Topics(settings.topic_prefix)
    args = cli.build_parser().parse_args(["dlq", "list"])
    args.func(settings, args)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert (
        f"{topics.registration_commands}[1]@7  {GROUP}  OpenConvention  RuntimeError: "
        in (lines[0])
    )
    assert lines[0].endswith("the handler failed with a second line")
    assert lines[2] == f"2 dead letter(s) in {topics.dead_letter}"


def test_dlq_list_json_prints_one_object_per_dead_letter(
    with_two_dead_letters: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli.build_parser().parse_args(["dlq", "list", "--json"])
    args.func(with_two_dead_letters, args)
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["source_offset"], o["error_class"]) for o in objects] == [
        (7, "RuntimeError"),
        (8, "ValueError"),
    ]
    assert objects[1]["headers"] == {"error": "the client's own header"}


def test_dlq_replay_refuses_an_unknown_id_and_replays_known_ones(
    with_two_dead_letters: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = with_two_dead_letters
    parser = cli.build_parser()
    topics = Topics(settings.topic_prefix)
    servers = settings.kafka_bootstrap_servers
    known = asyncio.run(read_dead_letters(servers, topics.dead_letter))[0].id
    unknown = parser.parse_args(["dlq", "replay", known, "99:99"])
    with pytest.raises(SystemExit) as exited:
        unknown.func(settings, unknown)
    assert str(exited.value.code).startswith("butterfly dlq replay: no dead letter 99:99 in ")
    everything = parser.parse_args(["dlq", "replay", "--all"])
    everything.func(settings, everything)
    assert capsys.readouterr().out.startswith("replayed 2 dead letter(s)")
    assert len(asyncio.run(read_topic(settings, topics.registration_commands))) == 2


def test_the_dlq_commands_parse() -> None:
    parser = cli.build_parser()
    listing = parser.parse_args(["dlq", "list"])
    assert (listing.command, listing.func, listing.json) == ("dlq", cli._dlq_list, False)
    assert parser.parse_args(["dlq", "list", "--json"]).json is True
    chosen = parser.parse_args(["dlq", "replay", "0:3", "2:5"])
    assert (chosen.func, chosen.ids, chosen.all) == (cli._dlq_replay, ["0:3", "2:5"], False)
    everything = parser.parse_args(["dlq", "replay", "--all"])
    assert (everything.ids, everything.all) == ([], True)


@pytest.mark.parametrize(
    "argv", [["dlq"], ["dlq", "replay"], ["dlq", "replay", "0:3", "--all"], ["dlq", "drop"]]
)
def test_the_dlq_commands_refuse_incomplete_or_conflicting_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(argv)
    assert exited.value.code == 2
