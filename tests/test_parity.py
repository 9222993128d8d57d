"""PyTorch, TorchScript and ONNX agree: probabilities, sampled actions, whole episodes.

The shared model is trained with the defaults (observation normalisation off, so its
folding into the graph is the identity); a second one, trained with ``normalize_obs=True``,
checks that the statistics folded into the exported files give the PyTorch policy's
probabilities and actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgdeploy.export.reference import TorchAgent
from pgdeploy.runtime import Agent, inverse_cdf, play
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.policy import DeployablePolicy

FORMATS = ["pytorch", "deployable", "torchscript", "onnx"]


def make_agent(folder: Path, form: str, **kwargs: Any) -> Any:
    if form == "onnx":
        return Agent.load(folder / "model.onnx", **kwargs)
    policy = load_checkpoint(folder / "model.pt").build_policy()
    if form == "pytorch":
        return TorchAgent.from_policy(policy, **kwargs)
    if form == "deployable":
        return TorchAgent(DeployablePolicy(policy).eval(), policy.spec, **kwargs)
    module = torch.jit.load(str(folder / "model.torchscript.pt"))
    return TorchAgent(module, policy.spec, **kwargs)


def observations(n: int, seed: int = 0) -> np.ndarray:
    """Random CartPole observations inside the space, wide enough to cover the policy."""
    rng = np.random.default_rng(seed)
    scale = np.array([2.4, 3.0, 0.2, 3.0])
    return (rng.uniform(-1, 1, size=(n, 4)) * scale).astype(np.float32)


def on_policy_observations(folder: Path, n: int) -> np.ndarray:
    agent = Agent.load(folder / "model.onnx", seed=1)
    env = gym.make("CartPole-v1")
    seen = []
    obs, _ = env.reset(seed=1)
    while len(seen) < n:
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(agent.act(obs))
        if terminated or truncated:
            obs, _ = env.reset()
    return np.asarray(seen, np.float32)


@pytest.mark.parametrize("form", ["deployable", "torchscript", "onnx"])
@pytest.mark.parametrize("batch", [1, 4096])
def test_probs_match_pytorch_within_1e6(exported_model: Path, form: str, batch: int) -> None:
    obs = np.concatenate([observations(batch), on_policy_observations(exported_model, batch)])
    reference = make_agent(exported_model, "pytorch").probs(obs)
    probs = make_agent(exported_model, form).probs(obs)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-6)


def test_normalisation_is_real_and_changes_the_policy(exported_normalized_model: Path) -> None:
    """The statistics are far from (0, 1) and matter: without them the probabilities move.

    So the parity checks above on this model fail if export drops or misfolds them.
    """
    policy = load_checkpoint(exported_normalized_model / "model.pt").build_policy()
    mean, var = policy.obs_mean.numpy(), policy.obs_var.numpy()
    assert np.abs(mean).max() > 0.05 and np.abs(var - 1).max() > 0.5, (mean, var)
    obs = torch.from_numpy(observations(2048, seed=5))
    with torch.no_grad():
        normalised = policy.probs(obs)
        policy.obs_mean.zero_()
        policy.obs_var.fill_(1.0)
        identity = policy.probs(obs)
    assert (normalised - identity).abs().max() > 1e-2


@pytest.mark.parametrize("form", ["torchscript", "onnx"])
def test_folded_normalisation_matches_pytorch(exported_normalized_model: Path, form: str) -> None:
    folder = exported_normalized_model
    obs = np.concatenate([observations(4096), on_policy_observations(folder, 4096)])
    reference = make_agent(folder, "pytorch", seed=3)
    agent = make_agent(folder, form, seed=3)
    np.testing.assert_allclose(agent.probs(obs), reference.probs(obs), rtol=0, atol=1e-6)
    actions = reference.act_batch(obs)
    assert np.array_equal(agent.act_batch(obs), actions)
    assert 0 < actions.mean() < 1


def test_single_observation_probs_match_batch(exported_model: Path) -> None:
    agent = Agent.load(exported_model / "model.onnx")
    obs = observations(8)
    np.testing.assert_allclose(
        np.stack([agent.probs(row) for row in obs]), agent.probs(obs), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("form", FORMATS)
def test_same_seed_same_action_sequence(exported_model: Path, form: str) -> None:
    obs = observations(3000, seed=3)
    reference = make_agent(exported_model, "pytorch", seed=42).act_batch(obs)
    agent = make_agent(exported_model, form, seed=42)
    # Mix single and batched calls: the uniform stream must not care how it is consumed.
    actions = [agent.act(row) for row in obs[:500]] + list(agent.act_batch(obs[500:]))
    assert np.array_equal(np.asarray(actions), reference)
    assert 0 < reference.mean() < 1  # both actions occur, so the check has teeth


def test_sampled_actions_follow_the_documented_contract(exported_model: Path) -> None:
    agent = Agent.load(exported_model / "model.onnx")
    obs = observations(5000, seed=4)
    uniforms = np.random.default_rng(0).random(len(obs), dtype=np.float32)
    out = agent.run_graph(obs, uniforms)
    assert np.array_equal(out["sampled_action"], inverse_cdf(out["probs"], uniforms))
    assert np.array_equal(out["greedy_action"], out["probs"].argmax(axis=1))


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize("deterministic", [False, True])
def test_same_seeds_same_cartpole_trajectory(
    exported_model: Path, form: str, deterministic: bool
) -> None:
    def trajectory(which: str) -> list[tuple[float, ...]]:
        agent = make_agent(exported_model, which, seed=7, deterministic=deterministic)
        env = gym.make("CartPole-v1")
        steps: list[tuple[float, ...]] = []
        play(agent, env, episodes=3, seed=11, on_step=lambda o, a, r: steps.append((*o, a, r)))
        return steps

    reference = trajectory("pytorch")
    assert len(reference) > 30
    assert trajectory(form) == reference


@pytest.fixture(scope="module")
def exported_multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MultiDiscrete([2, 3])-action policy on a (2, 3) Box observation, trained and
    exported with normalisation on (so the folding is exercised for it too)."""
    from pgdeploy.export import export_checkpoint
    from pgdeploy.training.config import TrainConfig
    from pgdeploy.training.train import train

    folder = tmp_path_factory.mktemp("multiguess")
    config = TrainConfig(
        env_id="tests.tiny_envs:MultiGuess-v0",
        total_timesteps=3000,
        normalize_obs=True,
        hidden_sizes=(32,),
    )
    train(config, out_dir=folder)
    export_checkpoint(folder / "model.pt", n_random=256, n_on_policy=256)
    return folder


