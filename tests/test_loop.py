"""The runtime control loop with a gymnasium-free env."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pgdeploy.errors import InvalidArgumentError
from pgdeploy.runtime import play


class CountdownEnv:
    """Terminates after `length` steps; reward = action, so returns show what was chosen."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.t = 0
        self.seeds: list[int | None] = []

    def reset(self, *, seed: int | None = None) -> tuple[Any, dict[str, Any]]:
        self.seeds.append(seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.full(2, self.t, np.float32), float(action), self.t >= self.length, False, {}


class AlwaysOne:
    def act(self, obs: Any) -> int:
        return 1


def test_play_counts_returns_lengths_and_seeds_first_reset_only() -> None:
    env = CountdownEnv(length=5)
    seen: list[tuple[float, int, float]] = []
    report = play(
        AlwaysOne(), env, episodes=3, seed=9, on_step=lambda o, a, r: seen.append((o[0], a, r))
    )
    assert [e.total_reward for e in report.episodes] == [5.0, 5.0, 5.0]
    assert all(e.terminated and not e.truncated for e in report.episodes)
    assert env.seeds == [9, None, None]
    assert len(report.act_ns) == len(report.step_ns) == len(seen) == 15
    assert report.mean_return == 5.0
    assert 0.0 <= report.overhead_fraction() < 1.0


def test_max_steps_truncates() -> None:
    report = play(AlwaysOne(), CountdownEnv(length=100), episodes=1, max_steps=7)
    assert report.episodes[0].length == 7
    assert report.episodes[0].truncated


def test_zero_episodes_is_an_error() -> None:
    with pytest.raises(InvalidArgumentError, match=r"episodes must be an integer >= 1, got 0"):
        play(AlwaysOne(), CountdownEnv(length=1), episodes=0)
