"""The settings as documented and as refused: README's table is the one the code makes, every
setting says what it does, and a value a setting cannot take stops a process at start with a
line naming the variable (and its value, unless it is a secret), exit status 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from infra.bootstrap import producer_of
from infra.settings import (
    ENV_FILE_VARIABLE,
    SECRETS,
    Settings,
    refusals,
    settings_table,
    variable_of,
)

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- settings:start -->\n"
END = "\n<!-- settings:end -->"
SECRET_VALUE = "s3cret-never-shown"
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> list[str]:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refusal:
        Settings(_env_file=None)
    return refusals(refusal.value)


def test_the_readme_table_is_the_one_the_code_makes() -> None:
    readme = (ROOT / "README.md").read_text()

    assert readme.count(START) == readme.count(END) == 1
    table = readme.split(START)[1].split(END)[0]
    assert table == settings_table(), (
        "README's settings table is stale: put `python -m infra.settings` between its markers"
    )


def test_the_module_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "infra.settings"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, ENV_FILE_VARIABLE: ""},
    ).stdout

    assert printed == settings_table() + "\n"


def test_every_setting_says_what_it_does() -> None:
    undescribed = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description or "").strip()
    ]

    assert undescribed == []


def test_the_table_has_one_row_per_variable_the_env_file_first() -> None:
    rows = settings_table().splitlines()
    variables = [row.split(" | ")[0].removeprefix("| ") for row in rows[2:]]

    assert rows[:2] == ["| setting | default | what it does |", "|---|---|---|"]
    assert variables == [
        f"`{ENV_FILE_VARIABLE}`",
        *(f"`{variable_of(name)}`" for name in Settings.model_fields),
    ]
    assert all(len(UNESCAPED_PIPE.findall(row)) == 4 for row in rows)


def test_variables_are_the_prefixed_names_or_the_plain_aliases() -> None:
    assert variable_of("partitions") == "BUTTERFLY_PARTITIONS"
    assert variable_of("kafka_idempotence") == "BUTTERFLY_KAFKA_IDEMPOTENCE"
    assert variable_of("kafka_bootstrap_servers") == "KAFKA_BOOTSTRAP_SERVERS"
    assert variable_of("database_url") == "DATABASE_URL"
    assert variable_of("redis_url") == "REDIS_URL"


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "BUTTERFLY_PARTITIONS",
            "abc",
            "bad setting BUTTERFLY_PARTITIONS='abc': Input should be a valid integer",
        ),
        (
            "BUTTERFLY_PARTITIONS",
            "0",
            "bad setting BUTTERFLY_PARTITIONS='0': Input should be greater than or equal to 1",
        ),
        (
            "BUTTERFLY_PARTNER_ERROR_RATE",
            "2",
            "bad setting BUTTERFLY_PARTNER_ERROR_RATE='2': Input should be less than or equal to 1",
        ),
        (
            "BUTTERFLY_HTTP_PORT",
            "70000",
            "bad setting BUTTERFLY_HTTP_PORT='70000': Input should be less than or equal to 65535",
        ),
        (
            "BUTTERFLY_METRICS_PORT",
            "-1",
            "bad setting BUTTERFLY_METRICS_PORT='-1': Input should be greater than or equal to 0",
        ),
        (
            "BUTTERFLY_STALL_SECONDS",
            "0",
            "bad setting BUTTERFLY_STALL_SECONDS='0': Input should be greater than 0",
        ),
        (
            "BUTTERFLY_LODGING_CONCURRENCY",
            "0",
            "bad setting BUTTERFLY_LODGING_CONCURRENCY='0': Input should be greater than or equal",
        ),
        (
            "BUTTERFLY_LOG_LEVEL",
            "verbose",
            "bad setting BUTTERFLY_LOG_LEVEL='verbose': not a log level: DEBUG, INFO, WARNING, "
            "ERROR or CRITICAL",
        ),
        (
            "BUTTERFLY_LOG_FORMAT",
            "xml",
            "bad setting BUTTERFLY_LOG_FORMAT='xml': Input should be 'auto', 'console' or 'json'",
        ),
        (
            "BUTTERFLY_KAFKA_IDEMPOTENCE",
            "maybe",
            "bad setting BUTTERFLY_KAFKA_IDEMPOTENCE='maybe': Input should be a valid boolean",
        ),
        (
            "BUTTERFLY_REPLICAS",
            "relay:2",
            "bad setting BUTTERFLY_REPLICAS='relay:2': relay runs once",
        ),
    ],
    ids=lambda value: str(value).removeprefix("BUTTERFLY_").split(" ")[0][:24],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, line: str
) -> None:
    (refusal,) = refused(monkeypatch, variable, value)

    assert refusal.startswith(line)
    assert "\n" not in refusal


def test_every_problem_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTERFLY_PARTITIONS", "abc")

    lines = refused(monkeypatch, "BUTTERFLY_HTTP_PORT", "0")

    assert sorted(line.split("=")[0] for line in lines) == [
        "bad setting BUTTERFLY_HTTP_PORT",
        "bad setting BUTTERFLY_PARTITIONS",
    ]


def test_good_values_pass_and_a_log_level_is_read_in_any_case() -> None:
    settings = Settings(
        _env_file=None, log_level="debug", metrics_port=0, partner_error_rate=1, http_port=65535
    )

    assert settings.log_level == "DEBUG"
    assert Settings(_env_file=None).kafka_idempotence is False
    assert Settings(_env_file=None, kafka_idempotence="true").kafka_idempotence is True


def test_a_refused_secret_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    (refusal,) = refused(monkeypatch, "BUTTERFLY_TICKET_KEYS", SECRET_VALUE)

    assert refusal == (
        "bad setting BUTTERFLY_TICKET_KEYS: ticket keys are written kid:seed, separated by commas"
    )


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_secret_value_is_ever_shown(name: str) -> None:
    problems: list[InitErrorDetails] = [
        {"type": "string_type", "loc": (variable_of(name),), "input": SECRET_VALUE},
        {"type": "string_type", "loc": (name,), "input": SECRET_VALUE},
    ]
    error = ValidationError.from_exception_data("Settings", problems)
    named = f"bad setting {variable_of(name)}: Input should be a valid string"

    assert refusals(error) == [named, named]


def test_a_process_with_a_bad_setting_stops_with_status_2_and_no_traceback() -> None:
    started = subprocess.run(
        # `trace` with a bad id exits 1 at once after reading the settings, before any I/O.
        [sys.executable, "-m", "infra.cli", "trace", "not-a-correlation-id"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={
            **os.environ,
            ENV_FILE_VARIABLE: "",
            "BUTTERFLY_PARTITIONS": "abc",
            "BUTTERFLY_TICKET_KEYS": SECRET_VALUE,
        },
    )

    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    assert SECRET_VALUE not in started.stderr
    assert sorted(started.stderr.splitlines()) == [
        "butterfly: bad setting BUTTERFLY_PARTITIONS='abc': Input should be a valid integer, "
        "unable to parse string as an integer",
        "butterfly: bad setting BUTTERFLY_TICKET_KEYS: ticket keys are written kid:seed, "
        "separated by commas",
    ]


async def test_the_producers_are_idempotent_only_when_the_setting_says() -> None:
    for wanted in (False, True):
        settings = Settings(
            _env_file=None, kafka_bootstrap_servers="127.0.0.1:9", kafka_idempotence=wanted
        )
        producer = producer_of(settings)
        assert (producer._txn_manager is not None) is wanted
        await producer.stop()