def multi_observations(n: int, seed: int = 0) -> np.ndarray:
    """Graph rows of MultiGuess: its (2, 3) observations flattened in C order."""
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 6)).astype(np.float32)


@pytest.mark.parametrize("form", ["deployable", "torchscript", "onnx"])
def test_multi_discrete_probs_match_pytorch(exported_multi: Path, form: str) -> None:
    env_obs = multi_observations(2048).reshape(-1, 2, 3)  # as the env returns them
    reference = make_agent(exported_multi, "pytorch").probs(env_obs.reshape(-1, 6))
    agent = make_agent(exported_multi, form)
    # The runtime agent takes the env's (2, 3) observations; the torch side graph rows.
    probs = agent.probs(env_obs) if form == "onnx" else agent.probs(env_obs.reshape(-1, 6))
    assert probs.shape == (2048, 5)
    np.testing.assert_allclose(probs[:, :2].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("form", FORMATS)
def test_multi_discrete_same_seed_same_actions(exported_multi: Path, form: str) -> None:
    """One uniform per head, drawn observation by observation, head by head."""
    obs = multi_observations(2000, seed=3).reshape(-1, 2, 3)  # as the env returns them
    reference = make_agent(exported_multi, "pytorch", seed=42).act_batch(obs)
    assert reference.shape == (2000, 2)
    agent = make_agent(exported_multi, form, seed=42)
    single = [agent.act(o) for o in obs[:300]]
    actions = np.concatenate([np.asarray(single), agent.act_batch(obs[300:])])
    assert np.array_equal(actions, reference)
    assert set(np.unique(reference[:, 1])) == {0, 1, 2}  # every choice occurs: the check has teeth


def test_multi_discrete_sampling_contract_per_head(exported_multi: Path) -> None:
    agent = Agent.load(exported_multi / "model.onnx")
    obs = multi_observations(3000, seed=4)
    uniforms = np.random.default_rng(0).random((len(obs), 2), dtype=np.float32)
    out = agent.run_graph(obs, uniforms)
    probs = out["probs"]
    for head, (lo, hi) in enumerate([(0, 2), (2, 5)]):
        expected = inverse_cdf(probs[:, lo:hi], uniforms[:, head])
        assert np.array_equal(out["sampled_action"][:, head], expected)
        assert np.array_equal(out["greedy_action"][:, head], probs[:, lo:hi].argmax(axis=1))
