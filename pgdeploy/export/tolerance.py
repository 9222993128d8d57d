"""The float32 tolerance of a policy, from its :class:`PolicyNetwork` alone (numpy float64).

How far two correct float32 evaluations of these weights on this observation may differ:
the same kind of bound for a trained and an imported policy, never a fixed constant.
:func:`logit_error_bound` bounds the logits (a rounding model, or rigorously for
near-ties of greedy heads), :func:`probability_tolerance` turns that into |dp| per
action, and :func:`near_ties` says which actions a greedy head may correctly pick.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import PolicySpec

#: Unit roundoff of float32 (half an ulp of 1.0).
FLOAT32_UNIT = 2.0**-24
#: Multiple of sqrt(fan-in) * unit roundoff allowed per layer (see :func:`logit_error_bound`).
ROUNDING_FACTOR = 1.0
#: Relative error allowed to one evaluation of a transcendental activation (tanh, ELU's
#: exp, SiLU's sigmoid, GELU's erf), in units of FLOAT32_UNIT; libm, onnxruntime and
#: torch stay within a few ulps.
ACTIVATION_ULPS = 8.0
#: Largest slope of each activation (its Lipschitz constant; leaky ReLU: max(1, alpha)).
LIPSCHITZ = {"relu": 1.0, "tanh": 1.0, "elu": 1.0, "silu": 1.0999, "gelu": 1.1290}


def network_features(
    spec: PolicySpec,
    network: PolicyNetwork,
    obs: npt.NDArray[np.float32],
    *,
    float64_statistics: bool = False,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(features, their float32 error bound), float64: clip, normalise, one-hot.

    Normalisation ``(x - mean) / std`` rounds twice; when the source normalises in float64
    (SB3's VecNormalize) the float32 ``mean`` and ``std`` add their own rounding.
    """
    layout = spec.obs_layout
    rows = np.asarray(obs, np.float64)
    x = rows[:, list(layout.continuous_columns)]
    x = np.minimum(np.maximum(x, network.clip_low), network.clip_high)
    error = np.zeros_like(x)
    if network.obs_mean is not None and network.obs_std is not None:
        mean, std = network.obs_mean.astype(np.float64), network.obs_std.astype(np.float64)
        raw = x
        x = (raw - mean) / std
        error = 2 * FLOAT32_UNIT * np.abs(x)
        if float64_statistics:
            error += FLOAT32_UNIT * (np.abs(x) + (np.abs(raw) + np.abs(mean)) / std)
        if network.norm_clip is not None:
            x = np.clip(x, -network.norm_clip, network.norm_clip)
    onehot = rows[:, list(layout.onehot_columns)] == np.asarray(layout.onehot_values)
    features = np.concatenate([x, onehot.astype(np.float64)], axis=1)
    errors = np.concatenate([error, np.zeros(onehot.shape)], axis=1)
    return features, errors


def logit_error_bound(
    spec: PolicySpec,
    network: PolicyNetwork,
    obs: npt.NDArray[np.float32],
    *,
    rigorous: bool = False,
    float64_statistics: bool = False,
) -> npt.NDArray[np.float64]:
    """Per observation and logit, how far two correct float32 evaluations may differ.

    A layer ``y = W x + b`` with fan-in ``k`` evaluated in float32 is off by at most
    ``gamma_k * (|W| |x| + |b|)``, and an input error ``e`` reaches the output as
    ``|W| e``; an activation multiplies errors by at most its slope and, when it is
    transcendental, adds a few ulps of its input's magnitude (|act(z)| <= |z| for every
    supported activation). Rigorously ``gamma_k = k u / (1 - k u)`` (Higham), used with
    ``rigorous=True`` (near-ties of greedy heads); rounding errors behave like independent
    random variables, so ``sqrt(k) u`` times a small constant (Higham & Mary, 2019) is
    what real evaluations stay within, and that bounds probabilities
    (``ROUNDING_FACTOR * sqrt(k + 2) * u``; the +2 covers the normalisation). The
    recursion runs in float64 on the magnitudes of the network's own activations, so the
    bound scales with the observation, the weights and the fan-in. Both sides (the
    source, the exported form) contribute, hence the factor 2.
    """
    x, error = network_features(spec, network, obs, float64_statistics=float64_statistics)
    x = np.abs(x)
    slope = LIPSCHITZ.get(network.activation, max(1.0, abs(network.activation_alpha)))
    exact = network.activation in ("relu", "leaky_relu")
    last = len(network.layers) - 1
    for i, (weight, bias) in enumerate(network.layers):
        w = np.abs(weight.astype(np.float64))
        k = w.shape[1]
        if rigorous:
            gamma = (k + 2) * FLOAT32_UNIT / (1 - (k + 2) * FLOAT32_UNIT)
        else:
            gamma = ROUNDING_FACTOR * math.sqrt(k + 2) * FLOAT32_UNIT
        magnitude = x @ w.T + np.abs(bias.astype(np.float64))
        error = error @ w.T + gamma * magnitude
        if i < last:
            rounding = FLOAT32_UNIT if exact else ACTIVATION_ULPS * FLOAT32_UNIT
            error = slope * error + rounding * (magnitude + 1.0 - exact)
            x = slope * magnitude if network.activation == "leaky_relu" else magnitude
    return 2 * error


