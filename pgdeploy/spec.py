"""What a policy file says about itself: the spec shared by checkpoints, ONNX and the runtime.

This module is the contract between the torch side and the runtime, so it uses only the
standard library and numpy. Everything the runtime needs to validate observations and
describe a model travels in :class:`PolicySpec`, serialised into the ONNX file's
``metadata_props`` (string keys, JSON values) so any language can read it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgdeploy.errors import InvalidArgumentError, ModelLoadError
from pgdeploy.layout import ActionLayout, ObsLayout

#: float32's largest finite value: gymnasium's "unbounded" in many spaces, and what clip
#: bounds use in place of infinity (a float32 graph cannot hold a larger finite bound).
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: Version of the file formats (``model.pt`` dict, ONNX and TorchScript metadata). Bumped
#: on any incompatible change. Version 2 added the observation and action layouts
#: (structured observations, action ``start``, multi-discrete heads); version 3 made the
#: ONNX graph canonical (:mod:`pgdeploy.runtime.policy_graph`, with the ``network``
#: description and the ``pair_id`` in the metadata).
FORMAT_VERSION = 3
#: Checkpoint versions ``model.pt`` loaders read (a checkpoint holds no graph).
READABLE_VERSIONS = (1, 2, 3)
#: Versions of exported model files (ONNX, TorchScript) the loaders read: only the
#: canonical graph of version 3; earlier files are refused with "re-export".
MODEL_FILE_VERSIONS = (3,)

# The ONNX graph's input/output contract (see README, "The portable graph").
OBS_INPUT = "obs"  #: float32 (batch, obs_dim): raw observations, normalised inside.
#: float32 (batch, n_branches): one uniform in [0, 1) per observation and action head.
UNIFORM_INPUT = "uniform"
#: float32 (batch, n_actions): softmax probabilities (per head, concatenated).
PROBS_OUTPUT = "probs"
#: int64 (batch,) or (batch, n_branches): start + argmax of each head (first on ties).
GREEDY_OUTPUT = "greedy_action"
#: int64, as greedy: start + the inverse-CDF sample of each head given its uniform.
SAMPLED_OUTPUT = "sampled_action"
OUTPUT_NAMES = (PROBS_OUTPUT, GREEDY_OUTPUT, SAMPLED_OUTPUT)

IO_CONTRACT = (
    f"inputs: {OBS_INPUT} float32[batch,obs_dim] raw observation (clipped to the observation "
    f"space and normalised inside the graph); {UNIFORM_INPUT} float32[batch,1] uniform in [0,1). "
    f"outputs: {PROBS_OUTPUT} float32[batch,n_actions]; {GREEDY_OUTPUT} int64[batch] = "
    f"argmax(probs); {SAMPLED_OUTPUT} int64[batch] = number of k < n_actions-1 with "
    f"cumsum(probs)[k] <= uniform (inverse CDF). Callers must reject non-finite observations. "
    "With observation/action layouts (format 2): obs is the raw flat row of the env's "
    "observation (Discrete values as their integers, one-hot encoded inside the graph); "
    "multi-discrete actions have one softmax, one uniform column and one output column per "
    "head; outputs include the action space's start. See docs/envs.md."
)

_META_PREFIX = "pgdeploy."

#: gymnasium's env id grammar (``[namespace/]name[-vN]``), optionally after a ``module:``
#: entry point, ASCII only: the one form an env id from any source may take. Nothing else
#: (quotes, backslashes, newlines, spaces, escape sequences) can reach generated code, a
#: shell or a terminal through an id.
ENV_ID_PATTERN = re.compile(
    r"(?:[A-Za-z_][A-Za-z0-9_.]*:)?(?:[A-Za-z0-9_:-]+/)?[A-Za-z0-9_.:-]+?(?:-v[0-9]+)?",
    re.ASCII,
)
MAX_ENV_ID_LENGTH = 200
#: Integers in a config or env keywords beyond this are "a number too large" (no field needs
#: more, and a 10**5000 would otherwise fail deep inside float() or str()).
MAX_INT = 2**63 - 1
#: ``module:callable`` of a wrapper: dotted Python identifiers, ASCII.
WRAPPER_PATTERN = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:"
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*",
    re.ASCII,
)
#: env_kwargs hold a few JSON values: this many keys, strings and list items at most.
MAX_ENV_KWARGS = 64
_KWARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)


def check_env_kwargs(value: Any) -> dict[str, Any]:
    """``value`` as a dict of keyword arguments that JSON can hold (strings, finite numbers,
    booleans, null, lists of these), so the run's config saves and reloads it exactly."""
    if not isinstance(value, Mapping) or len(value) > MAX_ENV_KWARGS:
        raise InvalidArgumentError(
            f"config field 'env_kwargs' must be a mapping of at most {MAX_ENV_KWARGS} "
            f"keyword arguments, got {type(value).__name__}"
        )
    for key, item in value.items():
        if not isinstance(key, str) or _KWARG_NAME.fullmatch(key) is None:
            raise InvalidArgumentError(
                f"env_kwargs key {ascii(key)[:60]} is not a Python identifier of at most 64 "
                "ASCII characters"
            )
        items = item if isinstance(item, list) and len(item) <= MAX_ENV_KWARGS else [item]
        if not all(_is_json_scalar(v) for v in items):
            raise InvalidArgumentError(
                f"env_kwargs value of {key!r} must be a string, finite number, true/false, "
                f"null or a list of at most {MAX_ENV_KWARGS} of these, got {shown_value(item)}"
            )
    return dict(value)


