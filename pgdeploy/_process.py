"""The cost of being a process: importing torch, and exiting after it (stdlib only).

A ``pgdeploy`` command that trains for half a second pays about as much again to import
torch and to tear the interpreter down afterwards. Two things cut that without changing
what the command does:

- :func:`gc_paused`: heavy optional modules are imported with the cyclic garbage
  collector off. Importing torch creates hundreds of thousands of objects, and each
  collection it triggers walks all of them again; nothing an import builds is garbage,
  so those collections find nothing.
- :func:`exit_now`: the pgdeploy command ends with ``os._exit`` once its work is done,
  its files closed, its atexit handlers run and its output flushed, instead of letting the
  interpreter free every module and object one by one.

Both are for the command's own process (:func:`claim_process`); inside someone else's
program :func:`gc_paused` only pauses and restores, and nothing exits early.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import re
import sys
import tempfile
import threading
import traceback
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


def one_line(message: object) -> str:
    """``message`` as one line a terminal shows as text: whitespace runs become one space,
    and every other non-printable character (escape sequences, bidi overrides) is shown as
    its ``\\x..`` escape. Temp names of atomic writes (``.model.pt.k3j2.tmp``) are shown
    as the file the user asked for."""
    text = " ".join(str(message).split())
    return escape_text(_TEMP_NAME.sub(r"\1\2", text))


def escape_text(text: str) -> str:
    """``text`` with every non-printable character (newlines, escape sequences, bidi
    overrides) written as its ``\\x..``/``\\n`` escape, so it is shown, never obeyed."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


#: ``dir/.NAME.RANDOM.tmp`` as :mod:`pgdeploy._io` stages a write of ``dir/NAME``.
_TEMP_NAME = re.compile(r"(^|[/\\' \"])\.([^/\\'\" ]+?)\.[A-Za-z0-9_]{6,12}\.tmp\b")


def save_traceback(exc: BaseException) -> str:
    """Write ``exc``'s full traceback to a new file under the system temp folder; return its
    path (or why it could not be written), for the one line an internal error prints."""
    text = "".join(traceback.format_exception(exc))
    try:
        fd, path = tempfile.mkstemp(prefix="pgdeploy-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(f"pgdeploy {' '.join(map(ascii, sys.argv[1:]))}\n{text}")
    except OSError as write_error:
        return f"nowhere (it could not be written: {write_error.strerror or write_error})"
    return path
