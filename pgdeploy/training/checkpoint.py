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

import io
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pgdeploy import __version__
from pgdeploy._io import atomic_write
from pgdeploy.errors import CheckpointError, ConfigError, InvalidArgumentError
from pgdeploy.spec import FORMAT_VERSION, READABLE_VERSIONS, PolicySpec, check_env_id
from pgdeploy.training.checkpoint_file import checkpoint_file
from pgdeploy.training.checkpoint_safety import (
    MAX_CHECKPOINT_BYTES,
    check_plain_data,
    check_state_dict,
    check_training_section,
    read_checkpoint_bytes,
)
from pgdeploy.training.config import TrainConfig
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
        check_env_id(config.env_id, source="its config's env id")
        spec = PolicySpec.from_dict(data["spec"])
    except (ConfigError, InvalidArgumentError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} has an invalid config or spec: {exc}") from exc
    _check_weights(state, config, spec, source=source)
    check_training_section(data.get("training") or {}, source=source)
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
    check_tensors(
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
    check_tensors(state, policy.state_dict(), source=source, hint="the policy being loaded")
    policy.load_state_dict(state)


def check_tensors(
    state: Mapping[str, Any],
    expected: Mapping[str, torch.Tensor],
    *,
    source: str,
    hint: str = "the module being loaded",
) -> None:
    """``state`` has exactly ``expected``'s names, shapes and dtypes."""
    if not all(isinstance(key, str) for key in state):
        raise CheckpointError(f"{source} state_dict has a key that is not a string")
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
