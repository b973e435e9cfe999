"""What keeps a test run to itself, without a broker or a database: a service the
environment names is used or refused, never silently replaced, and no `.env` file reaches
the settings a test builds or the processes it starts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from infra.services import free_port
from infra.settings import ENV_FILE_VARIABLE, Settings
from tests.conftest import configured_service_problem, settings_without_env_file

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 60.0
CONFIGURED_SERVICES = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
LEAK_PREFIX = "leak."


def dead_kafka() -> str:
    return f"127.0.0.1:{free_port()}"


def dead_database() -> str:
    return f"mysql+asyncmy://root@127.0.0.1:{free_port()}/"


async def test_a_configured_broker_that_does_not_answer_is_refused() -> None:
    bootstrap = dead_kafka()

    problem = await configured_service_problem({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})

    assert problem == (
        f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} does not answer a metadata request; "
        "unset it to use an embedded broker"
    )


async def test_a_configured_database_that_does_not_answer_is_refused() -> None:
    url = dead_database()

    problem = await configured_service_problem({"DATABASE_URL": url})

    assert problem is not None
    assert problem.startswith(f"DATABASE_URL={url} does not answer; unset it")


async def test_nothing_configured_means_nothing_to_refuse() -> None:
    assert await configured_service_problem({"KAFKA_BOOTSTRAP_SERVERS": " ", "TERM": "x"}) is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", dead_kafka(), "does not answer a metadata request"),
        ("DATABASE_URL", dead_database(), "does not answer; unset it"),
    ],
    ids=["kafka", "database"],
)
async def test_a_run_with_a_dead_configured_service_stops_at_once_with_the_reason(
    variable: str, value: str, message: str
) -> None:
    """The whole harness, in a pytest of its own: the first test that needs the services
    ends the run with a usage error and one line saying which service and why."""
    env = {
        name: setting
        for name, setting in os.environ.items()
        if name not in {*CONFIGURED_SERVICES, "BUTTERFLY_TESTCONTAINERS", "PYTEST_ADDOPTS"}
    }
    env[variable] = value
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/integration/test_migrations.py",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(run.communicate(), DEADLINE_SECONDS)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    text = output.decode()

    assert run.returncode == pytest.ExitCode.USAGE_ERROR, text
    assert f"{variable}={value} {message}" in text
    assert "passed" not in text


LEAKED = {
    bool: "True",
    int: "7777",
    float: "0.75",
    str: LEAK_PREFIX,
}


LEAKED_BY_NAME = {
    "ticket_keys": "leak:5AymB-KGrBm9rxhjHty-qYK-Z8KlJDEmx03qeBS6E6M",
    "replicas": "projector.website:3",
    "topic_replication": "7",
    "log_level": "DEBUG",
}
"""Settings whose values are checked when read: a leaked value they take."""


def leaked_value(annotation: Any, default: object, name: str = "") -> str:
    """A value no default has: for a choice of words, a word that is not the default."""
    if name in LEAKED_BY_NAME:
        return LEAKED_BY_NAME[name]
    if get_origin(annotation) is Literal:
        return next(str(choice) for choice in get_args(annotation) if choice != default)
    return LEAKED[annotation]


def environment_name(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"BUTTERFLY_{name.upper()}"


def write_leaky_env_file(path: Path) -> None:
    """An env file that sets every setting to a value no default has."""
    lines = [
        f"{environment_name(name)}={leaked_value(field.annotation, field.default, name)}"
        for name, field in Settings.model_fields.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def assert_nothing_leaked(
    settings: Settings | Mapping[str, object], *, given: Collection[str] = ()
) -> None:
    """No value came from the leaky env file; those not `given` are the defaults."""
    values = settings.model_dump() if isinstance(settings, Settings) else settings
    assert set(values) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert str(values[name]) != leaked_value(field.annotation, field.default, name), name
        if name not in given:
            assert values[name] == field.default, name


def into_leaky_cwd(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`folder` as the working directory, with a `.env` setting everything, in an
    environment holding no setting (but `BUTTERFLY_ENV_FILE=""`, as the harness sets for the
    whole run)."""
    for name in list(os.environ):
        if name.startswith("BUTTERFLY_") or name in CONFIGURED_SERVICES:
            monkeypatch.delenv(name)
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    write_leaky_env_file(folder / ".env")
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def leaky_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return into_leaky_cwd(tmp_path, monkeypatch)


def test_the_env_file_would_leak_without_the_switch(
    leaky_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check below is not vacuous: by default `Settings()` does read `./.env`."""
    monkeypatch.delenv(ENV_FILE_VARIABLE)

    assert Settings().topic_prefix == LEAK_PREFIX
    assert Settings().partitions == 7777


def test_an_empty_butterfly_env_file_means_no_env_file(leaky_cwd: Path) -> None:
    assert os.environ[ENV_FILE_VARIABLE] == ""

    assert_nothing_leaked(Settings())


def test_butterfly_env_file_names_the_file_read(
    leaky_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (leaky_cwd / "other.env").write_text("BUTTERFLY_TOPIC_PREFIX=other.\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, "other.env")

    assert Settings().topic_prefix == "other."
    assert Settings(_env_file=None).topic_prefix == "butterfly."


def test_settings_built_for_tests_read_no_env_file_whatever_the_environment_says(
    leaky_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_FILE_VARIABLE, ".env")

    assert_nothing_leaked(settings_without_env_file())


async def test_a_process_a_test_starts_reads_no_env_file(leaky_cwd: Path) -> None:
    """What a role does at start (`get_settings()`), in a process started with this run's
    environment from a folder holding a `.env`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    role = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from infra.settings import get_settings; print(get_settings().model_dump_json())",
        cwd=leaky_cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await asyncio.wait_for(role.communicate(), DEADLINE_SECONDS)

    assert role.returncode == 0
    assert_nothing_leaked(json.loads(output))
