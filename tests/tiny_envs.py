"""Tiny gymnasium envs for tests and benchmarks, registered on import
(``--env tests.tiny_envs:Guess-v0``). They depend on gymnasium and numpy only.

Each is a one-step-memory guessing game of 8 steps, learnable in a few thousand steps,
with a different observation or action space:

- ``Guess``: 1-D Box obs, Discrete(2) actions (the observation's sign pays 1).
- ``Pick``: Discrete(5, start=1) obs, Discrete(5, start=1) actions (say the number).
- ``Grid``: Box (2, 3) obs, Discrete(3, start=-1) actions (the largest column of row 0).
- ``MultiGuess``: Box (2, 3) obs, MultiDiscrete([2, 3]) actions (sign of obs[0, 0], and
  the largest column of row 1; each head pays 0.5).
- ``DictGuess``: Dict(pos Box(2,), target Discrete(3), bits MultiBinary(2)) obs,
  Discrete(3) actions (say the target).
- ``TupleGuess``: Tuple(MultiDiscrete([3, 2]), Box (2, 2)) obs, MultiDiscrete([3, 2],
  start=[1, 0]) actions (repeat both numbers).
- ``Drift``: unbounded 6-D Box obs with values up to ~1e5, 3 actions, rewards <= 0.
- ``ManyActions``: Box (4,) obs, Discrete(12) actions.
- ``Long``: Guess with episodes of 1,500 steps and no time limit (budgets and carry-over).
- ``Reach``: a user's own env as issue 23 met it: a point on [-1, 1] moved left, kept or
  moved right until it is within 0.1 of a target (Box (2,) obs, Discrete(3) actions, 1 for
  reaching it, -0.01 a step, 50 steps at most); the defaults sweep trains it.

- ``WideGuess``: Guess with ``width`` observation columns, an env keyword (default 2).
- ``Mission``: Guess whose observation is Dict(pos Box(2,), mission Text): trainable only
  with a wrapper that drops the text (``pgdeploy.envs.wrappers:without_text``).

``without_mission`` is a MiniGrid wrapper (``--wrapper tests.tiny_envs:without_mission``)
for the benchmarks. The others have spaces pgdeploy refuses (continuous actions, image
observations).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

_STEPS = 8


class _Game(gym.Env[Any, Any]):
    """Shared episode logic: ``_observe`` draws a new observation, ``_reward`` scores."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._obs = self._observe()
        return self._obs, {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(np.asarray(action, dtype=np.int64)):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        reward = self._reward(action)
        self._t += 1
        self._obs = self._observe()
        return self._obs, reward, self._t >= _STEPS, False, {}

    def _observe(self) -> Any:
        raise NotImplementedError

    def _reward(self, action: Any) -> float:
        raise NotImplementedError


class Guess(_Game):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def _observe(self) -> np.ndarray:
        return self.np_random.uniform(-1, 1, size=2).astype(np.float32)

    def _reward(self, action: Any) -> float:
        return float(int(action) == int(self._obs[0] > 0))


class Varying(Guess):
    """Guess with episodes of 1-12 steps (drawn at reset), counting every ``step`` call
    made in this process (``Varying.steps_taken``)."""

    steps_taken = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        self._length = int(self.np_random.integers(1, 13))
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        type(self).steps_taken += 1
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, self._t >= self._length, truncated, info


class Long(Guess):
    """Guess with episodes of exactly ``LONG_STEPS`` steps and no time limit."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, self._t >= LONG_STEPS, truncated, info


LONG_STEPS = 1500


class Pick(_Game):
    observation_space = gym.spaces.Discrete(5, start=1)
    action_space = gym.spaces.Discrete(5, start=1)

    def _observe(self) -> int:
        return int(self.np_random.integers(1, 6))

    def _reward(self, action: Any) -> float:
        return float(int(action) == self._obs)


class Grid(_Game):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2, 3), dtype=np.float32)
    action_space = gym.spaces.Discrete(3, start=-1)

    def _observe(self) -> np.ndarray:
        return self.np_random.uniform(-1, 1, size=(2, 3)).astype(np.float32)

    def _reward(self, action: Any) -> float:
        return float(int(action) + 1 == int(np.argmax(self._obs[0])))


class MultiGuess(Grid):
    action_space = gym.spaces.MultiDiscrete([2, 3])  # type: ignore[assignment]

    def _reward(self, action: Any) -> float:
        a = np.asarray(action)
        sign = int(a[0]) == int(self._obs[0, 0] > 0)
        column = int(a[1]) == int(np.argmax(self._obs[1]))
        return 0.5 * sign + 0.5 * column


class DictGuess(_Game):
    observation_space = gym.spaces.Dict(
        {
            "pos": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "target": gym.spaces.Discrete(3),
            "bits": gym.spaces.MultiBinary(2),
        }
    )
    action_space = gym.spaces.Discrete(3)

    def _observe(self) -> dict[str, Any]:
        return {
            "pos": self.np_random.uniform(-1, 1, size=2).astype(np.float32),
            "target": int(self.np_random.integers(3)),
            "bits": self.np_random.integers(0, 2, size=2).astype(np.int8),
        }

    def _reward(self, action: Any) -> float:
        return float(int(action) == self._obs["target"])


class TupleGuess(_Game):
    observation_space = gym.spaces.Tuple(
        (
            gym.spaces.MultiDiscrete([3, 2]),
            gym.spaces.Box(-1.0, 1.0, shape=(2, 2), dtype=np.float32),
        )
    )
    action_space = gym.spaces.MultiDiscrete([3, 2], start=[1, 0])

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        numbers = np.array([self.np_random.integers(3), self.np_random.integers(2)], np.int64)
        return numbers, self.np_random.uniform(-1, 1, size=(2, 2)).astype(np.float32)

    def _reward(self, action: Any) -> float:
        a = np.asarray(action)
        numbers = self._obs[0]
        return 0.5 * float(a[0] - 1 == numbers[0]) + 0.5 * float(a[1] == numbers[1])


class Drift(_Game):
    """A user's env as issue 12 met it: unbounded observations with large values (scales
    1 to 5e4), 3 actions, rewards <= 0, no reward threshold."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
    action_space = gym.spaces.Discrete(3)
    scale = np.array([1.0, 10.0, 100.0, 1e3, 1e4, 5e4], np.float32)

    def _observe(self) -> np.ndarray:
        return (self.np_random.normal(size=6) * self.scale + self.scale).astype(np.float32)

    def _reward(self, action: Any) -> float:
        target = int(np.digitize(self._obs[0], [0.5, 1.5]))
        return -float(abs(int(action) - target))


