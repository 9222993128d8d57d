"""Budgets hold however long episodes are: an iteration takes at most ``iteration_steps``
steps from each env, the run stops within ``num_envs - 1`` steps of ``total_timesteps``,
and an episode cut by an iteration is carried over with its whole return."""

from __future__ import annotations

import numpy as np
import pytest

from pgdeploy.envs.making import policy_spec
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.rollout import RolloutCollector
from pgdeploy.training.train import train
from tests.tiny_envs import LONG_STEPS

LONG = "tests.tiny_envs:Long-v0"


@pytest.mark.parametrize("vectorization", ["sync", "subprocess"])
def test_an_episode_cut_by_iterations_is_carried_over_whole(vectorization: str) -> None:
    collector = RolloutCollector(
        policy_spec(LONG), num_envs=2, seed=0, hidden_sizes=(8,), obs_clip=10.0,
        iteration_steps=400, vectorization=vectorization,  # type: ignore[arg-type]
    )  # fmt: skip
    weights = SoftmaxPolicy(collector.policy.spec, hidden_sizes=(8,)).state_dict()
    rewards = 0.0
    try:
        for _ in range(3):  # 1200 of 1500 steps: nothing finished, nothing learnable
            batch = collector.collect(weights)
            assert batch is not None and batch.env_steps == 800 and len(batch.obs) == 400
            assert not batch.mask.any() and len(batch.lengths) == 0
            rewards += float(batch.rewards.sum())
        assert rewards == 0.0  # unmasked rewards are zeroed: they never reach a gradient
        batch = collector.collect(weights)  # the last 300 steps of each episode
        assert batch is not None and batch.env_steps == 600
        assert batch.lengths.tolist() == [LONG_STEPS, LONG_STEPS]
        assert batch.mask.sum() == 600 and batch.mask[:300].all()
        # the whole episode's return, though only its last part enters the gradient
        assert 0 < batch.episode_returns[0] <= LONG_STEPS
        assert batch.episode_returns[0] > batch.rewards[:, 0].sum()
        batch = collector.collect(weights)  # fresh episodes
        assert batch is not None and not batch.mask.any() and batch.env_steps == 800
    finally:
        collector.close()


@pytest.mark.parametrize("total", [1000, 2001, 3333])
def test_the_budget_is_never_overshot_by_more_than_num_envs_minus_one(total: int) -> None:
    config = TrainConfig(
        env_id=LONG, num_envs=4, hidden_sizes=(8,), total_timesteps=total,
        iteration_steps=200, vectorization="sync",
    )  # fmt: skip
    result = train(config)
    steps = [s.env_steps for s in result.history]
    assert total <= steps[-1] <= total + config.num_envs - 1
    assert max(np.diff([0, *steps])) <= config.num_envs * config.iteration_steps
