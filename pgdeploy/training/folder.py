"""A run's folder: its artefacts saved as one consistent set, and folders that never mix.

At every save (periodic, final, on Ctrl-C/SIGTERM) the folder gets ``config.json``, the
metrics file, ``learning_curve.png`` and ``model.pt``, all rendered from the checkpoint
being saved (which carries the run's whole metrics history). Each file is staged in full
under a temp name first and the four are then renamed back to back, ``model.pt`` last, so a
kill at any moment leaves either the previous set or the new one. A failure while
staging (disk full) leaves the previous set untouched and names the file that failed.

A folder holds one run, written by one process at a time: :meth:`RunFolder.claim` takes an
OS lock on ``.pgdeploy.lock`` in it (``flock``, released by the OS if the process dies), held
for the whole run, and a second process is refused before it looks at the folder. So two
``pgdeploy train`` into one empty folder cannot both find it empty. :func:`new_run_dir`
claims a fresh numbered folder under ``runs/`` for each run and points ``runs/latest`` at it
(a symlink, where the OS allows one).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from pgdeploy._io import atomic_write_set, check_writable, remove_stale_temps
from pgdeploy.errors import RunFolderError, WriteError
from pgdeploy.training.callbacks import IterationStats, metrics_text
from pgdeploy.training.checkpoint import Checkpoint
from pgdeploy.training.learning_curve import learning_curve_png

MetricsFormat = Literal["csv", "jsonl"]

#: What a run writes into its folder, in the order a save renames them (model.pt last).
ARTEFACTS = (
    "config.json",
    "metrics.csv",
    "metrics.jsonl",
    "learning_curve.png",
    "model.pt",
    "best.pt",
)
#: What ``pgdeploy export`` adds beside a run's checkpoint.
EXPORTS = ("model.onnx", "model.torchscript.pt")


class RunFolder:
    """Where one run's artefacts live; :meth:`save` writes them as one set."""

    def __init__(
        self,
        path: str | Path,
        *,
        metrics_format: MetricsFormat = "csv",
        learning_curve: bool = True,
    ) -> None:
        self.path = Path(path)
        self.metrics_format: MetricsFormat = metrics_format
        self.learning_curve = learning_curve
        self.saved_iterations: int | None = None
        self._lock: int | None = None

    def claim(self) -> bool:
        """Take the folder for this process (creating it); False if this object already
        holds it. A RunFolderError if another process does. Released by :meth:`release`."""
        if self._lock is not None:
            return False
        check_writable(self.path)
        self._lock = lock_folder(self.path)
        return True

    def release(self) -> None:
        if self._lock is not None:
            unlock_folder(self.path, self._lock)
            self._lock = None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "model.pt"

    def run_files(self) -> list[str]:
        """The names of run artefacts (and exports) already in the folder."""
        return [name for name in (*ARTEFACTS, *EXPORTS) if (self.path / name).exists()]

    def prepare(self, *, overwrite: bool = False, continuing: bool = False) -> None:
        """Check, before any work, that this run may write here; writes only a probe file.

        A folder holding another run is refused unless ``overwrite`` (its artefacts are then
        deleted) or ``continuing`` (the run being resumed is this folder's own). Claims the
        folder first (:meth:`claim`), so no other process can be writing a run into it.
        """
        claimed = self.claim()
        try:
            self._check_free(overwrite=overwrite, continuing=continuing)
        except BaseException:
            if claimed:
                self.release()
            raise

    def _check_free(self, *, overwrite: bool, continuing: bool) -> None:
        found = self.run_files()
        if found and not (overwrite or continuing):
            raise RunFolderError(
                f"{self.path} already holds a run ({', '.join(found)}); resume that run, "
                "overwrite it, or train into another folder"
            )
        check_writable(self.path, (*ARTEFACTS, *EXPORTS))
        remove_stale_temps(self.path, ARTEFACTS)
        if overwrite and not continuing:
            for name in found:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()

    def save(self, checkpoint: Checkpoint, history: Sequence[IterationStats]) -> Path:
        """Write checkpoint, config, metrics and curve as one set (see the module docstring)."""
        files = {self.path / "config.json": _config_json(checkpoint)}
        metrics = f"metrics.{self.metrics_format}"
        text = metrics_text(history, jsonl=self.metrics_format == "jsonl")
        files[self.path / metrics] = text.encode("utf-8")
        if self.learning_curve:
            config = checkpoint.config
            files[self.path / "learning_curve.png"] = learning_curve_png(
                history,
                title=f"REINFORCE on {config.env_id} (seed {config.seed})",
                threshold=checkpoint.training.get("reward_threshold"),
            )
        files[self.checkpoint_path] = _checkpoint_bytes(checkpoint)
        try:
            atomic_write_set(files)
        except WriteError as exc:
            raise WriteError(f"{exc}; {self._kept()}") from exc
        other = self.path / ("metrics.csv" if self.metrics_format == "jsonl" else "metrics.jsonl")
        with contextlib.suppress(FileNotFoundError):
            other.unlink()  # a resumed run that changed format keeps one metrics file
        self.saved_iterations = len(history)
        return self.checkpoint_path

    def _kept(self) -> str:
        if self.saved_iterations is not None:
            return f"{self.path} still holds the run as saved at iteration {self.saved_iterations}"
        if self.checkpoint_path.exists():
            return f"{self.path} still holds its previous checkpoint and artefacts, unchanged"
        return f"nothing was saved in {self.path}"


