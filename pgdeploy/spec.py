"""What a policy file says about itself: the spec shared by checkpoints, ONNX and the runtime.

This module is the contract between the torch side and the runtime, so it uses only the
standard library and numpy. Everything the runtime needs to validate observations and
describe a model travels in :class:`PolicySpec`, serialised into the ONNX file's
``metadata_props`` (string keys, JSON values) so any language can read it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgdeploy.errors import InvalidArgumentError, ModelLoadError

#: float32's largest finite value: gymnasium's "unbounded" in many spaces, and what clip
#: bounds use in place of infinity (a float32 graph cannot hold a larger finite bound).
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: Version of the file formats (``model.pt`` dict and ONNX metadata). Bumped on any
#: incompatible change; loaders refuse versions they do not know.
FORMAT_VERSION = 1

# The ONNX graph's input/output contract (see README, "The portable graph").
OBS_INPUT = "obs"  #: float32 (batch, obs_dim): raw observations, normalised inside.
UNIFORM_INPUT = "uniform"  #: float32 (batch, 1): one uniform in [0, 1) per observation.
PROBS_OUTPUT = "probs"  #: float32 (batch, n_actions): softmax probabilities.
GREEDY_OUTPUT = "greedy_action"  #: int64 (batch,): argmax of probs (first on ties).
SAMPLED_OUTPUT = "sampled_action"  #: int64 (batch,): inverse-CDF sample given uniform.
OUTPUT_NAMES = (PROBS_OUTPUT, GREEDY_OUTPUT, SAMPLED_OUTPUT)

IO_CONTRACT = (
    f"inputs: {OBS_INPUT} float32[batch,obs_dim] raw observation (clipped to the observation "
    f"space and normalised inside the graph); {UNIFORM_INPUT} float32[batch,1] uniform in [0,1). "
    f"outputs: {PROBS_OUTPUT} float32[batch,n_actions]; {GREEDY_OUTPUT} int64[batch] = "
    f"argmax(probs); {SAMPLED_OUTPUT} int64[batch] = number of k < n_actions-1 with "
    f"cumsum(probs)[k] <= uniform (inverse CDF). Callers must reject non-finite observations."
)

_META_PREFIX = "pgdeploy."


@dataclass(frozen=True)
class PolicySpec:
    """The environment-facing shape of a policy: what goes in, what comes out."""

    env_id: str
    obs_dim: int
    n_actions: int
    #: Observation-space bounds; ``math.inf`` where a dimension is unbounded.
    obs_low: tuple[float, ...]
    obs_high: tuple[float, ...]
    action_names: tuple[str, ...] = ()
    reward_threshold: float | None = None
    max_episode_steps: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.obs_dim < 1:
            raise InvalidArgumentError(f"obs_dim must be >= 1, got {self.obs_dim}")
        if self.n_actions < 2:
            raise InvalidArgumentError(f"n_actions must be >= 2, got {self.n_actions}")
        for name in ("obs_low", "obs_high"):
            if len(getattr(self, name)) != self.obs_dim:
                raise InvalidArgumentError(
                    f"{name} must have {self.obs_dim} entries, got {len(getattr(self, name))}"
                )
        if self.action_names and len(self.action_names) != self.n_actions:
            raise InvalidArgumentError(
                f"action_names must have {self.n_actions} entries, got {len(self.action_names)}"
            )

    @property
    def obs_shape(self) -> tuple[int]:
        return (self.obs_dim,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (infinite bounds become ``None``)."""
        return {
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "obs_low": [_finite_or_none(v) for v in self.obs_low],
            "obs_high": [_finite_or_none(v) for v in self.obs_high],
            "action_names": list(self.action_names),
            "reward_threshold": self.reward_threshold,
            "max_episode_steps": self.max_episode_steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicySpec:
        """Inverse of :meth:`to_dict`; raises KeyError, TypeError or ValueError on bad data."""
        return cls(
            env_id=str(data["env_id"]),
            obs_dim=_as_int(data["obs_dim"]),
            n_actions=_as_int(data["n_actions"]),
            obs_low=tuple(-math.inf if v is None else float(v) for v in data["obs_low"]),
            obs_high=tuple(math.inf if v is None else float(v) for v in data["obs_high"]),
            action_names=tuple(str(n) for n in data.get("action_names") or ()),
            reward_threshold=_optional_float(data.get("reward_threshold")),
            max_episode_steps=_optional_int(data.get("max_episode_steps")),
        )


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else _as_int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def spec_to_metadata(
    spec: PolicySpec, *, training: Mapping[str, Any], pgdeploy_version: str
) -> dict[str, str]:
    """The ONNX ``metadata_props`` that make a file self-describing (string values, JSON inside)."""
    fields = {
        "format_version": FORMAT_VERSION,
        "pgdeploy_version": pgdeploy_version,
        "spec": spec.to_dict(),
        "training": dict(training),
        "io_contract": IO_CONTRACT,
        "inputs": [OBS_INPUT, UNIFORM_INPUT],
        "outputs": list(OUTPUT_NAMES),
    }
    return {_META_PREFIX + key: json.dumps(value) for key, value in fields.items()}


@dataclass(frozen=True)
class ModelMetadata:
    """Metadata read back from a model file."""

    format_version: int
    pgdeploy_version: str
    spec: PolicySpec
    training: Mapping[str, Any]


def metadata_from_props(props: Mapping[str, str], *, source: str) -> ModelMetadata:
    """Parse and validate ``metadata_props``; every failure is a :class:`ModelLoadError`."""
    if _META_PREFIX + "format_version" not in props:
        raise ModelLoadError(
            f"{source} has no pgdeploy metadata; export it with 'pgdeploy export MODEL.pt'"
        )
    try:
        values = {
            key[len(_META_PREFIX) :]: json.loads(text)
            for key, text in props.items()
            if key.startswith(_META_PREFIX)
        }
        version = values["format_version"]
        if version != FORMAT_VERSION:
            raise ModelLoadError(
                f"{source} has pgdeploy format version {version!r}, expected {FORMAT_VERSION}; "
                "re-export it with this version of pgdeploy or upgrade pgdeploy"
            )
        return ModelMetadata(
            format_version=version,
            pgdeploy_version=str(values.get("pgdeploy_version", "unknown")),
            spec=PolicySpec.from_dict(values["spec"]),
            training=dict(values.get("training") or {}),
        )
    except ModelLoadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelLoadError(
            f"{source} has malformed pgdeploy metadata ({type(exc).__name__}: {exc}); "
            "re-export it with 'pgdeploy export'"
        ) from exc
