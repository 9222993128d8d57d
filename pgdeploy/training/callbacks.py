"""Training callbacks: per-iteration stats, the metrics file's text, progress and TensorBoard.

A callback is any callable taking :class:`IterationStats`; ``close()`` is called at the end.
The metrics file itself is written by :class:`~pgdeploy.training.folder.RunFolder` at
every checkpoint, from the run's whole history, so it always matches the checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pgdeploy._optional import require


@dataclass(frozen=True)
class IterationStats:
    """What one iteration did; passed to callbacks and written to the metrics file.

    Counters count the whole run, resumed parts included. ``wall_seconds`` is the run's
    training time so far (all parts); ``steps_per_second`` is this process's env steps over
    this process's time, so a resumed run reports its own speed.
    """

    iteration: int
    env_steps: int
    episodes: int
    batch_mean_return: float
    window_mean_return: float
    batch_mean_length: float
    loss: float
    entropy: float
    grad_norm: float
    wall_seconds: float
    steps_per_second: float


Callback = Callable[[IterationStats], None]

FIELDS = [f.name for f in dataclasses.fields(IterationStats)]


def metrics_text(history: Sequence[IterationStats], *, jsonl: bool) -> str:
    """The whole metrics file for ``history``: CSV with a header, or one JSON object a line.

    Floats are written with ``repr``, so reading the file back gives the same numbers.
    """
    buffer = io.StringIO(newline="")
    if jsonl:
        for stats in history:
            buffer.write(json.dumps(dataclasses.asdict(stats)) + "\n")
        return buffer.getvalue()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for stats in history:
        writer.writerow(dataclasses.asdict(stats))
    return buffer.getvalue()


class TensorBoardWriter:
    """A training callback logging every IterationStats field as a TensorBoard scalar.

    ``torch.utils.tensorboard`` needs the ``tensorboard`` package, imported only here.
    """

    def __init__(self, log_dir: str | Path) -> None:
        require("tensorboard", extra="tensorboard", feature="TensorBoard logging")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, stats: IterationStats) -> None:
        for name, value in dataclasses.asdict(stats).items():
            if name not in ("iteration", "env_steps"):
                self._writer.add_scalar(f"train/{name}", value, global_step=stats.env_steps)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ProgressReporter:
    """A training callback. On a TTY: a tqdm bar over env steps with live figures.

    Elsewhere (CI logs, files, pipes): one plain line at most every ``log_interval``
    seconds, so logs stay readable and free of carriage returns.
    """

    def __init__(
        self,
        total_timesteps: int,
        *,
        stream: TextIO | None = None,
        force_tty: bool | None = None,
        log_interval: float = 1.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        is_tty = self.stream.isatty() if force_tty is None else force_tty
        self.log_interval = log_interval
        self._last_line = float("-inf")
        self._bar = None
        if is_tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_timesteps,
                unit="step",
                unit_scale=True,
                file=self.stream,
                dynamic_ncols=True,
                desc="training",
            )

    def __call__(self, stats: IterationStats) -> None:
        figures = (
            f"episodes={stats.episodes} return={stats.window_mean_return:.1f} "
            f"steps/s={stats.steps_per_second:,.0f}"
        )
        if self._bar is not None:
            self._bar.update(stats.env_steps - self._bar.n)
            self._bar.set_postfix_str(figures, refresh=True)
            return
        now = time.monotonic()
        if now - self._last_line >= self.log_interval:
            self._last_line = now
            print(f"iter {stats.iteration} steps={stats.env_steps} {figures}", file=self.stream)
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
