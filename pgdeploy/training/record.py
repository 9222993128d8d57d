"""What a training run has done so far: counters, metrics history, the solved window.

Counters count the whole run, resumed parts included; ``new_*`` and
:attr:`TrainingRecord.seconds` count this process, so steps/s stays honest for a resumed run.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from pgdeploy.training.callbacks import IterationStats
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.reinforce import UpdateStats
from pgdeploy.training.resume import ResumeState
from pgdeploy.training.rollout import EpisodeBatch


@dataclass
class TrainingRecord:
    """The run's counters, history and solved window; continued from a checkpoint on resume."""

    window: deque[float]
    history: list[IterationStats] = field(default_factory=list)
    env_steps: int = 0
    episodes: int = 0
    steps_to_solve: int | None = None
    earlier_seconds: float = 0.0
    """Training time of the parts this run was resumed from."""
    first_iteration: int = 0
    first_env_steps: int = 0
    first_episodes: int = 0
    new_iterations: int = 0
    """Iterations run by this call."""
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls, config: TrainConfig, resumed: ResumeState | None) -> TrainingRecord:
        window: deque[float] = deque(maxlen=config.solve_window)
        if resumed is None:
            return cls(window=window)
        window.extend(resumed.window)
        return cls(
            window=window,
            history=list(resumed.history),
            env_steps=resumed.env_steps,
            episodes=resumed.episodes,
            steps_to_solve=resumed.steps_to_solve,
            earlier_seconds=resumed.wall_seconds,
            first_iteration=resumed.iterations,
            first_env_steps=resumed.env_steps,
            first_episodes=resumed.episodes,
        )

    @property
    def iterations(self) -> int:
        return self.first_iteration + self.new_iterations

    @property
    def new_steps(self) -> int:
        """Env steps of this call."""
        return self.env_steps - self.first_env_steps

    @property
    def new_episodes(self) -> int:
        """Episodes finished in this call."""
        return self.episodes - self.first_episodes

    @property
    def seconds(self) -> float:
        """This call's training time."""
        return time.perf_counter() - self.started

    def add(self, batch: EpisodeBatch, update: UpdateStats) -> IterationStats:
        """Count one iteration; its stats (means are NaN where no episode finished)."""
        self.env_steps += batch.env_steps
        self.episodes += len(batch.lengths)
        # Episodes enter the window in the order they finished (env order within a step).
        finish = batch.lengths if batch.finish_steps is None else batch.finish_steps
        order = np.argsort(finish, kind="stable")
        self.window.extend(batch.episode_returns[order].tolist())
        seconds = self.seconds
        stats = IterationStats(
            iteration=self.iterations + 1,
            env_steps=self.env_steps,
            episodes=self.episodes,
            batch_mean_return=_mean(batch.episode_returns),
            window_mean_return=_mean(self.window),
            batch_mean_length=_mean(batch.lengths),
            loss=update.loss,
            entropy=update.entropy,
            grad_norm=update.grad_norm,
            wall_seconds=self.earlier_seconds + seconds,
            steps_per_second=self.new_steps / seconds if seconds > 0 else 0.0,
        )
        self.history.append(stats)
        self.new_iterations += 1
        return stats

    @property
    def window_full(self) -> bool:
        return len(self.window) == self.window.maxlen

    def solved(self, threshold: float | None) -> bool:
        """The window is full and its finite mean reaches the threshold (recording when it
        first did)."""
        mean = _mean(self.window)
        if threshold is None or not self.window_full or not math.isfinite(mean):
            return False
        if mean >= threshold and self.steps_to_solve is None:
            self.steps_to_solve = self.env_steps
        return mean >= threshold


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan
