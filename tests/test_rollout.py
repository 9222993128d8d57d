"""The collector: a well-formed batch of finished episodes, acting by the sampling contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgdeploy.envs.making import policy_spec
from pgdeploy.training.policy import SoftmaxPolicy, sample_actions
from pgdeploy.training.rollout import ActingNet, EpisodeBatch, NumpyActingNet, RolloutCollector


@pytest.fixture(scope="module")
def policy() -> SoftmaxPolicy:
    torch.manual_seed(0)
    policy = SoftmaxPolicy(policy_spec("CartPole-v1"))
    rng = np.random.default_rng(0)
    policy.update_obs_stats(rng.normal(0.3, 2.0, size=(256, 4)).astype(np.float32))
    return policy


def collect(policy: SoftmaxPolicy, seed: int, num_envs: int = 6) -> EpisodeBatch:
    collector = RolloutCollector(
        policy.spec, num_envs=num_envs, seed=seed, hidden_sizes=(128,), obs_clip=10.0
    )
    try:
        return collector.collect(policy.state_dict())
    finally:
        collector.close()


def test_batch_holds_one_finished_episode_per_env(policy: SoftmaxPolicy) -> None:
    batch = collect(policy, seed=0)
    steps, envs = batch.mask.shape
    assert batch.obs.shape == (steps, envs, 4) and batch.actions.shape == (steps, envs)
    assert steps == batch.lengths.max()
    np.testing.assert_array_equal(batch.mask.sum(axis=0), batch.lengths)
    # Each episode is a prefix of its column: no step after the end is counted.
    np.testing.assert_array_equal(batch.mask, np.arange(steps)[:, None] < batch.lengths)
    np.testing.assert_array_equal(batch.rewards[~batch.mask], 0.0)
    # CartPole pays 1 per step, so the undiscounted return is the length.
    np.testing.assert_array_equal(batch.episode_returns, batch.lengths)
    assert batch.env_steps == int(batch.lengths.sum())


def test_same_seed_same_batch(policy: SoftmaxPolicy) -> None:
    a, b, c = collect(policy, seed=3), collect(policy, seed=3), collect(policy, seed=4)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.obs, b.obs)
    assert not np.array_equal(a.obs[0], c.obs[0])  # env j resets with seed + j


@pytest.mark.parametrize("net_class", [ActingNet, NumpyActingNet])
def test_acting_net_follows_the_policy_and_the_sampling_contract(
    policy: SoftmaxPolicy, net_class: type[ActingNet] | type[NumpyActingNet]
) -> None:
    """Folded normalisation gives the same actions as SoftmaxPolicy + sample_actions, in
    torch and in numpy (the collector's fast path for plain policies)."""
    assert NumpyActingNet.supports(policy.spec)
    rng = np.random.default_rng(5)
    obs = torch.from_numpy(rng.normal(0.0, 3.0, size=(4096, 4)).astype(np.float32))
    uniform = torch.from_numpy(rng.random((4096, 1), dtype=np.float32))
    with torch.no_grad():
        probs = policy.probs(obs)
        expected = sample_actions(probs, uniform)
    actions = torch.from_numpy(net_class(policy).act(obs.numpy(), uniform.numpy()))
    # Float rounding of the folded layer may flip an action only when u sits within ~1e-6
    # of the CDF; count those and require every other action to match.
    near = (probs[:, :1] - uniform).abs()[:, 0] < 1e-5
    mismatched = actions != expected
    assert not bool((mismatched & ~near).any())
    assert int(mismatched.sum()) <= int(near.sum())
