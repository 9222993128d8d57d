"""The trainer learns: in seconds on a tiny env, and solves CartPole-v1 with the defaults."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.launch import resolve_config
from pgdeploy.training.train import IterationStats, train

MATCH_ID = "pgdeploy-test/MatchSign-v0"


class MatchSignEnv(gym.Env[np.ndarray, int]):
    """Each step shows a cue in {-1, +1} (plus a noise input); reward 1 for the action
    matching the cue's sign. A random policy averages 4 per 8-step episode, a learned one 8.
    """

    observation_space = gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        self.cue = int(self.np_random.integers(2))
        noise = float(self.np_random.uniform(-1.0, 1.0))
        return np.array([2 * self.cue - 1, noise], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = float(int(action) == self.cue)
        return self._obs(), reward, False, False, {}


if MATCH_ID not in gym.registry:
    gym.register(MATCH_ID, entry_point=MatchSignEnv, max_episode_steps=8, reward_threshold=7.5)


def test_trainer_learns_a_tiny_env_in_seconds(tmp_path: Path) -> None:
    seen: list[IterationStats] = []
    config = TrainConfig(env_id=MATCH_ID, seed=0, num_envs=8, total_timesteps=20_000)
    result = train(config, out_dir=tmp_path, callbacks=(seen.append,))
    summary = result.summary
    assert seen[0].batch_mean_return < 6.5, "the task must not be solved before learning"
    assert summary["solved"], summary
    assert summary["final_window_mean_return"] >= 7.5
    assert summary["steps_to_solve"] == seen[-1].env_steps < 20_000
    assert len(seen) == summary["iterations"]
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert checkpoint.training["solved"] is True


def test_budget_spent_without_solving_says_so() -> None:
    config = TrainConfig(env_id=MATCH_ID, seed=0, num_envs=4, total_timesteps=64)
    summary = train(config).summary
    assert not summary["solved"] and summary["steps_to_solve"] is None
    assert summary["stop_reason"] == (
        "budget of 64 env steps spent without reaching the reward threshold 7.5 (fewer than "
        "100 episodes finished)"
    )
    assert summary["env_steps"] == 64


def test_same_seed_same_run() -> None:
    config = TrainConfig(env_id=MATCH_ID, seed=1, num_envs=4, total_timesteps=400)
    a, b = train(config), train(config)
    assert [s.batch_mean_return for s in a.history] == [s.batch_mean_return for s in b.history]
    for key, value in a.checkpoint.state_dict.items():
        assert bool((value == b.checkpoint.state_dict[key]).all()), key


@pytest.mark.slow
def test_default_config_solves_cartpole(tmp_path: Path) -> None:
    summary = train(TrainConfig(seed=0), out_dir=tmp_path).summary
    assert summary["solved"], summary
    assert summary["steps_to_solve"] <= TrainConfig().total_timesteps
    assert summary["final_window_mean_return"] >= 475.0


@pytest.mark.slow
def test_cartpole_keeps_its_speed_with_its_preset(tmp_path: Path) -> None:
    """What ``pgdeploy train`` runs (the preset: the old defaults) solves within 100k steps,
    the goal of benchmarks/RESULTS.md's training-speed table."""
    resolved = resolve_config({"seed": 0})
    assert resolved.preset and resolved.config.env_id == "CartPole-v1"
    summary = train(resolved.config, out_dir=tmp_path).summary
    assert summary["solved"] and summary["steps_to_solve"] <= 100_000, summary


def test_best_weights_come_only_from_finite_windows_this_process_measured() -> None:
    from collections import deque

    from pgdeploy.envs.making import policy_spec
    from pgdeploy.training.policy import SoftmaxPolicy
    from pgdeploy.training.record import TrainingRecord
    from pgdeploy.training.train import BestPolicy

    policy = SoftmaxPolicy(policy_spec("CartPole-v1"), hidden_sizes=(4,))
    # A resumed run: its window of 3 came from the file, so it is nobody's best here.
    record = TrainingRecord(window=deque([1e9, 1e9, 1e9], maxlen=3), episodes=3, first_episodes=3)
    best = BestPolicy()
    best.offer(record, policy)
    assert best.state is None and best.summary()["best_window_mean_return"] is None
    record.window.extend([5.0, 5.0])
    record.episodes += 2
    best.offer(record, policy)  # one file value still in the window
    assert best.state is None
    record.window.append(5.0)
    record.episodes += 1
    best.offer(record, policy)
    assert best.state is not None and best.mean_return == 5.0
    record.window.extend([math.inf] * 3)
    record.episodes += 3
    best.offer(record, policy)  # an infinite mean never becomes the best
    assert best.mean_return == 5.0
    with torch.no_grad():
        next(iter(policy.parameters())).fill_(math.nan)
    record.window.extend([7.0] * 3)
    best.offer(record, policy)  # nor do non-finite weights
    assert best.mean_return == 5.0
