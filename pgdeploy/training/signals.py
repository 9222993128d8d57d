"""Ctrl-C and SIGTERM as a request to stop, with a final save.

Inside :func:`stop_on_signals` the first SIGINT or SIGTERM only records its name; the
collector sees it between vector steps, drops the partial iteration, and the loop saves
the run as of its last whole iteration and returns. The
handlers are removed at once, so a second signal acts as usual (a second Ctrl-C aborts;
the save in progress is atomic, so even that leaves the previous checkpoint intact).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable: the name of the signal that asked to stop (``"SIGINT"``), else None."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self) -> str | None:
        return self.signal_name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a :class:`StopRequest` (main thread only; other
    threads cannot install handlers and get a request that never fires)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handler(signum: int, frame: FrameType | None) -> None:
        request.signal_name = signal.Signals(signum).name
        restore()

    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield request
    finally:
        restore()
