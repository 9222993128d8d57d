"""Which policies the C target can represent: one check, run before any C is generated.

The generator emits clip -> (Linear -> ReLU)* -> Linear -> softmax over a flat float32
observation and one Discrete action space. Anything else a checkpoint may describe is
refused here, by name, with :class:`~pgdeploy.errors.UnsupportedExportError`, so a model
kind that the Python runtime learns to run never silently becomes wrong C.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pgdeploy.errors import UnsupportedExportError
from pgdeploy.export.c_source import CPlan
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
    }
)

_NEUTRAL: tuple[Any, ...] = (None, False, 0, "", "box", "discrete", (), [], {})


def check_c_supported(spec: PolicySpec, deployable: DeployablePolicy) -> CPlan:
    """The plan the C generator follows for this policy, or :class:`UnsupportedExportError`.

    Checks the spec (a field the generator does not know, set to anything but its
    neutral default, is refused) and the network (only Linear and ReLU layers).
    """
    problems = [*_spec_problems(spec), *_network_problems(deployable)]
    if problems:
        raise UnsupportedExportError(
            "the C target does not support this policy: "
            + "; ".join(problems)
            + ". Expected a flat Box observation, one Discrete action space and an MLP of "
            "Linear and ReLU layers; export it with the ONNX target instead "
            "(pgdeploy export MODEL.pt)"
        )
    return CPlan.plain(spec.obs_dim, spec.n_actions)


def _spec_problems(spec: PolicySpec) -> list[str]:
    fields: dict[str, Any] = spec.to_dict()
    plain = {
        # The layouts of structured observations and of action spaces: their plain forms
        # (a 1-D Box of obs_dim values; Discrete(n_actions) starting at 0) are what C does.
        "observation_space": {"type": "box", "shape": [spec.obs_dim]},
        "action_space": {"type": "discrete", "nvec": [spec.n_actions], "start": [0]},
    }
    return [
        f"spec field {name!r} = {value!r} is not implemented in C"
        for name, value in fields.items()
        if name not in SUPPORTED_SPEC_FIELDS
        and not _is_neutral(value)
        and not (name in plain and _same(value, plain[name]))
    ]


def _same(value: Any, plain: Any) -> bool:
    """JSON-like equality, lists and tuples alike."""
    if isinstance(value, dict) and isinstance(plain, dict):
        return value.keys() == plain.keys() and all(_same(value[k], plain[k]) for k in value)
    if isinstance(value, (list, tuple)) and isinstance(plain, (list, tuple)):
        return len(value) == len(plain) and all(map(_same, value, plain))
    return bool(type(value) is type(plain) and value == plain)


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
