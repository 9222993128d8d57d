"""Tiny gymnasium envs for tests, registered on import (``--env tests.tiny_envs:Guess-v0``).

``Guess``: the observation's sign says which of two actions pays 1; 8 steps per episode,
so a policy learns it in a few thousand steps. The others have spaces pgdeploy refuses.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class Guess(gym.Env[np.ndarray, int]):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = float(int(action) == int(self._obs[0] > 0))
        self._t += 1
        return self._observe(), reward, self._t >= 8, False, {}

    def _observe(self) -> np.ndarray:
        self._obs = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return self._obs


class Continuous(Guess):
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)  # type: ignore[assignment]


class DictObs(Guess):
    observation_space = gym.spaces.Dict(  # type: ignore[assignment]
        {"x": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)}
    )


gym.register("Guess-v0", entry_point=Guess, reward_threshold=7.0)
gym.register("GuessContinuous-v0", entry_point=Continuous)
gym.register("GuessDict-v0", entry_point=DictObs)
