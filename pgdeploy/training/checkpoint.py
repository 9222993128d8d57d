"""``model.pt``: a plain dict of tensors and primitives, loaded without unpickling code.

Layout (``format_version`` 1)::

    {"format_version": 1, "pgdeploy_version": str, "config": TrainConfig.to_dict(),
     "spec": PolicySpec.to_dict(), "state_dict": {name: Tensor} (weights + obs statistics),
     "training": summary dict, "resume": {optimizer state, counters, RNG states, history}}

The ``resume`` section holds the run's whole metrics history (one float64 row per
iteration), so the checkpoint alone describes the run: the metrics file and the learning
curve beside it are regenerated from it at every save, and a resumed run continues them.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import nan
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgdeploy import __version__
from pgdeploy._io import atomic_write
from pgdeploy.errors import CheckpointError, ConfigError
from pgdeploy.spec import FORMAT_VERSION, READABLE_VERSIONS, PolicySpec
from pgdeploy.training.callbacks import FIELDS, IterationStats
from pgdeploy.training.checkpoint_file import checkpoint_file
from pgdeploy.training.checkpoint_safety import (
    MAX_CHECKPOINT_BYTES,
    check_plain_data,
    check_state_dict,
    non_finite_weights,
    read_checkpoint_bytes,
)
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.optim import Adam
from pgdeploy.training.policy import SoftmaxPolicy

REQUIRED_KEYS = ("format_version", "config", "spec", "state_dict", "training")


@dataclass
class Checkpoint:
    config: TrainConfig
    spec: PolicySpec
    state_dict: Mapping[str, torch.Tensor]
    training: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] = field(default_factory=dict)
    pgdeploy_version: str = __version__
    path: Path | None = field(default=None, compare=False)
    """The file it was loaded from (None when built in memory)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "pgdeploy_version": self.pgdeploy_version,
            "config": self.config.to_dict(),
            "spec": self.spec.to_dict(),
            "state_dict": dict(self.state_dict),
            "training": self.training,
            "resume": self.resume,
        }

    def build_policy(self) -> SoftmaxPolicy:
        """The policy with its weights and statistics; shape mismatches are CheckpointErrors."""
        policy = SoftmaxPolicy(
            self.spec, hidden_sizes=self.config.hidden_sizes, obs_clip=self.config.obs_clip
        )
        load_policy_state(policy, self.state_dict, source="checkpoint")
        return policy.eval()


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write atomically: temp file in the same folder, fsync, rename."""
    data = checkpoint.to_dict()
    return atomic_write(path, lambda handle: torch.save(data, handle))


def load_checkpoint(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> Checkpoint:
    """Load with ``weights_only=True``: a file that tries to unpickle code is refused.

    Sizes are bounded before (file, zip records) and after (nesting, weights' shapes
    against the config, computed without allocating) :mod:`~pgdeploy.training.checkpoint_safety`.
    """
    path = checkpoint_file(path)
    raw = read_checkpoint_bytes(path, max_bytes=max_bytes)
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise CheckpointError(
            f"{str(path)!r} is not a PyTorch checkpoint (expected a zip archive written by "
            "'pgdeploy train'; it may be truncated)"
        )
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {str(path)!r}: it contains objects other than tensors and plain "
            f"data (a pickled class or function), which could run code; nothing from it was "
            f"executed. {_unpickler_reason(exc)}"
        ) from exc
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc
    check_plain_data(data, source=repr(str(path)))
    checkpoint = checkpoint_from_dict(data, source=repr(str(path)))
    checkpoint.path = path
    return checkpoint


def _unpickler_reason(exc: Exception) -> str:
    """The one informative line of torch's long weights-only error."""
    for line in str(exc).splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.strip()[:300]
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""


