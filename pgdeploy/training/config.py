"""Training hyperparameters: one frozen dataclass that validates itself (stdlib only)."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pgdeploy.errors import ConfigError
from pgdeploy.spec import (
    MAX_INT,
    check_env_id,
    check_env_kwargs,
    is_wrapper,
    shown_value,
)

Baseline = Literal["timestep", "value", "none"]
LrSchedule = Literal["constant", "linear"]
Vectorization = Literal["auto", "native", "sync", "subprocess"]

#: Bounds on ``hidden_sizes``, checked before any layer is allocated: a checkpoint or a
#: config file saying ``[300000000]`` must not make pgdeploy allocate gigabytes.
MAX_HIDDEN_WIDTH = 1 << 16
MAX_HIDDEN_LAYERS = 64
MAX_HIDDEN_WEIGHTS = 1 << 28
#: Upper bounds on counts, so a config file or checkpoint saying 2**300 is refused here
#: instead of overflowing (or looping) inside torch, numpy or gymnasium.
MAX_NUM_ENVS = 1 << 16
MAX_COUNT = 1 << 53


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Saved inside every checkpoint."""

    env_id: str = "CartPole-v1"
    """Gymnasium id; ``module:EnvId`` imports your module first (only when you type it)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the env (gymnasium.make), e.g. obs_type=ram."""
    wrapper: str = ""
    """``module:callable`` applied to each env after it is made (env -> wrapped env)."""
    seed: int = 0
    """Seeds torch, the envs and the action sampler: same seed, same run."""
    num_envs: int = 16
    """Envs stepped together; each update uses one finished episode from each. Fewer envs
    learn from fewer samples, more envs step faster: on CartPole-v1 (lr 0.05, seeds 0-9) 16
    is the most envs whose slowest seed still solved within 100k steps (24 and 32 were
    faster in wall time but needed up to 117k and 129k; see benchmarks/RESULTS.md)."""
    hidden_sizes: tuple[int, ...] = (128,)
    """Widths of the MLP's hidden layers (ReLU between them)."""
    learning_rate: float = 0.005
    """Adam step size. Chosen on the defaults sweep (benchmarks/RESULTS.md, "Defaults sweep
    (issue 23)"): with ``entropy_coef`` 0.01 it solved CartPole, Acrobot, a user-style reach
    env, slippery FrozenLake and MiniGrid-Empty on both seeds; 0.05 (the old default, kept
    as CartPole's and Acrobot's preset, where it needs fewer steps) turned the policy
    deterministic on the others, 0.01 lost MiniGrid."""
    gamma: float = 0.99
    """Discount of the Monte-Carlo returns."""
    baseline: Baseline = "timestep"
    """``timestep``: subtract the batch's mean return-to-go at each time step; ``value``: a
    learned state value V(s), fitted to the Monte-Carlo returns (REINFORCE with baseline; for
    envs whose episodes differ in length, e.g. LunarLander); ``none``."""
    value_learning_rate: float = 0.001
    """Adam step size of the value baseline (``baseline='value'`` only)."""
    value_epochs: int = 4
    """Passes over each batch (minibatches of 1024 steps) fitting the value baseline."""
    normalize_advantages: bool = True
    """Scale advantages to zero mean and unit std over the batch."""
    normalize_obs: bool = False
    """Keep running obs mean/std and normalise inputs with them (baked into the export).
    Off by default: at lr 0.05 the drifting statistics made CartPole runs less reliable
    (seed 7 at lr 0.03: 260k steps with, 70k without); turn on for badly scaled obs."""
    obs_clip: float = 10.0
    """Normalised observations are clipped to +-obs_clip."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus. Keeps the policy exploring until the returns say which
    action pays (without it, sparse-reward envs collapsed before their first success)."""
    lr_schedule: LrSchedule = "constant"
    """``linear`` decays the policy's step size to 0 at ``total_timesteps``; ``constant``."""
    max_grad_norm: float = 1.0
    """Clip the gradient's global norm to this (0 disables). A guard against a rare huge
    step; with standardised advantages it seldom binds."""
    total_timesteps: int = 500_000
    """Budget of env steps; training stops when it is spent."""
    max_episode_steps: int | None = None
    """Cut training episodes at this many steps; ``None`` uses the env's own time limit
    (envs without one, e.g. CliffWalking, are cut at 10,000 steps)."""
    iteration_steps: int = 1000
    """Most steps one iteration takes from each env: iterations stay short however long
    episodes are. The last one never passes ``total_timesteps`` by more than
    ``num_envs - 1`` steps. An episode still running
    at this bound continues in the next iteration; only its finishing part enters a
    gradient, so returns stay complete. At or above the episode length, one episode per
    env per iteration, as in plain REINFORCE."""
    stop_on_solve: bool = True
    """Stop as soon as the mean of the last ``solve_window`` episodes reaches the threshold."""
    solve_threshold: float | None = None
    """Return that counts as solved; ``None`` takes the env's ``spec.reward_threshold``."""
    solve_window: int = 100
    """How many finished episodes the solved check averages."""
    torch_threads: int = 1
    """Threads torch may use. One is fastest for small MLPs (see docs/performance.md)."""
    workers: int = 0
    """Rollout workers as Ray actors (needs the 'ray' extra); 0 collects in this process. The
    num_envs envs are split among them, so each update sees the same batch as with 0."""
    ray_address: str = ""
    """Ray cluster to join with workers (HEAD_IP:PORT from 'ray start --head', or 'auto');
    empty starts Ray on this machine."""
    worker_timeout: float = 60.0
    """Seconds a lost worker may take to be replaced before the run stops with an error. A
    worker that answers is never timed out, however slow its env."""
    checkpoint_every: int = 0
    """Save the run (checkpoint, metrics, curve) every this many iterations; 0: by time only."""
    checkpoint_seconds: float = 60.0
    """Save the run at least this often, in seconds of training (0: by iterations only). A save
    took 0.75 s median on a busy shared machine (mostly the picture): once a minute is ~1% of
    a long run, and a CartPole run of a few seconds never reaches it. The end of a run,
    Ctrl-C and SIGTERM always save."""
    vectorization: Vectorization = "auto"
    """How the envs are stepped; ``auto`` picks the env's numpy implementation where it has
    one, else worker processes when one env's step is slow enough to pay for them
    (measured at start-up), else ``sync``; ``native``, ``sync``, ``subprocess`` force one.
    With ``workers``, ``auto`` means native or ``sync`` in each worker (the workers are the
    parallelism). The run's summary says which ran."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, hint = getattr(self, f.name), _field_types()[f.name]
            _check_type(f.name, value, hint)
            if _is_int(value) and float in (hint, *typing.get_args(hint)):
                object.__setattr__(self, f.name, float(value))  # 1 -> 1.0 for float fields
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        _check(
            len(self.hidden_sizes) <= MAX_HIDDEN_LAYERS,
            "hidden_sizes",
            f"at most {MAX_HIDDEN_LAYERS} layers",
        )
        _check(
            all(h <= MAX_HIDDEN_WIDTH for h in self.hidden_sizes),
            "hidden_sizes",
            f"widths of at most {MAX_HIDDEN_WIDTH}",
        )
        _check(
            sum(a * b for a, b in zip(self.hidden_sizes, self.hidden_sizes[1:], strict=False))
            <= MAX_HIDDEN_WEIGHTS,
            "hidden_sizes",
            f"layers with at most {MAX_HIDDEN_WEIGHTS} weights between them",
        )
        check_env_id(self.env_id, source="config field 'env_id'")
        object.__setattr__(self, "env_kwargs", check_env_kwargs(self.env_kwargs))
        _check(
            is_wrapper(self.wrapper),
            "wrapper",
            "empty or module:callable (dotted Python names)",
        )
        _check(1 <= self.num_envs <= MAX_NUM_ENVS, "num_envs", f"in [1, {MAX_NUM_ENVS}]")
        for name in (
            "seed",
            "total_timesteps",
            "iteration_steps",
            "solve_window",
            "checkpoint_every",
        ):
            _check(getattr(self, name) < MAX_COUNT, name, "below 2**53")
        _check(
            self.max_episode_steps is None or self.max_episode_steps < MAX_COUNT,
            "max_episode_steps",
            "below 2**53",
        )
        _check(self.torch_threads <= 1024, "torch_threads", "<= 1024")
        _check(self.value_epochs <= 10_000, "value_epochs", "<= 10000")
        _check(
            len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
            "hidden_sizes",
            "one or more positive widths",
        )
        _check(self.learning_rate > 0, "learning_rate", "> 0")
        _check(0.0 < self.gamma <= 1.0, "gamma", "in (0, 1]")
        _check(
            self.baseline in ("timestep", "value", "none"),
            "baseline",
            "'timestep', 'value' or 'none'",
        )
        _check(self.value_learning_rate > 0, "value_learning_rate", "> 0")
        _check(self.value_epochs >= 1, "value_epochs", ">= 1")
        _check(self.lr_schedule in ("constant", "linear"), "lr_schedule", "'constant' or 'linear'")
        _check(
            self.max_episode_steps is None or self.max_episode_steps >= 1,
            "max_episode_steps",
            ">= 1 or None",
        )
        _check(self.iteration_steps >= 1, "iteration_steps", ">= 1")
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
        data["env_kwargs"] = dict(self.env_kwargs)
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


@functools.lru_cache(maxsize=1)
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Field by field, strictly: bool is not an int, a str is not a list of widths, a float
    must be finite and an int must not be a float, so a config file's ``"false"``, ``"128"``,
    ``128.9`` or ``inf`` is a one-line ConfigError instead of a silently different run."""
    expected = _type_error(value, hint)
    if expected is not None:
        raise ConfigError(
            f"config field {name!r} must be {expected}, got {shown_value(value)} "
            f"({type(value).__name__})"
        )


def _type_error(value: Any, hint: Any) -> str | None:
    """What ``value`` should have been for the type ``hint``, or None if it fits."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        error = _type_error(value, inner)
        return None if error is None else f"{error} or null"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if _is_int(value) and abs(value) > MAX_INT and hint in (int, float):
        return f"a number of at most {MAX_INT} (this one is a number too large)"
    if hint is int:
        return None if _is_int(value) else "an integer"
    if hint is float:
        ok = isinstance(value, float) or (_is_int(value) and abs(value) < 2**1000)
        ok = ok and math.isfinite(value)
        return None if ok else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is Literal:
        ok = isinstance(value, str) and value in args
        names = [repr(a) for a in args]
        return None if ok else ", ".join(names[:-1]) + " or " + names[-1]
    if origin is tuple and args[1:] == (Ellipsis,) and args[0] is int:
        ok = isinstance(value, (list, tuple)) and all(
            _is_int(v) and 1 <= v <= MAX_INT for v in value
        )
        return (
            None if ok and len(value) >= 1 else "one or more positive widths (a list of integers)"
        )
    return None  # a type this check does not know (e.g. Mapping): left to the field's owner


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config field {name!r} must be {expected}")
