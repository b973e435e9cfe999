"""Run the roles of `make run` as child processes: restart what dies, stop all on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger()

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1


@dataclass
class Role:
    """One long-running process. `env` is added to the supervisor's own environment."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    nice: int = 0
    """Added to the process's niceness: roles that may lag a little yield the CPU to those
    a waiting client is waiting on."""


@dataclass
class Backoff:
    """Restart delays: `initial`, doubling up to `maximum`; back to `initial` once a run has
    lasted `reset_after` seconds."""

    initial: float = 0.5
    maximum: float = 10.0
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        self._next = self.initial

    def delay_after(self, uptime: float) -> float:
        """The delay before the next restart of a process that ran for `uptime` seconds."""
        if uptime >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay


SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Supervisor:
    """Keeps every role running until `stop()` or SIGINT/SIGTERM, then stops them all (once:
    a stopped supervisor does not run again).

    Children run in their own sessions, so a terminal's Ctrl-C reaches only the supervisor,
    which then sends SIGTERM to each child's process group and SIGKILL after `stop_timeout`.
    """

    def __init__(
        self,
        *,
        stop_timeout: float = 10.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 10.0,
        stable_after: float = 30.0,
        handle_signals: bool = True,
    ) -> None:
        self.stop_timeout = stop_timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.handle_signals = handle_signals
        self._stopping = asyncio.Event()
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    def stop(self) -> None:
        """Ask `run` to stop every role and return; safe to call more than once."""
        self._stopping.set()

    @property
    def pids(self) -> dict[str, int]:
        """Pid of each role's current process, for roles that are running."""
        return {
            name: process.pid
            for name, process in self._processes.items()
            if process.returncode is None
        }

    async def run(self, roles: Sequence[Role]) -> None:
        """Run `roles` until stopped; return once every child has exited."""
        names = [role.name for role in roles]
        if len(set(names)) != len(names):
            raise ValueError(f"role names must be unique: {names}")
        previous_handlers = self._install_signal_handlers() if self.handle_signals else {}
        tasks = [asyncio.create_task(self._keep_running(role), name=role.name) for role in roles]
        try:
            await self._stopping.wait()
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._restore_signal_handlers(previous_handlers)
            log.info("supervisor stopped", roles=names)

    def _install_signal_handlers(self) -> dict[signal.Signals, SignalHandler]:
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, SignalHandler] = {}
        for signum in STOP_SIGNALS:
            previous[signum] = signal.getsignal(signum)
            loop.add_signal_handler(signum, self._on_signal, signum)
        return previous

    def _restore_signal_handlers(self, previous: dict[signal.Signals, SignalHandler]) -> None:
        loop = asyncio.get_running_loop()
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            if handler is not None:
                signal.signal(signum, handler)

    def _on_signal(self, signum: signal.Signals) -> None:
        log.info("supervisor received signal", signal=signum.name)
        self.stop()

    async def _keep_running(self, role: Role) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.initial_backoff, self.max_backoff, self.stable_after)
        while not self._stopping.is_set():
            started_at = loop.time()
            returncode = await self._run_once(role)
            if self._stopping.is_set():
                return
            uptime = loop.time() - started_at
            delay = backoff.delay_after(uptime)
            log.warning(
                "role exited",
                role=role.name,
                returncode=returncode,
                uptime=round(uptime, 3),
                restart_in=delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if not self._stopping.is_set():
                log.info("role restarting", role=role.name)

    async def _run_once(self, role: Role) -> int | None:
        """Run one process of `role` until it exits or a stop is requested; None if it never
        started."""
        env = None if role.env is None else {**os.environ, **role.env}
        try:
            process = await asyncio.create_subprocess_exec(
                *role.argv,
                env=env,
                start_new_session=True,
                preexec_fn=functools.partial(_prepare_child, role.nice),
            )
        except OSError as error:
            log.error("role failed to start", role=role.name, argv=role.argv, error=str(error))
            return None
        self._processes[role.name] = process
        log.info("role started", role=role.name, pid=process.pid, argv=role.argv)
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if process.returncode is None:
                await self._terminate(role, process)
            return process.returncode
        finally:
            exited.cancel()
            stopping.cancel()
            if process.returncode is None:
                _signal_group(process, signal.SIGKILL)

    async def _terminate(self, role: Role, process: asyncio.subprocess.Process) -> None:
        _signal_group(process, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.stop_timeout):
                await process.wait()
        except TimeoutError:
            log.warning("role ignored SIGTERM, killing it", role=role.name, pid=process.pid)
            _signal_group(process, signal.SIGKILL)
            await process.wait()
        log.info("role stopped", role=role.name, pid=process.pid, returncode=process.returncode)


def _prepare_child(nice: int) -> None:
    die_with_parent()
    if nice:
        os.nice(nice)


def die_with_parent() -> None:
    """In a child before exec: have Linux send SIGTERM when the supervisor dies, even by
    SIGKILL, so no role outlives it holding ports and partitions."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    """Signal the child's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
