"""Package installs take turns and update the package lists only when they must. apt-get is
replaced by a script that records its calls: the real one would change this machine."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from infra import packages

FAKE_APT_GET = """#!/bin/sh
# Records each call; "install" fails until an "update" has run; notes any overlap.
log="{log}"
if [ -e "{busy}" ]; then echo overlap >> "$log"; fi
touch "{busy}"
echo "$*" >> "$log"
for arg in "$@"; do last="$arg"; done
case "$*" in
  *" update"*) touch "{updated}"; status=0 ;;
  *" install "*)
    if [ -e "{updated}" ]; then status=0
    else echo "E: Unable to locate package $last" >&2; status=100; fi ;;
esac
i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done
rm -f "{busy}"
exit $status
"""


@pytest.fixture
def apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    log = tmp_path / "calls"
    script.write_text(
        FAKE_APT_GET.format(log=log, busy=tmp_path / "busy", updated=tmp_path / "updated")
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(packages, "TURN_FILE", tmp_path / "turn.lock")
    return log


def test_an_unknown_package_is_installed_after_updating_the_lists(apt_get: Path) -> None:
    installed = packages.apt_install("haproxy", timeout=60)

    assert installed is not None
    assert installed.ok, installed.output
    calls = apt_get.read_text().splitlines()
    assert [call.rsplit(" ", 1)[-1] for call in calls] == ["haproxy", "update", "haproxy"]
    wait = f"-o DPkg::Lock::Timeout={packages.DPKG_LOCK_WAIT_SECONDS}"
    assert all(wait in call for call in calls)


def test_installs_at_once_take_turns(apt_get: Path) -> None:
    results: list[packages.Installed | None] = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(packages.apt_install(p, timeout=60)))
        for p in ("haproxy", "chromium", "wrk", "haproxy")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r is not None and r.ok for r in results] == [True] * 4
    assert "overlap" not in apt_get.read_text()


def test_a_failure_says_what_apt_get_said(apt_get: Path, tmp_path: Path) -> None:
    (tmp_path / "bin" / "apt-get").write_text("#!/bin/sh\necho 'E: no network' >&2\nexit 100\n")

    installed = packages.apt_install("haproxy", timeout=60)

    assert installed is not None
    assert (installed.ok, installed.returncode, installed.command) == (False, 100, "update")
    assert installed.tail() == "E: no network"


def test_without_apt_get_there_is_nothing_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert packages.apt_install("haproxy", timeout=60) is None
