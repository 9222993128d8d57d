"""Verification of an exported file against the PyTorch policy, on thousands of observations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.export.reference import GraphFn, TorchAgent
from pgdeploy.runtime.agent import Agent
from pgdeploy.spec import OUTPUT_NAMES, PolicySpec
from pgdeploy.training.policy import SoftmaxPolicy


@dataclass(frozen=True)
class FormatCheck:
    """How one exported file compared with the PyTorch policy."""

    format: str
    path: Path
    max_abs_diff: float
    greedy_mismatches: int
    sampled_mismatches: int
    n_observations: int

    @property
    def passed_actions(self) -> bool:
        return self.greedy_mismatches == 0 and self.sampled_mismatches == 0


def verification_observations(
    policy: SoftmaxPolicy, *, n_random: int, n_on_policy: int, seed: int
) -> npt.NDArray[np.float32]:
    """Random observations around the training statistics, plus ones the policy visits."""
    rng = np.random.default_rng(seed)
    spec = policy.spec
    mean = policy.obs_mean.numpy().astype(np.float64)
    std = np.sqrt(policy.obs_var.numpy().astype(np.float64))
    random = rng.normal(mean, 3 * std, size=(n_random, spec.obs_dim))
    random = np.clip(random, np.asarray(spec.obs_low), np.asarray(spec.obs_high))
    return np.concatenate(
        [random.astype(np.float32), on_policy_observations(policy, n_on_policy, seed)]
    )


def on_policy_observations(policy: SoftmaxPolicy, n: int, seed: int) -> npt.NDArray[np.float32]:
    """``n`` observations from episodes the policy itself plays (sampled actions)."""
    from pgdeploy.envs import make_env

    env = make_env(policy.spec.env_id)
    agent = TorchAgent.from_policy(policy, seed=seed)
    observations: list[npt.NDArray[np.float32]] = []
    try:
        obs, _ = env.reset(seed=seed)
        while len(observations) < n:
            observations.append(np.asarray(obs, np.float32))
            obs, _, terminated, truncated, _ = env.step(agent.act(obs))
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return (
        np.stack(observations) if observations else np.zeros((0, policy.spec.obs_dim), np.float32)
    )


def compare(
    fmt: str,
    path: Path,
    graph: GraphFn | Agent,
    spec: PolicySpec,
    obs: npt.NDArray[np.float32],
    uniforms: npt.NDArray[np.float32],
    reference: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]],
) -> FormatCheck:
    """Compare probs, greedy and sampled actions; ties within float noise are not mismatches."""
    if isinstance(graph, Agent):
        out = graph.run_graph(obs, uniforms)
        probs, greedy, sampled = (out[name] for name in OUTPUT_NAMES)
    else:
        probs, greedy, sampled = TorchAgent(graph, spec).run_graph(obs, uniforms)
    ref_probs, ref_greedy, ref_sampled = reference
    diff = float(np.abs(probs - ref_probs).max())
    margin = 4 * max(diff, 1e-7)  # a decision this close to a boundary may flip either way
    top2 = np.sort(ref_probs, axis=1)[:, -2:]
    clear_greedy = (top2[:, 1] - top2[:, 0]) > margin
    cdf = np.cumsum(ref_probs[:, :-1], axis=1)
    clear_sample = (np.abs(cdf - uniforms[:, None]) > margin).all(axis=1)
    return FormatCheck(
        format=fmt,
        path=path,
        max_abs_diff=diff,
        greedy_mismatches=int(((greedy != ref_greedy) & clear_greedy).sum()),
        sampled_mismatches=int(((sampled != ref_sampled) & clear_sample).sum()),
        n_observations=len(obs),
    )