LOCK_NAME = ".pgdeploy.lock"


def lock_folder(folder: Path) -> int:
    """An exclusive, non-blocking ``flock`` on ``folder/.pgdeploy.lock``; its descriptor.

    The file is removed on release, so after taking the lock the path must still name the
    file locked (else another process removed it in between, and the lock is taken again).
    Where ``fcntl`` does not exist (Windows) the folder is not locked.
    """
    if sys.platform == "win32":  # pragma: no cover - no fcntl there
        return -1
    import fcntl

    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = "".join(c for c in os.read(fd, 16).decode("ascii", "replace") if c.isdigit())
            os.close(fd)
            raise RunFolderError(
                f"{folder} is being written by another training run (pid {holder or '?'}); "
                "wait for it to end, or train into another folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode("ascii"))
            return fd
        os.close(fd)


def unlock_folder(folder: Path, fd: int) -> None:
    """Remove the lock file, then drop the lock (in that order: see :func:`lock_folder`)."""
    if fd < 0:
        return
    with contextlib.suppress(FileNotFoundError):
        (folder / LOCK_NAME).unlink()
    os.close(fd)


def detect_metrics_format(folder: Path) -> MetricsFormat:
    """The format of a run's existing metrics file (CSV when it has none or both)."""
    has_jsonl = (folder / "metrics.jsonl").exists()
    return "jsonl" if has_jsonl and not (folder / "metrics.csv").exists() else "csv"


def new_run_dir(env_id: str, *, root: str | Path = "runs") -> Path:
    """Claim ``root/<env>-NNN``, the first free number (``mkdir`` is the claim, so two runs
    started at once never share a folder), and point ``root/latest`` at it."""
    root = Path(root)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", env_id).strip("._") or "run"
    check_writable(root)
    number = 1 + max((_number(p.name, slug) for p in root.glob(f"{slug}-*")), default=0)
    while True:
        folder = root / f"{slug}-{number:03d}"
        try:
            folder.mkdir()
            break
        except FileExistsError:
            number += 1
    _point_latest(root, folder)
    return folder


def _number(name: str, slug: str) -> int:
    tail = name[len(slug) + 1 :]
    return int(tail) if tail.isdigit() else 0


def _point_latest(root: Path, folder: Path) -> None:
    """``root/latest`` -> ``folder``, replaced atomically; skipped where symlinks are not
    allowed or ``latest`` is a real folder (from an older pgdeploy), which is left alone."""
    link = root / "latest"
    if link.exists() and not link.is_symlink():
        return
    temp = root / f".latest.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)
        temp.symlink_to(folder.name, target_is_directory=True)
        os.replace(temp, link)


def _config_json(checkpoint: Checkpoint) -> bytes:
    return (json.dumps(checkpoint.config.to_dict(), indent=2) + "\n").encode("utf-8")


def _checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint.to_dict(), buffer)
    return buffer.getvalue()