class ManyActions(Guess):
    """12 actions: the one matching the first observation's twelfth of [-1, 1] pays 1."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
    action_space = gym.spaces.Discrete(12)

    def _observe(self) -> np.ndarray:
        return self.np_random.uniform(-1, 1, size=4).astype(np.float32)

    def _reward(self, action: Any) -> float:
        return float(int(action) == min(int((self._obs[0] + 1) * 6), 11))


class Reach(gym.Env[np.ndarray, int]):
    """Move a point along [-1, 1] until it is within 0.1 of the target."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos, self._target = (float(v) for v in self.np_random.uniform(-1, 1, size=2))
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(int(action)):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        self._pos = float(np.clip(self._pos + 0.1 * (int(action) - 1), -1.0, 1.0))
        reached = abs(self._pos - self._target) < 0.1
        return self._obs(), 1.0 if reached else -0.01, reached, False, {}

    def _obs(self) -> np.ndarray:
        return np.array([self._pos, self._target], dtype=np.float32)


def without_mission(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    """MiniGrid: keep the image and the direction, drop the text mission."""
    return gym.wrappers.FilterObservation(env, ["image", "direction"])


class WideGuess(Guess):
    """Guess with ``width`` observation columns; the first one's sign pays."""

    def __init__(self, width: int = 2) -> None:
        self.width = width
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(width,), dtype=np.float32)

    def _observe(self) -> np.ndarray:
        return self.np_random.uniform(-1, 1, size=self.width).astype(np.float32)


class Mission(Guess):
    """Guess with a text member beside the numbers, as MiniGrid's mission."""

    observation_space = gym.spaces.Dict(  # type: ignore[assignment]
        {
            "pos": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "mission": gym.spaces.Text(8),
        }
    )

    def _observe(self) -> dict[str, Any]:
        pos = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return {"pos": pos, "mission": "guess"}

    def _reward(self, action: Any) -> float:
        return float(int(action) == int(self._obs["pos"][0] > 0))


class Continuous(Guess):
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)  # type: ignore[assignment]


class Image(Guess):
    observation_space = gym.spaces.Box(0, 255, shape=(16, 16, 3), dtype=np.uint8)  # type: ignore[assignment]


gym.register("Guess-v0", entry_point=Guess, reward_threshold=7.0)
gym.register("Pick-v0", entry_point=Pick, reward_threshold=7.0)
gym.register("Grid-v0", entry_point=Grid, reward_threshold=7.0)
gym.register("MultiGuess-v0", entry_point=MultiGuess, reward_threshold=7.0)
gym.register("DictGuess-v0", entry_point=DictGuess, reward_threshold=7.0)
gym.register("TupleGuess-v0", entry_point=TupleGuess, reward_threshold=7.0)
gym.register("Drift-v0", entry_point=Drift)
gym.register("ManyActions-v0", entry_point=ManyActions, reward_threshold=7.0)
gym.register("GuessContinuous-v0", entry_point=Continuous)
gym.register("GuessImage-v0", entry_point=Image)
gym.register("Varying-v0", entry_point=Varying)
gym.register("Long-v0", entry_point=Long)
gym.register("Reach-v0", entry_point=Reach, max_episode_steps=50, reward_threshold=0.8)
# FrozenLake with slippery ice off (gymnasium's FrozenLake-v1 is slippery by default).
gym.register(
    "FrozenLakeNoSlip-v1",
    entry_point="gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv",
    kwargs={"map_name": "4x4", "is_slippery": False},
    max_episode_steps=100,
    reward_threshold=0.7,
)
gym.register("WideGuess-v0", entry_point=WideGuess, reward_threshold=7.0)
gym.register("Mission-v0", entry_point=Mission, reward_threshold=7.0)
