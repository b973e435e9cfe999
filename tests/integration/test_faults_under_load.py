"""The short form of `make faults` (tests/faults/run.py): a rush through HAProxy while a
replica of the busiest roles is SIGKILLed, MariaDB restarts, the broker pauses and the lodging
partner freezes; then every request answered, nothing lost, doubled or oversold, every room
settled with the partner agreeing, and every read model equal to a rebuild."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.perf.common import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_a_rush_through_faults_loses_doubles_and_oversells_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.run", "--short"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "every check passed" in report
