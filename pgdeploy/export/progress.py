"""What ``pgdeploy export`` shows while it runs: one line per stage.

On a terminal the stage line is rewritten in place (with the seconds so far) and cleared
at the end, so the verification summary stays the only lasting output; in logs and pipes
each stage is one plain line without carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ExportProgress:
    """Call with a stage description as each stage starts; :meth:`close` when done."""

    def __init__(self, stream: TextIO | None = None, *, force_tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.is_tty = self.stream.isatty() if force_tty is None else force_tty
        self._start = time.perf_counter()
        self._shown = False

    def __call__(self, stage: str) -> None:
        elapsed = time.perf_counter() - self._start
        line = f"export [{elapsed:5.1f} s] {stage}"
        if self.is_tty:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.is_tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
