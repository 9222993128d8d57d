"""Training hyperparameters: one frozen dataclass that validates itself (stdlib only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pgdeploy.errors import ConfigError

Baseline = Literal["timestep", "none"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Saved inside every checkpoint."""

    env_id: str = "CartPole-v1"
    """Gymnasium id (``module:EnvId`` imports a user's module first). Box obs, Discrete actions."""
    seed: int = 0
    """Seeds torch, the envs and the action sampler: same seed, same run."""
    num_envs: int = 16
    """Envs stepped together; each update uses one finished episode from each. Fewer envs
    learn from fewer samples, more envs step faster: on CartPole-v1 (lr 0.05) 16 gave the
    lowest wall time at <= 100k median steps (see benchmarks/RESULTS.md)."""
    hidden_sizes: tuple[int, ...] = (128,)
    """Widths of the MLP's hidden layers (ReLU between them)."""
    learning_rate: float = 0.05
    """Adam step size. High for Adam because each update averages a whole batch of episodes
    with standardised advantages; 0.04-0.06 all solved 10/10 CartPole seeds, 0.01 needed
    about twice the samples."""
    gamma: float = 0.99
    """Discount of the Monte-Carlo returns."""
    baseline: Baseline = "timestep"
    """``timestep``: subtract the batch's mean return-to-go at each time step; ``none``."""
    normalize_advantages: bool = True
    """Scale advantages to zero mean and unit std over the batch."""
    normalize_obs: bool = False
    """Keep running obs mean/std and normalise inputs with them (baked into the export).
    Off by default: at lr 0.05 the drifting statistics made CartPole runs less reliable
    (seed 7 at lr 0.03: 260k steps with, 70k without); turn on for badly scaled obs."""
    obs_clip: float = 10.0
    """Normalised observations are clipped to +-obs_clip."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float = 1.0
    """Clip the gradient's global norm to this (0 disables). A guard against a rare huge
    step; with standardised advantages it seldom binds."""
    total_timesteps: int = 500_000
    """Budget of env steps; training stops when it is spent."""
    stop_on_solve: bool = True
    """Stop as soon as the mean of the last ``solve_window`` episodes reaches the threshold."""
    solve_threshold: float | None = None
    """Return that counts as solved; ``None`` takes the env's ``spec.reward_threshold``."""
    solve_window: int = 100
    """How many finished episodes the solved check averages."""
    torch_threads: int = 1
    """Threads torch may use: 1 is fastest for small MLPs (2 was ~3x slower here)."""
    workers: int = 0
    """Rollout workers as Ray actors (needs the 'ray' extra); 0 collects in this process. The
    num_envs envs are split among them, so each update sees the same batch as with 0."""
    ray_address: str = ""
    """Ray cluster to join with workers (HEAD_IP:PORT from 'ray start --head', or 'auto');
    empty starts Ray on this machine."""
    worker_timeout: float = 60.0
    """Seconds a lost worker may take to be restarted or replaced before the run stops with
    an error (a worker that answers is never timed out, however slow its env)."""
    checkpoint_every: int = 0
    """Save the run (checkpoint, metrics, curve) every this many iterations; 0: by time only."""
    checkpoint_seconds: float = 60.0
    """Save the run at least this often, in seconds of training (0: by iterations only). A save
    took 0.75 s median on a busy shared machine (mostly the picture): once a minute is ~1% of
    a long run, and a CartPole run of a few seconds never reaches it. The end of a run,
    Ctrl-C and SIGTERM always save."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        _check(isinstance(self.env_id, str) and bool(self.env_id), "env_id", "a non-empty id")
        _check(self.num_envs >= 1, "num_envs", ">= 1")
        _check(
            len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
            "hidden_sizes",
            "one or more positive widths",
        )
        _check(self.learning_rate > 0, "learning_rate", "> 0")
        _check(0.0 < self.gamma <= 1.0, "gamma", "in (0, 1]")
        _check(self.baseline in ("timestep", "none"), "baseline", "'timestep' or 'none'")
        _check(self.obs_clip > 0, "obs_clip", "> 0")
        _check(self.entropy_coef >= 0, "entropy_coef", ">= 0")
        _check(self.max_grad_norm >= 0, "max_grad_norm", ">= 0 (0 disables clipping)")
        _check(self.total_timesteps >= 1, "total_timesteps", ">= 1")
        _check(self.solve_window >= 1, "solve_window", ">= 1")
        _check(self.torch_threads >= 1, "torch_threads", ">= 1")
        _check(self.workers >= 0, "workers", ">= 0 (0 collects in this process)")
        _check(
            self.workers <= self.num_envs,
            "workers",
            f"<= num_envs ({self.num_envs}): each worker steps at least one env",
        )
        _check(isinstance(self.ray_address, str), "ray_address", "a string (HEAD_IP:PORT)")
        _check(self.worker_timeout > 0, "worker_timeout", "> 0 seconds")
        _check(self.seed >= 0, "seed", ">= 0")
        _check(self.checkpoint_every >= 0, "checkpoint_every", ">= 0 (0: by time only)")
        _check(self.checkpoint_seconds >= 0, "checkpoint_seconds", ">= 0 (0: by iterations only)")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so it survives ``torch.load(weights_only=True)`` and JSON."""
        data = dataclasses.asdict(self)
        data.pop("extra")
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"invalid config: {exc}") from exc


def _check(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config field {name!r} must be {expected}")
