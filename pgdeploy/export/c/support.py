"""Which policies the C target can represent: one check, run before any C is generated.

The generator emits encode -> (Linear -> ReLU)* -> Linear -> softmax per action head over
the flat float32 observation row, for every observation layout and for Discrete and
MultiDiscrete actions. Anything else a checkpoint may describe (a spec field or a layer
this generator does not know) is refused here, by name, with
:class:`~pgdeploy.errors.UnsupportedExportError`, so a model kind that the Python runtime
learns to run never silently becomes wrong C.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pgdeploy import __version__
from pgdeploy.errors import UnsupportedExportError
from pgdeploy.export.c.source import CPlan
from pgdeploy.spec import PolicySpec
from pgdeploy.training.policy import DeployablePolicy

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
        "action_space",  # Discrete or MultiDiscrete, any start: one softmax per head
    }
)

_NEUTRAL: tuple[Any, ...] = (None, False, 0, "", (), [], {})


def check_c_supported(spec: PolicySpec, deployable: DeployablePolicy) -> CPlan:
    """The plan the C generator follows for this policy, or :class:`UnsupportedExportError`.

    Checks the spec (a field the generator does not know, set to anything but its
    neutral default, is refused) and the network (only Linear and ReLU layers). Every
    observation layout is supported (continuous columns clipped, categorical ones one-hot
    encoded, as in the graph), and so are Discrete and MultiDiscrete actions with starts.
    """
    problems = [*_spec_problems(spec), *_network_problems(deployable)]
    if problems:
        raise UnsupportedExportError(
            "the C target does not support this policy: "
            + "; ".join(problems)
            + ". Expected the spec fields and an MLP of Linear and ReLU layers that "
            f"pgdeploy {__version__} writes; export it with the ONNX target instead "
            "(pgdeploy export MODEL.pt)"
        )
    layout, actions = spec.obs_layout, spec.action_layout
    return CPlan(
        obs_dim=spec.obs_dim,
        continuous_columns=tuple(layout.continuous_columns),
        onehot_columns=tuple(layout.onehot_columns),
        onehot_values=tuple(float(v) for v in layout.onehot_values),
        head_sizes=tuple(actions.nvec),
        head_starts=tuple(actions.start),
    )


def _spec_problems(spec: PolicySpec) -> list[str]:
    fields: dict[str, Any] = spec.to_dict()
    return [
        f"spec field {name!r} = {value!r} is not implemented in C"
        for name, value in fields.items()
        if name not in SUPPORTED_SPEC_FIELDS and not _is_neutral(value)
    ]


def _network_problems(deployable: DeployablePolicy) -> list[str]:
    layers = list(deployable.net)
    problems = [
        f"layer {i} is {type(layer).__name__} (only Linear and ReLU are generated)"
        for i, layer in enumerate(layers)
        if not isinstance(layer, (nn.Linear, nn.ReLU))
    ]
    if not layers or not isinstance(layers[-1], nn.Linear):
        problems.append("the network must end with a Linear layer (the logits)")
    return problems


def _is_neutral(value: Any) -> bool:
    return any(value is n or (type(value) is type(n) and value == n) for n in _NEUTRAL)