def _is_json_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_INT
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= 256


def shown_value(value: Any) -> str:
    """A short, escaped rendering of a value from a file: never raw text, never a huge int."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"a number too large ({value.bit_length()} bits)"
    if isinstance(value, (list, tuple, dict)) and len(value) > 16:
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        text = ascii(value)
    except (ValueError, RecursionError):  # a huge int or deep nesting inside a container
        return type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


#: Action names (shown by ``inspect`` and in generated C): words, digits, space, ``_.-``.
ACTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\- ]{1,64}", re.ASCII)


def is_env_id(value: object) -> bool:
    """Whether ``value`` is an env id of :data:`ENV_ID_PATTERN`'s grammar."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_ENV_ID_LENGTH
        and ENV_ID_PATTERN.fullmatch(value) is not None
    )


def is_wrapper(value: object) -> bool:
    """Whether ``value`` is a wrapper name: empty (none) or :data:`WRAPPER_PATTERN`'s
    ``module:callable``. Nothing else is ever imported as a wrapper."""
    return isinstance(value, str) and (value == "" or WRAPPER_PATTERN.fullmatch(value) is not None)


def check_env_id(value: object, *, source: str = "env id") -> str:
    """``value`` if it is an env id, else InvalidArgumentError naming the grammar."""
    if not is_env_id(value):
        shown = ascii(value)[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidArgumentError(
            f"{source} {shown} is not a gymnasium env id (expected [module:][namespace/]"
            f"name[-vN] in ASCII letters, digits and _ . : -, at most {MAX_ENV_ID_LENGTH} "
            "characters)"
        )
    return value  # type: ignore[return-value]


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
    #: How the env's observation maps onto the ``obs`` row (:mod:`pgdeploy.layout`);
    #: ``None`` means a 1-D Box of ``obs_dim`` values.
    observation_space: Mapping[str, Any] | None = field(default=None, compare=False)
    #: Action heads (:class:`~pgdeploy.layout.ActionLayout` as a dict); ``None`` means
    #: ``Discrete(n_actions)`` starting at 0.
    action_space: Mapping[str, Any] | None = field(default=None, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_env_id(self.env_id)
        for name in self.action_names:
            if not isinstance(name, str) or ACTION_NAME_PATTERN.fullmatch(name) is None:
                raise InvalidArgumentError(
                    f"action name {ascii(name)[:80]} is not 1-64 ASCII letters, digits, "
                    "spaces or _ . -"
                )
        if self.obs_dim < 1:
            raise InvalidArgumentError(f"obs_dim must be >= 1, got {self.obs_dim}")
        if self.n_actions < 2:
            raise InvalidArgumentError(f"n_actions must be >= 2, got {self.n_actions}")
        for name in ("obs_low", "obs_high"):
            if len(getattr(self, name)) != self.obs_dim:
                raise InvalidArgumentError(
                    f"{name} must have {self.obs_dim} entries, got {len(getattr(self, name))}"
                )
        for low, high in zip(self.obs_low, self.obs_high, strict=True):
            if not low <= high:  # also refuses NaN
                raise ValueError(f"observation bounds must satisfy low <= high, got {low}, {high}")
        if self.action_names and len(self.action_names) != self.n_actions:
            raise InvalidArgumentError(
                f"action_names must have {self.n_actions} entries, got {len(self.action_names)}"
            )
        obs_layout = ObsLayout(self.observation_space or {"type": "box", "shape": [self.obs_dim]})
        if obs_layout.obs_dim != self.obs_dim:
            raise ValueError(
                f"observation_space has {obs_layout.obs_dim} values, obs_dim says {self.obs_dim}"
            )
        actions = (
            ActionLayout.from_dict(self.action_space)
            if self.action_space is not None
            else ActionLayout.discrete(self.n_actions)
        )
        if actions.n_logits != self.n_actions:
            raise ValueError(
                f"action_space has {actions.n_logits} choices in all, n_actions says "
                f"{self.n_actions}"
            )
        object.__setattr__(self, "_obs_layout", obs_layout)
        object.__setattr__(self, "_action_layout", actions)

    @property
    def obs_shape(self) -> tuple[int]:
        """Shape of the graph's (raw flat) observation row."""
        return (self.obs_dim,)

    @property
    def obs_layout(self) -> ObsLayout:
        return self._obs_layout  # type: ignore[attr-defined,no-any-return]

    @property
    def action_layout(self) -> ActionLayout:
        return self._action_layout  # type: ignore[attr-defined,no-any-return]

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
            "observation_space": self.obs_layout.tree,
            "action_space": self.action_layout.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicySpec:
        """Inverse of :meth:`to_dict`; raises KeyError, TypeError or ValueError on bad data."""
        return cls(
            env_id=str(data["env_id"]),
            obs_dim=_as_int(data["obs_dim"]),
            n_actions=_as_int(data["n_actions"]),
            obs_low=tuple(-math.inf if v is None else _as_bound(v) for v in data["obs_low"]),
            obs_high=tuple(math.inf if v is None else _as_bound(v) for v in data["obs_high"]),
            action_names=tuple(str(n) for n in data.get("action_names") or ()),
            reward_threshold=_optional_float(data.get("reward_threshold")),
            max_episode_steps=_optional_int(data.get("max_episode_steps")),
            observation_space=_optional_mapping(data.get("observation_space")),
            action_space=_optional_mapping(data.get("action_space")),
        )


def _optional_mapping(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {value!r}")
    return dict(value)


def _as_bound(value: Any) -> float:
    """A bound is a JSON number: not a string (``float("nan")`` parses), not NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"expected a number or null for an observation bound, got {value!r}")
    return float(value)


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


#: Every ``metadata_props`` key pgdeploy writes (prefixed ``pgdeploy.``); a model file
#: with any other key is not pgdeploy's graph.
METADATA_KEYS = tuple(
    _META_PREFIX + key
    for key in (
        "format_version",
        "pgdeploy_version",
        "spec",
        "training",
        "io_contract",
        "inputs",
        "outputs",
        "network",
        "pair_id",
    )
)


def spec_to_metadata(
    spec: PolicySpec,
    *,
    training: Mapping[str, Any],
    pgdeploy_version: str,
    network: Mapping[str, Any] | None = None,
    pair_id: str | None = None,
) -> dict[str, str]:
    """The ONNX ``metadata_props`` that make a file self-describing (string values, JSON inside).

    ``network`` is :meth:`~pgdeploy.runtime.network.PolicyNetwork.description`; ``pair_id``
    ties the files of one export together (:mod:`pgdeploy.runtime.pairing`).
    """
    fields: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "pgdeploy_version": pgdeploy_version,
        "spec": spec.to_dict(),
        "training": dict(training),
        "io_contract": IO_CONTRACT,
        "inputs": [OBS_INPUT, UNIFORM_INPUT],
        "outputs": list(OUTPUT_NAMES),
    }
    if network is not None:
        fields["network"] = dict(network)
    if pair_id is not None:
        fields["pair_id"] = pair_id
    return {
        _META_PREFIX + key: json.dumps(_json_safe(value), allow_nan=False)
        for key, value in fields.items()
    }


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite float in a summary is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


#: Deepest nesting of lists/objects accepted in one metadata value (pgdeploy writes <= 3).
MAX_METADATA_DEPTH = 32


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity and anything nested deeper than the limit.

    The depth is counted on the text before parsing, so a value nested 100,000 deep is
    refused without recursing (json's parser would raise RecursionError).
    """
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_METADATA_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_METADATA_DEPTH} levels")
        elif char in "]}":
            depth -= 1
    return json.loads(text, parse_constant=_refuse_constant)


_PAIR_ID = re.compile(r"[0-9a-f]{64}", re.ASCII)


def is_pair_id(value: object) -> bool:
    """Whether ``value`` is a pair id: a sha256 hex digest (see :mod:`pgdeploy.runtime.pairing`)."""
    return isinstance(value, str) and _PAIR_ID.fullmatch(value) is not None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not a number")


@dataclass(frozen=True)
class ModelMetadata:
    """Metadata read back from a model file."""

    format_version: int
    pgdeploy_version: str
    spec: PolicySpec
    training: Mapping[str, Any]
    #: :meth:`PolicyNetwork.description` as written (``None`` only in files of no graph).
    network: Mapping[str, Any] | None = None
    #: The id shared by the files of one export (``None`` if the file carries none).
    pair_id: str | None = None


def metadata_from_props(props: Mapping[str, str], *, source: str) -> ModelMetadata:
    """Parse and validate ``metadata_props``; every failure is a :class:`ModelLoadError`."""
    if _META_PREFIX + "format_version" not in props:
        raise ModelLoadError(
            f"{source} has no pgdeploy metadata; export it with 'pgdeploy export MODEL.pt'"
        )
    try:
        values = {
            key[len(_META_PREFIX) :]: _strict_json(text)
            for key, text in props.items()
            if key.startswith(_META_PREFIX)
        }
        version = values["format_version"]
        if version in READABLE_VERSIONS and version not in MODEL_FILE_VERSIONS:
            raise ModelLoadError(
                f"{source} has pgdeploy format version {version!r}, from an earlier pgdeploy; "
                f"re-export it with this version ('pgdeploy export model.pt' writes version "
                f"{FORMAT_VERSION})"
            )
        if version not in MODEL_FILE_VERSIONS:
            raise ModelLoadError(
                f"{source} has pgdeploy format version {ascii(version)[:40]}, expected one of "
                f"{list(MODEL_FILE_VERSIONS)}; "
                "re-export it with this version of pgdeploy or upgrade pgdeploy"
            )
        network, pair_id = values.get("network"), values.get("pair_id")
        if network is not None and not isinstance(network, Mapping):
            raise TypeError(f"network must be a JSON object, got {type(network).__name__}")
        if pair_id is not None and not is_pair_id(pair_id):
            raise ValueError(f"pair_id {ascii(pair_id)[:80]} is not 64 lowercase hex digits")
        return ModelMetadata(
            format_version=version,
            pgdeploy_version=str(values.get("pgdeploy_version", "unknown")),
            spec=PolicySpec.from_dict(values["spec"]),
            training=dict(values.get("training") or {}),
            network=None if network is None else dict(network),
            pair_id=pair_id,
        )
    except ModelLoadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ModelLoadError(
            f"{source} has malformed pgdeploy metadata ({type(exc).__name__}: {exc}); "
            "re-export it with 'pgdeploy export'"
        ) from exc
