"""The cost of being a process: importing torch, and exiting after it (stdlib only).

A ``pgdeploy`` command that trains for half a second pays about as much again to import
torch and to tear the interpreter down afterwards. Two things cut that without changing
what the command does:

- :func:`gc_paused`: heavy optional modules are imported with the cyclic garbage
  collector off. Importing torch creates hundreds of thousands of objects, and each
  collection it triggers walks all of them again (0.06-0.08 s of a 0.8 s import here);
  nothing an import builds is garbage, so those collections find nothing.
- :func:`exit_now`: the pgdeploy command ends with ``os._exit`` once its work is done,
  its files closed, its atexit handlers run and its output flushed, instead of letting the
  interpreter free every module and object one by one (another 0.08 s after torch).

Both are for the command's own process (:func:`claim_process`); inside someone else's
program :func:`gc_paused` only pauses and restores, and nothing exits early.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

_command_process = False


def claim_process() -> None:
    """Say that this process is the ``pgdeploy`` command and nothing else (the console
    script calls it): what :func:`gc_paused` imports is then frozen for good."""
    global _command_process
    _command_process = True


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block (an import) with the cyclic garbage collector off, then restore it.

    In the command's process what the block created is also frozen (``gc.freeze``): a
    module lives until exit, so later collections need not walk torch's objects either.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _command_process:
            gc.freeze()
        if was_enabled:
            gc.enable()


def exit_now(code: str | int | None = 0) -> NoReturn:
    """End the process as ``sys.exit(code)`` would, without the interpreter's teardown.

    What a normal exit does that matters is done here: atexit handlers run (Ray's shutdown,
    logging's flush), stdout and stderr are flushed, and a string code is printed to stderr
    with status 1. Files are the caller's to close: pgdeploy writes every artefact with an
    atomic, fsynced write before a command returns. While another non-daemon thread runs,
    this is a plain ``sys.exit``, so the interpreter waits for it as it always would.
    """
    if any(t.is_alive() and not t.daemon for t in _other_threads()):
        sys.exit(code)
    status = _exit_status(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed or gone
            stream.flush()
    os._exit(status)


def _other_threads() -> list[threading.Thread]:
    main = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main]


def _exit_status(code: str | int | None) -> int:
    """The status ``sys.exit(code)`` gives: None is 0, an int itself, anything else 1
    (and printed to stderr, as the interpreter prints it)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(code, file=sys.stderr)
    return 1