def network_logits(
    spec: PolicySpec, network: PolicyNetwork, obs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """The network's logits in float64 (the exact function, up to float64 rounding)."""
    features, _ = network_features(spec, network, obs)
    h = torch.from_numpy(features)
    last = len(network.layers) - 1
    for i, (weight, bias) in enumerate(network.layers):
        h = h @ torch.from_numpy(weight).double().T + torch.from_numpy(bias).double()
        if i < last:
            h = activate(network.activation, network.activation_alpha, h)
    return h.numpy()


def activate(name: str, alpha: float, z: torch.Tensor) -> torch.Tensor:
    """``name``'s activation on a tensor of any float dtype (torch's own functions)."""
    fn = torch.nn.functional
    if name == "relu":
        return fn.relu(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "elu":
        return fn.elu(z)
    if name == "leaky_relu":
        return fn.leaky_relu(z, alpha)
    if name == "silu":
        return fn.silu(z)
    return fn.gelu(z)


def near_ties(
    logits: npt.NDArray[np.float64], bound: npt.NDArray[np.float64], nvec: list[int]
) -> npt.NDArray[np.bool_]:
    """(n, n_actions): actions a correct float32 evaluation may pick as its argmax, the
    head's maximum and any action whose logit plus its bound reaches the maximum's minus
    the maximum's bound."""
    out = np.zeros(logits.shape, bool)
    offset = 0
    for n in nvec:
        z, b = logits[:, offset : offset + n], bound[:, offset : offset + n]
        top = z.argmax(axis=1)
        rows = np.arange(len(z))
        floor = z[rows, top] - b[rows, top]
        out[:, offset : offset + n] = z + b >= floor[:, None]
        offset += n
    return out


def probability_tolerance(
    probs: npt.NDArray[np.float32],
    logit_bound: npt.NDArray[np.float64],
    nvec: list[int],
    atol: float,
) -> npt.NDArray[np.float64]:
    """Per observation and action, the largest |dp| logit errors of ``logit_bound`` allow.

    For p = softmax(z) and |dz| <= d (the largest bound of the head),
    |dp_i| <= p_i (exp(2 d) - 1); the softmax itself adds ~(A + 4) u relative error for A
    actions. ``atol`` is an absolute floor (float noise on tiny probabilities).
    """
    p = probs.astype(np.float64)
    tol = np.empty_like(p)
    offset = 0
    for n in nvec:
        head = slice(offset, offset + n)
        d = logit_bound[:, head].max(axis=1, keepdims=True)
        # A huge bound allows any |dp| <= 1, no more; 0 * inf (an overflowing bound on a
        # zero probability) is NaN, which fails the comparison.
        with np.errstate(over="ignore", invalid="ignore"):
            tol[:, head] = p[:, head] * (np.expm1(2 * d) + (n + 4) * FLOAT32_UNIT)
        offset += n
    return np.minimum(tol + atol, 1.0)
