"""Stable-Baselines3 models made and saved inside the tests, and SB3's own outputs for them.

Weights are redrawn at a scale where the policy is far from uniform (SB3's orthogonal
init gives the action layer gain 0.01, so an untrained PPO's probabilities are all ~1/n
and would hide a wrong column order or activation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

sb3 = pytest.importorskip("stable_baselines3")
import torch  # noqa: E402

OBS_SPACES: dict[str, Any] = {
    "box": lambda: spaces.Box(-2.0, 2.0, (5,), np.float32),
    "box2d": lambda: spaces.Box(-np.inf, np.inf, (2, 3), np.float32),
    "discrete": lambda: spaces.Discrete(7),
    "multidiscrete": lambda: spaces.MultiDiscrete([3, 4, 2]),
    "multibinary": lambda: spaces.MultiBinary(5),
    "dict": lambda: spaces.Dict(
        {"pos": spaces.Box(-1.0, 1.0, (3,), np.float32), "cell": spaces.Discrete(4)}
    ),
}
ACTION_SPACES: dict[str, Any] = {
    "discrete": lambda: spaces.Discrete(3),
    "multidiscrete": lambda: spaces.MultiDiscrete([2, 3]),
}
ARCHS: dict[str, Any] = {"shared": [16, 16], "separate": {"pi": [24, 12], "vf": [8]}}
ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "elu": torch.nn.ELU,
    "leaky_relu": torch.nn.LeakyReLU,
    "silu": torch.nn.SiLU,
    "gelu": torch.nn.GELU,
}


class SpaceEnv(gym.Env[Any, Any]):
    """An env with the given spaces: random observations, reward 1, 20 steps long."""

    def __init__(self, obs_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        self.observation_space = obs_space
        self.action_space = action_space
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        reward = float(np.sum(action))
        return self.observation_space.sample(), reward, False, self.t >= 20, {}


def make_model(algo: str, obs: str, action: str, arch: str, activation: str, seed: int = 0) -> Any:
    env = SpaceEnv(OBS_SPACES[obs](), ACTION_SPACES[action]())
    net_arch = ARCHS[arch]
    if algo == "DQN" and isinstance(net_arch, dict):
        net_arch = net_arch["pi"]
    kwargs = {"net_arch": net_arch, "activation_fn": ACTIVATIONS[activation]}
    policy = "MultiInputPolicy" if obs == "dict" else "MlpPolicy"
    cls = getattr(sb3, algo)
    extra: dict[str, Any] = {"n_steps": 8} if algo in ("PPO", "A2C") else {"learning_starts": 0}
    if algo == "PPO":
        extra["batch_size"] = 8
    model = cls(policy, env, policy_kwargs=kwargs, seed=seed, device="cpu", **extra)
    scramble(model, seed)
    return model


def scramble(model: Any, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.policy.named_parameters():
            fan_in = param.shape[-1] if param.ndim == 2 else 1
            scale = 2.0 / np.sqrt(fan_in) if param.ndim == 2 else 0.3
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
            del name


def save(model: Any, folder: Path, name: str = "model.zip") -> Path:
    path = folder / name
    model.save(path)
    return path


def sample_batch(space: gym.Space[Any], n: int, seed: int) -> Any:
    """n observations stacked as a vector env returns them (dict of arrays for Dict)."""
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    batch = np.stack([np.asarray(s) for s in samples])
    if isinstance(space, spaces.Box) and not np.isfinite(space.low).all():
        batch = batch * 3  # Box(-inf, inf) samples are N(0, 1): widen them
    return batch


def sb3_probs(model: Any, batch: Any) -> np.ndarray:
    """SB3's own probabilities (heads concatenated) for a batch."""
    obs, _ = model.policy.obs_to_tensor(batch)
    with torch.no_grad():
        dist = model.policy.get_distribution(obs).distribution
    heads = dist if isinstance(dist, list) else [dist]
    return torch.cat([d.probs for d in heads], dim=1).numpy()


def sb3_greedy(model: Any, batch: Any) -> np.ndarray:
    """DQN's greedy actions from its q_net."""
    obs, _ = model.policy.obs_to_tensor(batch)
    with torch.no_grad():
        return model.policy.q_net(obs).argmax(dim=1).numpy()
