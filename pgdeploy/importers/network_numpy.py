"""The function of :mod:`pgdeploy.runtime.network`'s docstring, in numpy (float32).

The importers hold every :class:`PolicyNetwork` they build to the source library's own
outputs through this, before any graph exists; it is the formula, step by step.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import PolicySpec

F32 = npt.NDArray[np.float32]


def activate(x: F32, name: str, alpha: float = 0.01) -> F32:
    out: F32
    if name == "relu":
        out = np.maximum(x, np.float32(0))
    elif name == "tanh":
        out = np.tanh(x)
    elif name == "elu":
        out = np.where(x > 0, x, np.expm1(x))
    elif name == "leaky_relu":
        out = np.where(x > 0, x, x * np.float32(alpha))
    elif name == "silu":
        out = x / (np.float32(1) + np.exp(-x))
    elif name == "gelu":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        out = 0.5 * x * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0)))
    else:
        raise ValueError(f"unknown activation {name!r}")
    return out.astype(np.float32)


def network_probs(spec: PolicySpec, network: PolicyNetwork, obs: npt.ArrayLike) -> F32:
    """Probabilities (n, n_actions), heads concatenated, for raw rows ``obs`` (n, obs_dim)."""
    rows = np.asarray(obs, dtype=np.float32).reshape(-1, spec.obs_dim)
    layout = spec.obs_layout
    x = rows[:, list(layout.continuous_columns)]
    x = np.minimum(np.maximum(x, network.clip_low), network.clip_high)
    if network.obs_mean is not None and network.obs_std is not None:
        x = (x - network.obs_mean) / network.obs_std
        if network.norm_clip is not None:
            c = np.float32(network.norm_clip)
            x = np.minimum(np.maximum(x, -c), c)
    cat = rows[:, list(layout.onehot_columns)]
    onehot = (cat == np.asarray(layout.onehot_values, dtype=np.float32)).astype(np.float32)
    h = np.concatenate([x, onehot], axis=1).astype(np.float32)
    for i, (weight, bias) in enumerate(network.layers):
        h = (h @ weight.T + bias).astype(np.float32)
        if i < len(network.layers) - 1:
            h = activate(h, network.activation, network.activation_alpha)
    heads = []
    offset = 0
    for n in spec.action_layout.nvec:
        logits = h[:, offset : offset + n]
        offset += n
        if network.head == "argmax":
            probs = np.zeros_like(logits)
            probs[np.arange(len(logits)), logits.argmax(axis=1)] = 1
        else:
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = z / z.sum(axis=1, keepdims=True)
        heads.append(probs.astype(np.float32))
    return np.concatenate(heads, axis=1)
