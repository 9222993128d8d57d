"""The one description of a deployable policy's arithmetic: numbers only, no code.

Every producer (pgdeploy's trainer, the Stable-Baselines3 and CleanRL importers) turns
its weights into a :class:`PolicyNetwork`; every consumer (the ONNX graph builder, the
runtime's loader, the C generator) reads nothing else. The structure is fixed by the
spec and the few named choices below (activation, head, whether there is
normalisation); only the numbers are free. So a file can change what a policy computes
only within this family: an MLP over the encoded observation, then softmax heads.

The function, per observation row (continuous columns ``c``, categorical columns ``k``):

1. ``x = min(max(obs[c], clip_low), clip_high)``
2. if ``obs_mean`` is set: ``x = (x - obs_mean) / obs_std`` (float32, exactly this order);
   then if ``norm_clip`` is set: ``x = min(max(x, -norm_clip), norm_clip)``
3. features = ``[x, one_hot(obs[k])]`` (layout order, see :mod:`pgdeploy.layout`)
4. ``h = act(h @ W_i.T + b_i)`` for every layer but the last; ``logits = h @ W.T + b``
5. per action head: ``softmax`` (a stochastic policy), or ``argmax`` (a greedy Q-network
   such as DQN: probabilities one-hot on the first maximum)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ModelLoadError
from pgdeploy.spec import PolicySpec

#: Hidden-layer activations, by the name used in metadata, configs and the C generator.
#: ``leaky_relu`` uses :attr:`PolicyNetwork.activation_alpha` (torch's default 0.01);
#: ``elu`` uses alpha 1; ``gelu`` is the exact (erf) form; ``silu`` is ``x * sigmoid(x)``.
ACTIVATIONS = ("relu", "tanh", "elu", "leaky_relu", "silu", "gelu")
#: How logits become probabilities, per head.
HEADS = ("softmax", "argmax")

Array = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class PolicyNetwork:
    """The numbers of a policy, float32, in the order of the module docstring."""

    clip_low: Array  #: (n_continuous,)
    clip_high: Array  #: (n_continuous,)
    #: ((out, in) weight, (out,) bias) per Linear layer, first to last.
    layers: tuple[tuple[Array, Array], ...]
    obs_mean: Array | None = None  #: (n_continuous,) or None: no normalisation
    obs_std: Array | None = None  #: (n_continuous,), > 0; set exactly when obs_mean is
    norm_clip: float | None = None  #: clip of the normalised value (SB3's VecNormalize)
    activation: str = "relu"
    activation_alpha: float = 0.01  #: leaky_relu's negative slope
    head: str = "softmax"

    def description(self) -> dict[str, Any]:
        """The structural choices (no numbers but norm_clip/alpha), for file metadata."""
        return {
            "activation": self.activation,
            "activation_alpha": self.activation_alpha,
            "head": self.head,
            "normalized": self.obs_mean is not None,
            "norm_clip": self.norm_clip,
            "widths": [int(w.shape[0]) for w, _ in self.layers],
        }

    def check(self, spec: PolicySpec, *, source: str = "the policy") -> None:
        """Raise ModelLoadError unless the numbers fit ``spec`` and the family above."""
        n_cont = len(spec.obs_layout.continuous_columns)
        problems: list[str] = []
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation {self.activation!r} is not one of {list(ACTIVATIONS)}")
        if self.head not in HEADS:
            problems.append(f"head {self.head!r} is not one of {list(HEADS)}")
        if not math.isfinite(self.activation_alpha):
            problems.append("activation_alpha is not finite")
        if self.norm_clip is not None and not (
            math.isfinite(self.norm_clip) and self.norm_clip > 0
        ):
            problems.append(f"norm_clip must be a positive number, got {self.norm_clip}")
        if (self.obs_mean is None) != (self.obs_std is None):
            problems.append("obs_mean and obs_std must both be set or both be absent")
        if self.norm_clip is not None and self.obs_mean is None:
            problems.append("norm_clip needs obs_mean/obs_std")
        vectors = {"clip_low": self.clip_low, "clip_high": self.clip_high}
        if self.obs_mean is not None and self.obs_std is not None:
            vectors |= {"obs_mean": self.obs_mean, "obs_std": self.obs_std}
        for name, vector in vectors.items():  # (0,) when every column is one-hot encoded
            problems += _check_array(name, vector, (n_cont,), allow_empty=True)
        if self.obs_std is not None and not problems and not (self.obs_std > 0).all():
            problems.append("obs_std has a value <= 0")
        if not self.layers:
            problems.append("there are no layers")
        width = spec.obs_layout.n_features
        for i, (weight, bias) in enumerate(self.layers):
            out = weight.shape[0] if weight.ndim == 2 else -1
            problems += _check_array(f"layer {i} weight", weight, (out, width))
            problems += _check_array(f"layer {i} bias", bias, (out,))
            width = out
        if self.layers and width != spec.action_layout.n_logits:
            problems.append(
                f"the last layer has {width} outputs, the action space needs "
                f"{spec.action_layout.n_logits}"
            )
        if problems:
            raise ModelLoadError(f"{source} is not a pgdeploy policy: {problems[0]}")


def _check_array(
    name: str, value: Any, shape: Sequence[int], *, allow_empty: bool = False
) -> list[str]:
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
        return [f"{name} is not a float32 array"]
    if value.shape != tuple(shape) or (min(shape, default=1) < 1 and not allow_empty):
        return [f"{name} has shape {list(value.shape)}, expected {list(shape)}"]
    if not np.isfinite(value).all():
        return [f"{name} holds a NaN or infinite value"]
    return []


def description_from_metadata(value: Mapping[str, Any]) -> dict[str, Any]:
    """The checked structural choices of :meth:`PolicyNetwork.description`."""
    activation, head = value.get("activation"), value.get("head")
    if activation not in ACTIVATIONS or head not in HEADS:
        raise ValueError(f"unknown activation {activation!r} or head {head!r}")
    alpha, norm_clip = value.get("activation_alpha", 0.01), value.get("norm_clip")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"activation_alpha must be a finite number, got {alpha!r}")
    if norm_clip is not None and (
        isinstance(norm_clip, bool) or not isinstance(norm_clip, (int, float)) or norm_clip <= 0
    ):
        raise ValueError(f"norm_clip must be a positive number or null, got {norm_clip!r}")
    return {
        "activation": activation,
        "activation_alpha": float(alpha),
        "head": head,
        "normalized": bool(value.get("normalized")),
        "norm_clip": None if norm_clip is None else float(norm_clip),
    }
