"""Installing a Debian package that `make run` or the tests need and this machine lacks
(HAProxy for several gateways, Chromium for the browser tests, wrk for the bench).

Parallel test workers and `make run` may each want a package at the same moment, and
apt-get refuses at once while another holds dpkg's lock. So Butterfly's own installs take
turns (a lock file every process here agrees on), and each apt-get waits for dpkg's lock
rather than failing when something else on the machine holds it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TURN_FILE = Path(tempfile.gettempdir()) / "butterfly-apt.lock"
"""The lock file Butterfly's installs take turns on."""
DPKG_LOCK_WAIT_SECONDS = 300
"""How long apt-get waits for dpkg's lock held by another program."""


@dataclass(frozen=True)
class Installed:
    command: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, chars: int = 400) -> str:
        """The end of apt-get's output on one line."""
        return " ".join(self.output.split())[-chars:] or "no output"


def apt_install(package: str, *, timeout: float = 600.0) -> Installed | None:
    """`apt-get install -y PACKAGE`, after `apt-get update` when the package lists do not
    know it yet; None where there is no apt-get. Blocks for up to `timeout` seconds in all,
    waiting for its turn included."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        return None
    deadline = time.monotonic() + timeout
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = f"DPkg::Lock::Timeout={DPKG_LOCK_WAIT_SECONDS}"

    def run(*args: str) -> Installed:
        argv = [apt_get, "-q", "-o", wait, *args]
        try:
            done = subprocess.run(  # noqa: S603 - apt-get with our own arguments only
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=env,
                timeout=max(deadline - time.monotonic(), 1.0),
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            return Installed(" ".join(args), -1, f"timed out after {expired.timeout:.0f} s")
        return Installed(" ".join(args), done.returncode, done.stdout + done.stderr)

    with _turn(deadline):
        installed = run("install", "-y", package)
        if not installed.ok:
            updated = run("update")
            if not updated.ok:
                return updated
            installed = run("install", "-y", package)
    return installed


@contextmanager
def _turn(deadline: float) -> Iterator[None]:
    """Holds TURN_FILE's lock for the block (past the deadline it goes on without: then
    apt-get's own wait for dpkg's lock is what keeps two installs apart)."""
    with open(TURN_FILE, "a") as turn:
        while True:
            try:
                fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        yield
