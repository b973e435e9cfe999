"""A progress line for long operations (rebuilds), on stderr.

On a terminal it is one line redrawn in place; otherwise (a log file, CI) it prints a line
about every second, so the output stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Records done out of a total, the rate, and the time left. `stream=None` is silent."""

    def __init__(
        self,
        label: str = "",
        *,
        stream: TextIO | None = sys.stderr,
        interval: float | None = None,
    ) -> None:
        self._label = label
        self._stream = stream
        self._tty = stream is not None and stream.isatty()
        self._interval = interval if interval is not None else (0.1 if self._tty else 1.0)
        self._total = 0
        self._done = 0
        self._started = time.monotonic()
        self._shown = 0.0
        self._phase = ""

    def start(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()
        self._show(force=True)

    def advance(self, done: int) -> None:
        self._done += done
        self._show()

    def phase(self, name: str) -> None:
        """Name what is happening now that the counted part is done (e.g. writing)."""
        self._phase = name
        self._show(force=True)

    def finish(self, records: int, seconds: float) -> None:
        rate = records / seconds if seconds else 0.0
        self._write(f"{self._label}{records:,} records in {seconds:.1f} s, {rate:,.0f} records/s")
        if self._stream is not None and self._tty:
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._stream is None or (not force and now - self._shown < self._interval):
            return
        self._shown = now
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        total = max(self._total, self._done)
        share = self._done / total if total else 1.0
        left = (total - self._done) / rate if rate else 0.0
        width = 30
        filled = int(width * share)
        line = (
            f"{self._label}[{'#' * filled}{'.' * (width - filled)}] "
            f"{self._done:,}/{total:,} {share:6.1%}  {rate:,.0f} records/s  ETA {left:4.1f} s"
        )
        if self._phase:
            line += f"  {self._phase}"
        self._write(line)

    def _write(self, line: str) -> None:
        if self._stream is None:
            return
        if self._tty:
            self._stream.write(f"\r\x1b[2K{line}")
        else:
            self._stream.write(f"{line}\n")
        self._stream.flush()
