from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from infra.supervisor import Backoff, Role, Supervisor

DEADLINE_SECONDS = 10.0
ROOT = Path(__file__).resolve().parents[2]


async def eventually(condition: Callable[[], bool], deadline: float = DEADLINE_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + deadline
    while not condition():
        if loop.time() > give_up_at:
            pytest.fail(f"condition not met within {deadline}s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def supervising(
    supervisor: Supervisor, roles: Sequence[Role]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `supervisor` in the background; stop it when the block ends, even on a failure,
    so that no child outlives the test."""
    task = asyncio.create_task(supervisor.run(roles))
    try:
        yield task
    finally:
        supervisor.stop()
        await asyncio.wait_for(task, DEADLINE_SECONDS)


async def stop(supervisor: Supervisor, task: asyncio.Task[None]) -> None:
    supervisor.stop()
    await asyncio.wait_for(task, DEADLINE_SECONDS)


def python_role(name: str, code: str, *args: str, env: dict[str, str] | None = None) -> Role:
    return Role(name=name, argv=[sys.executable, "-c", code, *args], env=env)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_pid(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text.strip() else None


WRITE_PID_THEN_SLEEP = """
import os, pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text(os.environ.get("PROBE", "") + "\\n")
pathlib.Path(sys.argv[2]).write_text(str(os.getpid()))
time.sleep(600)
"""

IGNORE_SIGTERM_THEN_SLEEP = """
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(600)
"""


def test_backoff_doubles_up_to_the_maximum_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=0.5, maximum=10.0, reset_after=30.0)

    delays = [backoff.delay_after(uptime=1.0) for _ in range(7)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay_after(uptime=30.0) == 0.5
    assert backoff.delay_after(uptime=0.1) == 1.0


async def test_a_role_that_exits_is_restarted(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    crasher = python_role(
        "crasher", "import sys; open(sys.argv[1], 'a').write('x'); sys.exit(3)", str(starts)
    )
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.05, handle_signals=False)
    async with supervising(supervisor, [crasher]) as running:
        await eventually(lambda: starts.exists() and len(starts.read_text()) >= 3)
        await stop(supervisor, running)


async def test_stop_terminates_every_child(tmp_path: Path) -> None:
    roles = [
        python_role(
            name,
            WRITE_PID_THEN_SLEEP,
            str(tmp_path / f"{name}.env"),
            str(tmp_path / f"{name}.pid"),
            env={"PROBE": name},
        )
        for name in ("gateway", "decider")
    ]
    supervisor = Supervisor(handle_signals=False)
    async with supervising(supervisor, roles) as running:
        await eventually(lambda: all(read_pid(tmp_path / f"{r.name}.pid") for r in roles))
        pids = {r.name: read_pid(tmp_path / f"{r.name}.pid") for r in roles}
        assert supervisor.pids == pids
        await stop(supervisor, running)

    assert all(pid is not None and not is_alive(pid) for pid in pids.values())
    assert (tmp_path / "gateway.env").read_text() == "gateway\n"


async def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "stubborn.pid"
    stubborn = python_role("stubborn", IGNORE_SIGTERM_THEN_SLEEP, str(pid_file))
    supervisor = Supervisor(stop_timeout=0.3, handle_signals=False)
    async with supervising(supervisor, [stubborn]) as running:
        await eventually(lambda: read_pid(pid_file) is not None)
        pid = read_pid(pid_file)
        assert pid is not None

        await stop(supervisor, running)

    assert not is_alive(pid)


SUPERVISOR_OF_ONE_WORKER = """
import asyncio, signal, sys
from infra.supervisor import Role, Supervisor

def handler_before(signum, frame):
    sys.exit("the handler in place before the supervisor ran was called")

async def main():
    signal.signal(signal.SIGTERM, handler_before)
    worker = Role("worker", [sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    await Supervisor().run([worker])
    restored = signal.getsignal(signal.SIGTERM) is handler_before
    print("handler restored" if restored else "handler not restored")

asyncio.run(main())
"""


async def test_sigterm_stops_the_supervisor_and_restores_the_previous_handler(
    tmp_path: Path,
) -> None:
    """In a process of its own, so that no signal is sent to the test run itself."""
    pid_file = tmp_path / "worker.pid"
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUPERVISOR_OF_ONE_WORKER,
        WRITE_PID_THEN_SLEEP,
        str(tmp_path / "worker.env"),
        str(pid_file),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    pid = None
    try:
        await eventually(
            lambda: read_pid(pid_file) is not None or supervisor.returncode is not None
        )
        pid = read_pid(pid_file)
        assert pid is not None, "the supervisor exited before its worker started"

        supervisor.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(supervisor.communicate(), DEADLINE_SECONDS)

        assert supervisor.returncode == 0, stderr.decode()
        assert stdout.decode().splitlines()[-1:] == ["handler restored"]
        assert not is_alive(pid)
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
        if pid is not None and is_alive(pid):
            os.kill(pid, signal.SIGKILL)
