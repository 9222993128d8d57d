"""Training progress: a live bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pgdeploy.train import IterationStats


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
