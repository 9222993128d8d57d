"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Every failure to write (disk full, permissions, a folder where a file should be) becomes a
one-line :class:`~pgdeploy.errors.WriteError` naming the file and saying that the file
under its final name was left as it was.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from pgdeploy.errors import PgdeployError, WriteError


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync, then rename.

    The temp file lives in the same folder so ``os.replace`` is an atomic rename on POSIX;
    the folder is fsynced too so the rename itself survives a power cut.
    """
    path = Path(path)
    staged = _stage(path, write)
    try:
        os.replace(staged, path)
    except OSError as exc:
        _unlink(staged)
        raise _write_error(path, exc) from exc
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, _writer(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_set(files: Mapping[Path, bytes]) -> list[Path]:
    """Write several files as one set: every file is staged (written and fsynced under a temp
    name) before the first rename, then all are renamed in the given order, back to back.

    A failure while staging (disk full, permissions) leaves every final name untouched.
    Only a kill within the renames themselves (microseconds, no I/O of data between them)
    can leave the set half-renamed; callers rename the file that defines the set last.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            staged.append((stage_bytes(path, data), path))
        commit_staged(staged)
    finally:
        for temp, _ in staged:
            _unlink(temp)
    return list(files)


def stage_bytes(path: Path, data: bytes) -> Path:
    """``data`` complete and fsynced under a temp name beside ``path``; see commit_staged."""
    return _stage(path, _writer(data))


def commit_staged(staged: Sequence[tuple[Path, Path]]) -> None:
    """Rename each staged temp file onto its final path, in order.

    If a rename fails, the files already renamed are put back as they were (their previous
    versions are kept as hard links until the end), so the set lands whole or not at all.
    """
    backups: list[tuple[Path, Path | None]] = []
    try:
        for temp, path in staged:
            backups.append((path, _backup(path)))
            try:
                os.replace(temp, path)
            except OSError as exc:
                _roll_back(backups)
                raise _write_error(path, exc) from exc
    finally:
        for _, backup in backups:
            if backup is not None:
                _unlink(backup)
    for folder in {path.parent for _, path in staged}:
        _fsync_dir(folder)


def _backup(path: Path) -> Path | None:
    """A hard link to the current ``path`` (None when there is none to keep)."""
    if not path.is_file():
        return None
    backup = path.with_name(f".{path.name}.{os.getpid()}.bak.tmp")
    _unlink(backup)
    try:
        os.link(path, backup)
    except OSError:
        return None
    return backup


def _roll_back(backups: list[tuple[Path, Path | None]]) -> None:
    for path, backup in backups[:-1]:
        with contextlib.suppress(OSError):
            if backup is None:
                os.unlink(path)
            else:
                os.replace(backup, path)


def check_writable(folder: str | os.PathLike[str], names: Iterable[str] = ()) -> Path:
    """Create ``folder`` if needed and prove a file can be created in it; each of ``names``
    must be free or a file (not a folder). Raises WriteError before any real work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pgdeploy-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise WriteError(
            f"cannot write into folder {folder}: {_reason(exc)}; choose another output folder"
        ) from exc
    for name in names:
        if (folder / name).is_dir():
            raise WriteError(
                f"{folder / name} is a folder, but a file of that name is written there; "
                "remove it or choose another output folder"
            )
    return folder


def remove_stale_temps(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete temp files that a killed writer left beside any of ``names`` (``.NAME.*.tmp``)."""
    removed = []
    for name in names:
        for temp in folder.glob(f".{name}.*.tmp"):
            _unlink(temp)
            removed.append(temp)
    return removed


def _stage(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """A complete, fsynced temp copy beside ``path``; nothing left behind if it fails."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        if tmp_name is not None:
            _unlink(Path(tmp_name))
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    return Path(tmp_name)


def _writer(data: bytes) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write


def _write_error(path: Path, exc: OSError, *, renamed: list[Path] | None = None) -> WriteError:
    if renamed:
        kept = f"{', '.join(p.name for p in renamed)} already replaced, the rest left as they were"
    else:
        kept = f"{path.name} was left as it was"
    return WriteError(f"cannot write {path}: {_reason(exc)}; {kept}")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_small_file(
    path: str | os.PathLike[str], *, limit: int, what: str, error: type[PgdeployError]
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a one-line ``error``.

    A FIFO, a device (``/dev/zero``), a socket or a folder is named as what it is; the file
    is opened non-blocking and checked again on its descriptor, so nothing can block or
    stream without end, whatever replaced the path between the two looks.
    """
    shown = ascii(str(path))
    try:
        kind = _file_kind(os.stat(path).st_mode)
        if kind != "regular file":
            raise error(f"{what} {shown} is {kind}, expected a regular file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            kind = _file_kind(os.fstat(handle.fileno()).st_mode)
            if kind != "regular file":
                raise error(f"{what} {shown} is {kind}, expected a regular file")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{what} {shown} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {shown}: {_reason(exc)}") from None
    if len(data) > limit:
        raise error(f"{what} {shown} is larger than {limit} bytes")
    return data


def decode_utf8(data: bytes, *, what: str, error: type[PgdeployError]) -> str:
    """``data`` as UTF-8 text, or an ``error`` naming the first invalid byte's offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} is not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}"
        ) from None


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"
