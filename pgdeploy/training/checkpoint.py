"""``model.pt``: a plain dict of tensors and primitives, loaded without unpickling code.

Layout (``format_version`` 1)::

    {"format_version": 1, "pgdeploy_version": str, "config": TrainConfig.to_dict(),
     "spec": PolicySpec.to_dict(), "state_dict": {name: Tensor} (weights + obs statistics),
     "training": summary dict, "resume": {optimizer state, counters, RNG states}}
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgdeploy import __version__
from pgdeploy._io import atomic_write
from pgdeploy.errors import CheckpointError, ConfigError
from pgdeploy.spec import FORMAT_VERSION, READABLE_VERSIONS, PolicySpec
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
        try:
            policy.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint weights do not fit its own config "
                f"(hidden_sizes={list(self.config.hidden_sizes)}): {str(exc).splitlines()[0]}"
            ) from exc
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
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {str(path)!r} {what}, expected a model.pt file")
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
    return checkpoint_from_dict(data, source=repr(str(path)))


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
    """Names and shapes of the weights must be those the checkpoint's own config builds."""
    with torch.device("meta"):  # shapes only: nothing is allocated for a hostile config
        expected = SoftmaxPolicy(
            spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip
        ).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} state_dict does not fit its config: missing {missing}, "
            f"unexpected {unexpected}"
        )
    for name, want in expected.items():
        if tuple(state[name].shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source} state_dict[{name!r}] has shape {tuple(state[name].shape)}, expected "
                f"{tuple(want.shape)} for obs_dim={spec.obs_dim}, n_actions={spec.n_actions}, "
                f"hidden_sizes={list(config.hidden_sizes)}"
            )


# --- Resuming -------------------------------------------------------------------------
# A checkpoint's ``resume`` section carries what the weights alone do not: the optimiser's
# moments and step count, the env-step, episode and iteration counters, and the window of
# recent returns the solved check averages. Envs restart from fresh episodes (an env's
# internal state is not saved); their seed is derived from ``(seed, iterations)``, so
# resuming the same checkpoint twice gives the same run.

_COUNTERS = ("env_steps", "episodes", "iterations")


@dataclass(frozen=True)
class ResumeState:
    """Where a run stopped; built from a checkpoint by :func:`resume_state`."""

    env_steps: int
    episodes: int
    iterations: int
    window: tuple[float, ...]
    optimizer: dict[str, Any]

    def collector_seed(self, seed: int) -> int:
        """A seed for the envs and sampler of the resumed run, distinct per resume point."""
        return int(np.random.SeedSequence([seed, self.iterations]).generate_state(1)[0])

    def restore(self, checkpoint: Checkpoint, policy: SoftmaxPolicy, optimizer: Adam) -> None:
        """Load the weights, observation statistics and optimiser state into a fresh run."""
        policy.load_state_dict(checkpoint.state_dict)
        try:
            optimizer.load_state_dict(self.optimizer)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot restore the optimiser state: {exc}") from exc


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
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint has a malformed 'resume' section: {exc}") from exc
    return ResumeState(**counters, window=window, optimizer=dict(saved["optimizer"]))


def resume_payload(
    optimizer: Adam, *, env_steps: int, episodes: int, iterations: int, window: list[float]
) -> dict[str, Any]:
    """The ``resume`` section :func:`pgdeploy.training.train.train` writes into every checkpoint."""
    return {
        "optimizer": optimizer.state_dict(),
        "env_steps": env_steps,
        "episodes": episodes,
        "iterations": iterations,
        "window": list(window),
    }


def resume_config(
    checkpoint: Checkpoint, *, trust_env_module: bool = False, **overrides: Any
) -> TrainConfig:
    """The checkpoint's own config, with e.g. a larger ``total_timesteps`` to train further.

    The env id is read from the file: a ``module:EnvId`` there is refused unless
    ``env_id`` is among the overrides or ``trust_env_module`` is set
    (:func:`pgdeploy.envs.env_id_from_file`).
    """
    if "env_id" not in overrides:
        from pgdeploy.envs import env_id_from_file

        env_id_from_file(
            checkpoint.config.env_id, source="the checkpoint", trust_env_module=trust_env_module
        )
    return dataclasses.replace(checkpoint.config, **overrides)
