"""Training artefacts: a per-iteration metrics file and a learning-curve picture."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
from pathlib import Path
from typing import IO

from pgdeploy.errors import missing_dependency
from pgdeploy.train import IterationStats

FIELDS = [f.name for f in dataclasses.fields(IterationStats)]


class MetricsWriter:
    """A training callback appending one row per iteration to CSV or JSONL (by suffix)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._jsonl = self.path.suffix == ".jsonl"
        self._file: IO[str] = self.path.open("w", newline="")
        self._csv = None if self._jsonl else csv.DictWriter(self._file, fieldnames=FIELDS)
        if self._csv is not None:
            self._csv.writeheader()

    def __call__(self, stats: IterationStats) -> None:
        row = dataclasses.asdict(stats)
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def plot_learning_curve(
    history: list[IterationStats], path: str | Path, *, title: str, threshold: float | None
) -> Path:
    """Mean return (batch and rolling window) against env steps, saved as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise missing_dependency("matplotlib", "train", "the learning-curve picture") from exc
    steps = [s.env_steps for s in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, [s.batch_mean_return for s in history], alpha=0.4, label="batch mean return")
    ax.plot(steps, [s.window_mean_return for s in history], label="mean of last episodes")
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}")
    ax.set(xlabel="env steps", ylabel="episode return", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


class TensorBoardWriter:
    """A training callback logging every IterationStats field as a TensorBoard scalar.

    ``torch.utils.tensorboard`` needs the ``tensorboard`` package, imported only here.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            importlib.import_module("tensorboard")
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise missing_dependency("tensorboard", "tensorboard", "--tensorboard logging") from exc
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, stats: IterationStats) -> None:
        for name, value in dataclasses.asdict(stats).items():
            if name not in ("iteration", "env_steps"):
                self._writer.add_scalar(f"train/{name}", value, global_step=stats.env_steps)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