def checkpoint_from_dict(data: Any, *, source: str) -> Checkpoint:
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} holds a {type(data).__name__}, expected a dict")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise CheckpointError(f"{source} is missing keys {missing}; expected {list(REQUIRED_KEYS)}")
    if data["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{source} has format version {data['format_version']!r}, expected one of "
            f"{list(READABLE_VERSIONS)}"
        )
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: 'state_dict' must map names to tensors")
    check_state_dict(state, source=source)
    for key in ("config", "spec", "training", "resume"):
        if not isinstance(data.get(key) or {}, dict):
            raise CheckpointError(
                f"{source}: {key!r} is a {type(data[key]).__name__}, expected a dict"
            )
    try:
        config = TrainConfig.from_dict(data["config"])
        spec = PolicySpec.from_dict(data["spec"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} has an invalid config or spec: {exc}") from exc
    _check_weights(state, config, spec, source=source)
    return Checkpoint(
        config=config,
        spec=spec,
        state_dict=state,
        training=dict(data.get("training") or {}),
        resume=dict(data.get("resume") or {}),
        pgdeploy_version=str(data.get("pgdeploy_version", "unknown")),
    )


def _check_weights(
    state: Mapping[str, torch.Tensor], config: TrainConfig, spec: PolicySpec, *, source: str
) -> None:
    """Names, shapes and dtypes of the weights must be those the checkpoint's config builds."""
    with torch.device("meta"):  # shapes only: nothing is allocated for a hostile config
        policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
    _check_state(
        state,
        policy.state_dict(),
        source=source,
        hint=f"obs_dim={spec.obs_dim}, "
        f"n_actions={spec.n_actions}, hidden_sizes={list(config.hidden_sizes)}",
    )


def load_policy_state(
    policy: SoftmaxPolicy, state: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Load weights and statistics into ``policy`` with names, shapes and dtypes checked
    first (``load_state_dict`` would cast dtypes silently); nothing changes on a mismatch."""
    _check_state(state, policy.state_dict(), source=source, hint="the policy being loaded")
    policy.load_state_dict(state)


def _check_state(
    state: Mapping[str, Any], expected: Mapping[str, torch.Tensor], *, source: str, hint: str
) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} state_dict does not fit its config: missing {missing}, "
            f"unexpected {unexpected}"
        )
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{source} state_dict[{name!r}] is not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source} state_dict[{name!r}] has shape {tuple(got.shape)}, expected "
                f"{tuple(want.shape)} for {hint}"
            )
        if got.dtype != want.dtype:
            raise CheckpointError(
                f"{source} state_dict[{name!r}] has dtype {got.dtype}, expected {want.dtype}"
            )


# --- Resuming -------------------------------------------------------------------------
# A checkpoint's ``resume`` section carries what the weights alone do not: the optimiser's
# moments and step count, the env-step, episode and iteration counters, the window of
# recent returns the solved check averages, the run's metrics history, and the RNG states
# of the envs and the action sampler. Every iteration starts with a reset of all envs, so
# restoring those RNG states continues a run exactly where it stopped: a run split into
# resumed parts equals one run (for envs whose reset depends only on their np_random).
# Older checkpoints without RNG states get a seed derived from ``(seed, iterations)``.

_COUNTERS = ("env_steps", "episodes", "iterations")
#: Config fields that define the policy's function; a resume may not change them.
POLICY_FIELDS = ("env_id", "hidden_sizes", "normalize_obs", "obs_clip")


@dataclass(frozen=True)
class ResumeState:
    """Where a run stopped; built from a checkpoint by :func:`resume_state`."""

    env_steps: int
    episodes: int
    iterations: int
    window: tuple[float, ...]
    optimizer: dict[str, Any]
    history: tuple[IterationStats, ...] = ()
    steps_to_solve: int | None = None
    wall_seconds: float = 0.0
    rng: str | None = None

    def collector_seed(self, seed: int) -> int:
        """A seed for the envs and sampler of the resumed run, distinct per resume point."""
        return int(np.random.SeedSequence([seed, self.iterations]).generate_state(1)[0])

    def restore(self, checkpoint: Checkpoint, policy: SoftmaxPolicy, optimizer: Adam) -> None:
        """Load the weights, observation statistics and optimiser state into a fresh run."""
        load_policy_state(policy, checkpoint.state_dict, source="checkpoint")
        try:
            optimizer.load_state_dict(self.optimizer)
        except CheckpointError as exc:
            raise CheckpointError(f"cannot restore the optimiser: {exc}") from exc


def resume_state(checkpoint: Checkpoint) -> ResumeState:
    """The saved counters and optimiser state; a CheckpointError if they are not there."""
    saved = checkpoint.resume
    bad = non_finite_weights(checkpoint.state_dict)
    if bad:
        raise CheckpointError(
            f"checkpoint cannot be resumed: weights {bad} hold NaN or infinity (the run "
            "diverged); start a new run, e.g. with a smaller learning_rate"
        )
    missing = [key for key in (*_COUNTERS, "window", "optimizer") if key not in saved]
    if missing:
        raise CheckpointError(
            f"checkpoint cannot be resumed: its 'resume' section lacks {missing} (it was written "
            "by an older pgdeploy or not by 'pgdeploy train'); start a new run instead"
        )
    try:
        counters = {key: int(saved[key]) for key in _COUNTERS}
        window = tuple(float(v) for v in saved["window"])
        solve = saved.get("steps_to_solve")
        rng = saved.get("rng")
        return ResumeState(
            **counters,
            window=window,
            optimizer=dict(saved["optimizer"]),
            history=decode_history(saved.get("history")),
            steps_to_solve=None if solve is None else int(solve),
            wall_seconds=float(saved.get("wall_seconds", 0.0)),
            rng=rng if isinstance(rng, str) else None,
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint has a malformed 'resume' section: {exc}") from exc


def resume_payload(
    optimizer: Adam,
    *,
    env_steps: int,
    episodes: int,
    iterations: int,
    window: list[float],
    history: list[IterationStats] | tuple[IterationStats, ...] = (),
    steps_to_solve: int | None = None,
    wall_seconds: float = 0.0,
    rng: str | None = None,
) -> dict[str, Any]:
    """The ``resume`` section :func:`pgdeploy.training.train.train` writes into every checkpoint."""
    return {
        "optimizer": optimizer.state_dict(),
        "env_steps": env_steps,
        "episodes": episodes,
        "iterations": iterations,
        "window": list(window),
        "history": encode_history(history),
        "steps_to_solve": steps_to_solve,
        "wall_seconds": wall_seconds,
        "rng": rng,
    }


def encode_history(history: list[IterationStats] | tuple[IterationStats, ...]) -> dict[str, Any]:
    """One float64 row per iteration (exact for the counters, which stay below 2**53)."""
    rows = [[float(getattr(stats, name)) for name in FIELDS] for stats in history]
    tensor = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(FIELDS))
    return {"fields": list(FIELDS), "rows": tensor}


def decode_history(data: Any) -> tuple[IterationStats, ...]:
    """Rows back to IterationStats by field name: a field this version lacks is dropped, one
    the checkpoint lacks is NaN (the counters must be there)."""
    if data is None:
        return ()
    fields, rows = list(data["fields"]), data["rows"]
    if not isinstance(rows, torch.Tensor) or rows.ndim != 2 or rows.shape[1] != len(fields):
        raise ValueError(f"history must be a (rows, {len(fields)}) tensor")
    missing = sorted(_INT_FIELDS - set(fields))
    if missing:
        raise ValueError(f"history lacks {missing}")
    decoded = []
    for row in rows.tolist():
        values = dict(zip(fields, row, strict=True))
        decoded.append(
            IterationStats(
                **{
                    name: int(values[name]) if name in _INT_FIELDS else values.get(name, nan)
                    for name in FIELDS
                }
            )
        )
    return tuple(decoded)


_INT_FIELDS = {"iteration", "env_steps", "episodes"}


def check_resumable(checkpoint: Checkpoint, config: TrainConfig) -> None:
    """Refuse, before any work, a config that cannot continue ``checkpoint``'s run: one that
    changes the policy's function (env, network) or whose budget is already spent."""
    for name in POLICY_FIELDS:
        was, now = getattr(checkpoint.config, name), getattr(config, name)
        if was != now:
            raise CheckpointError(
                f"cannot resume: {name} differs (the run has {_show(was)}, the new config "
                f"{_show(now)}); a resumed run keeps its policy, so start a new run instead"
            )
    done = int(checkpoint.resume.get("env_steps", 0))
    if done >= config.total_timesteps:
        raise CheckpointError(
            f"cannot resume: the run has already spent its budget ({done} env steps of "
            f"total_timesteps={config.total_timesteps}); raise total_timesteps to train further"
        )


def check_same_spaces(checkpoint: Checkpoint, spec: PolicySpec) -> None:
    """The env must still have the spaces the run was trained on."""
    was, now = checkpoint.spec, spec
    if (was.obs_dim, was.n_actions) != (now.obs_dim, now.n_actions):
        raise CheckpointError(
            f"cannot resume: {now.env_id} now has obs_dim {now.obs_dim} and {now.n_actions} "
            f"actions, the run was trained with obs_dim {was.obs_dim} and {was.n_actions}"
        )


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def resume_config(
    checkpoint: Checkpoint, *, trust_env_module: bool = False, **overrides: Any
) -> TrainConfig:
    """The checkpoint's own config, with e.g. a larger ``total_timesteps`` to train further.

    The env id is read from the file: a ``module:EnvId`` there is refused unless
    ``env_id`` is among the overrides or ``trust_env_module`` is set
    (:func:`pgdeploy.envs.env_id_from_file`).
    """
    if "env_id" not in overrides:
        from pgdeploy.envs.making import env_id_from_file

        env_id_from_file(
            checkpoint.config.env_id, source="the checkpoint", trust_env_module=trust_env_module
        )
    return dataclasses.replace(checkpoint.config, **overrides)
