"""Which policies the C target can represent: one check, run before any C is generated.

The generator emits :mod:`pgdeploy.runtime.network`'s function (encode -> dense layers
with a named activation -> softmax or argmax per action head) over the flat float32
observation row, for every observation layout and for Discrete and MultiDiscrete actions.
Anything else a spec or network may describe (a spec field, an activation or a head this
generator does not know, numbers that do not fit) is refused here, by name, with
:class:`~pgdeploy.errors.UnsupportedExportError`, so a model kind that the Python runtime
learns to run never silently becomes wrong C.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np

from pgdeploy import __version__
from pgdeploy.errors import ModelLoadError, UnsupportedExportError
from pgdeploy.export.c import templates
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import PolicySpec

#: Spec fields the C code implements (or that only describe the model, like its env id).
SUPPORTED_SPEC_FIELDS = frozenset(
    {
        "env_id",
        "obs_dim",
        "n_actions",
        "obs_low",
        "obs_high",
        "action_names",
        "reward_threshold",
        "max_episode_steps",
        "observation_space",  # every layout: clipped columns + one-hot (column, value)
        "action_space",  # Discrete or MultiDiscrete, any start: one head each
    }
)


@dataclasses.dataclass(frozen=True)
class CPlan:
    """How the raw observation row becomes the MLP's input, and how the logits split.

    The ``continuous_columns`` of the row are clipped (and normalised) and fed in that
    order, then one 0/1 feature per ``(onehot_columns[k], onehot_values[k])`` pair
    (``row[column] == value``). The logits split into action heads of ``head_sizes``; a
    head's action is its ``head_starts`` entry + the index.
    """

    obs_dim: int
    continuous_columns: tuple[int, ...]
    onehot_columns: tuple[int, ...] = ()
    onehot_values: tuple[float, ...] = ()
    head_sizes: tuple[int, ...] = ()
    head_starts: tuple[int, ...] = ()

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> CPlan:
        layout, actions = spec.obs_layout, spec.action_layout
        return cls(
            obs_dim=int(spec.obs_dim),
            continuous_columns=tuple(int(c) for c in layout.continuous_columns),
            onehot_columns=tuple(int(c) for c in layout.onehot_columns),
            onehot_values=tuple(float(v) for v in layout.onehot_values),
            head_sizes=tuple(int(n) for n in actions.nvec),
            head_starts=tuple(int(s) for s in actions.start),
        )

    @property
    def is_plain_obs(self) -> bool:
        return self.continuous_columns == tuple(range(self.obs_dim)) and not self.onehot_columns

    @property
    def n_features(self) -> int:
        return len(self.continuous_columns) + len(self.onehot_columns)


_NEUTRAL: tuple[Any, ...] = (None, False, 0, "", (), [], {})


def check_c_supported(spec: PolicySpec, network: PolicyNetwork) -> CPlan:
    """The plan the C generator follows for this policy, or :class:`UnsupportedExportError`.

    Checks the spec (a field the generator does not know, set to anything but its
    neutral default, is refused) and the network (:meth:`PolicyNetwork.check`, and an
    activation and head the generator has C for).
    """
    problems = _spec_problems(spec)
    try:
        _check_network(spec, network)
    except ModelLoadError as exc:
        problems.append(str(exc))
    if network.activation not in templates.ACTIVATIONS:
        problems.append(f"activation {network.activation!a} has no C form")
    if network.head not in templates.HEADS:
        problems.append(f"head {network.head!a} has no C form")
    if problems:
        raise UnsupportedExportError(
            "the C target does not support this policy: "
            + "; ".join(problems)
            + f". Expected the spec fields and networks that pgdeploy {__version__} writes; "
            "export it with the ONNX target instead (pgdeploy export MODEL.pt)"
        )
    return CPlan.from_spec(spec)


def _check_network(spec: PolicySpec, network: PolicyNetwork) -> None:
    """:meth:`PolicyNetwork.check`, which (as of this writing) refuses the empty clip
    vectors of an observation with no continuous column; those are checked here and the
    rest by ``check`` on a one-column stand-in of the same shape otherwise."""
    if spec.obs_layout.continuous_columns:
        network.check(spec, source="the network")
        return
    empty = np.zeros(0, np.float32)
    for name in ("clip_low", "clip_high"):
        value = getattr(network, name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != (0,):
            raise ModelLoadError(f"the network's {name} must be an empty float32 array")
    normalised = network.obs_mean is not None or network.obs_std is not None
    if normalised and not all(
        v is not None and np.array_equal(v, empty) for v in (network.obs_mean, network.obs_std)
    ):
        raise ModelLoadError("the network normalises columns the observation does not have")
    one = np.zeros(1, np.float32)
    stand_in = dataclasses.replace(
        network, clip_low=one, clip_high=one, obs_mean=None, obs_std=None, norm_clip=None
    )
    stand_in.check(_OneColumnSpec(spec), source="the network")  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class _OneColumnSpec:
    """What :meth:`PolicyNetwork.check` reads of a spec, with one continuous column."""

    spec: PolicySpec

    @property
    def obs_layout(self) -> Any:
        layout = self.spec.obs_layout
        return SimpleNamespace(continuous_columns=(0,), n_features=layout.n_features)

    @property
    def action_layout(self) -> Any:
        return self.spec.action_layout


def _spec_problems(spec: PolicySpec) -> list[str]:
    fields: dict[str, Any] = spec.to_dict()
    return [
        f"spec field {name!a} = {ascii(value)[:80]} is not implemented in C"
        for name, value in fields.items()
        if name not in SUPPORTED_SPEC_FIELDS and not _is_neutral(value)
    ]


def _is_neutral(value: Any) -> bool:
    return any(value is n or (type(value) is type(n) and value == n) for n in _NEUTRAL)
