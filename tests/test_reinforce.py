"""Returns and baseline against a naive loop and hand values; the learner's update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgdeploy.envs.making import policy_spec
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.reinforce import ReinforceLearner, discounted_returns, timestep_baseline
from pgdeploy.training.rollout import EpisodeBatch


def naive_returns(rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """One episode (column) at a time, the textbook backward loop."""
    out = np.zeros_like(rewards, dtype=np.float64)
    for n in range(rewards.shape[1]):
        length = int(mask[:, n].sum())
        running = 0.0
        for t in reversed(range(length)):
            running = rewards[t, n] + gamma * running
            out[t, n] = running
    return out


def random_batch(rng: np.random.Generator, steps: int = 30, envs: int = 5):
    lengths = rng.integers(1, steps + 1, size=envs)
    lengths[0] = steps
    mask = np.arange(steps)[:, None] < lengths[None, :]
    rewards = np.where(mask, rng.normal(size=(steps, envs)), 0.0).astype(np.float32)
    return rewards, mask, lengths


def test_discounted_returns_hand_values() -> None:
    rewards = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 0.0]], dtype=np.float32)
    mask = np.array([[True, True], [True, True], [True, False]])
    returns = discounted_returns(rewards, mask, gamma=0.5)
    # column 0: 1 + .5*(1 + .5*1) = 1.75, 1 + .5 = 1.5, 1; column 1: 1 + .5*2 = 2, 2, (off) 0
    np.testing.assert_allclose(returns, [[1.75, 2.0], [1.5, 2.0], [1.0, 0.0]])


@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_discounted_returns_match_naive_loop(gamma: float) -> None:
    rewards, mask, _ = random_batch(np.random.default_rng(0))
    expected = naive_returns(rewards, mask, gamma)
    np.testing.assert_allclose(
        discounted_returns(rewards, mask, gamma), expected, rtol=1e-5, atol=1e-5
    )


def test_discounted_returns_ignore_rewards_off_the_mask() -> None:
    rewards, mask, _ = random_batch(np.random.default_rng(1))
    noisy = np.where(mask, rewards, 99.0).astype(np.float32)
    np.testing.assert_array_equal(
        discounted_returns(noisy, mask, 0.99), discounted_returns(rewards, mask, 0.99)
    )


def test_timestep_baseline_hand_values() -> None:
    returns = np.array([[3.0, 1.0, 2.0], [2.0, 5.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    mask = np.array([[True, True, True], [True, True, False], [True, False, False]])
    # step 0: mean(3, 1, 2) = 2; step 1: mean(2, 5) = 3.5 (third episode over); step 2: 1
    np.testing.assert_allclose(timestep_baseline(returns, mask), [[2.0], [3.5], [1.0]])


def test_timestep_baseline_matches_naive_loop() -> None:
    rng = np.random.default_rng(2)
    rewards, mask, _ = random_batch(rng)
    returns = discounted_returns(rewards, mask, 0.99)
    expected = [
        np.mean([returns[t, n] for n in range(mask.shape[1]) if mask[t, n]])
        for t in range(len(mask))
    ]
    np.testing.assert_allclose(timestep_baseline(returns, mask)[:, 0], expected, rtol=1e-5)


def make_batch(rng: np.random.Generator) -> EpisodeBatch:
    rewards, mask, lengths = random_batch(rng, steps=20, envs=4)
    obs = rng.normal(size=(*mask.shape, 4)).astype(np.float32)
    actions = rng.integers(0, 2, size=mask.shape)
    return EpisodeBatch(
        obs=obs,
        actions=actions,
        rewards=rewards,
        mask=mask,
        lengths=lengths.astype(np.int64),
        episode_returns=rewards.sum(axis=0, dtype=np.float64),
    )


def test_advantages_are_standardised_over_valid_steps() -> None:
    batch = make_batch(np.random.default_rng(3))
    learner = ReinforceLearner(SoftmaxPolicy(policy_spec("CartPole-v1")), TrainConfig())
    adv = learner.advantages(batch)
    assert adv.shape == (int(batch.mask.sum()),)
    assert abs(float(adv.mean())) < 1e-5
    assert float(adv.std()) == pytest.approx(1.0, rel=1e-4)


def test_update_raises_log_prob_of_positive_advantage_actions() -> None:
    """One step on the REINFORCE loss moves probability towards actions with A_t > 0."""
    torch.manual_seed(0)
    batch = make_batch(np.random.default_rng(4))
    policy = SoftmaxPolicy(policy_spec("CartPole-v1"))
    config = TrainConfig(learning_rate=1e-3, normalize_obs=False)
    learner = ReinforceLearner(policy, config)
    obs = torch.from_numpy(batch.obs[batch.mask])
    actions = torch.from_numpy(batch.actions[batch.mask])
    adv = torch.from_numpy(learner.advantages(batch))

    def objective() -> float:
        with torch.no_grad():
            log_probs = torch.log_softmax(policy(obs), dim=-1)
            return float((log_probs.gather(1, actions[:, None])[:, 0] * adv).mean())

    before = objective()
    stats = learner.update(batch)
    assert objective() > before
    assert np.isfinite(stats.loss) and stats.grad_norm > 0
