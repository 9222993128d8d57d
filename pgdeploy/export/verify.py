"""Verification of an exported file against its source's float policy, with a grounded bound.

The reference is the source's own float computation (a trained policy's PyTorch forward
pass; for an imported file, the PyTorch rebuild of the source library's actor). The
tolerance is derived from the :class:`~pgdeploy.runtime.network.PolicyNetwork` alone, in
numpy float64 (:func:`logit_error_bound`), so a trained and an imported policy are held to
the same kind of check: how far two correct float32 evaluations of these weights on this
observation may differ, never a fixed constant.

Greedy (``argmax``) heads, DQN's, have one-hot probabilities: the greedy action must
equal the reference's exactly, except on a near-tie, a row where another action's Q
value lies within the rigorous worst-case float32 error of the maximum (both bounds
overlapping, :func:`near_ties`). There either action is a correct float32 answer, so the
export's choice is accepted when it is one of those tied actions, and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.errors import ExportVerificationError
from pgdeploy.export.reference import GraphFn, TorchAgent
from pgdeploy.runtime.agent import Agent
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import OUTPUT_NAMES, PolicySpec

Outputs = tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]
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


@dataclass(frozen=True)
class FormatCheck:
    """How one exported file compared with the source's float policy."""

    format: str
    path: Path
    max_abs_diff: float
    #: Largest |dp| / tolerance over all probabilities: <= 1 passes.
    max_tolerance_ratio: float
    greedy_mismatches: int
    sampled_mismatches: int
    n_observations: int
    #: argmax heads: rows whose greedy action differed within the float32 bound of a tie.
    near_ties: int = 0

    @property
    def passed_actions(self) -> bool:
        return self.greedy_mismatches == 0 and self.sampled_mismatches == 0

    @property
    def passed(self) -> bool:
        return self.max_tolerance_ratio <= 1.0 and self.passed_actions

    def render(self, what: str, n_random: int, n_on_policy: int, against: str = "") -> str:
        """One line: ``what`` verified on how many observations (``against`` what), and how
        closely."""
        ties = f", {self.near_ties} argmax near-ties" if self.near_ties else ""
        against = f" against {against}" if against else ""
        return (
            f"{self.format}: {what} verified on {self.n_observations} observations "
            f"({n_random} random, {n_on_policy} on-policy){against}: max |dp| = "
            f"{self.max_abs_diff:.2e} ({self.max_tolerance_ratio:.2g}x its float32 "
            f"tolerance), action mismatches: {self.greedy_mismatches} greedy, "
            f"{self.sampled_mismatches} sampled{ties}"
        )


@dataclass(frozen=True)
class Reference:
    """What every exported form is compared with: the source's outputs on the verification
    observations, the uniforms they used, the per-element tolerance, and for argmax heads
    which actions are within float32 reach of the maximum."""

    obs: npt.NDArray[np.float32]
    uniforms: npt.NDArray[np.float32]  #: (n, heads)
    outputs: Outputs  #: probs (n, n_actions), greedy and sampled ((n,) or (n, heads))
    tolerance: npt.NDArray[np.float64]  #: (n, n_actions)
    admissible: npt.NDArray[np.bool_] | None = None  #: argmax heads: (n, n_actions)
    describe: str = "the PyTorch policy"


def reference_outputs(
    spec: PolicySpec,
    network: PolicyNetwork,
    probs: npt.NDArray[np.float32],
    obs: npt.NDArray[np.float32],
    *,
    seed: int,
    atol: float,
    float64_statistics: bool = False,
    describe: str = "the PyTorch policy",
) -> Reference:
    """The reference for ``probs`` (the source's own on ``obs``); a source whose own
    probabilities are not finite is refused here, before any form is built."""
    bad_rows = int((~np.isfinite(probs)).any(axis=1).sum())
    if bad_rows:
        raise ExportVerificationError(
            f"{describe}'s probabilities are not finite on {bad_rows} of {len(obs)} "
            "verification observations (its weights overflow float32); nothing was written"
        )
    heads = spec.action_layout.n_branches
    uniforms = np.random.default_rng(seed).random((len(obs), heads), dtype=np.float32)
    outputs = actions_from_probs(spec, probs, uniforms)
    bound = logit_error_bound(spec, network, obs, float64_statistics=float64_statistics)
    nvec = list(spec.action_layout.nvec)
    tolerance = probability_tolerance(probs, bound, nvec, atol)
    admissible = None
    if network.head == "argmax":
        rigorous = logit_error_bound(
            spec, network, obs, rigorous=True, float64_statistics=float64_statistics
        )
        admissible = near_ties(network_logits(spec, network, obs), rigorous, nvec)
    return Reference(obs, uniforms, outputs, tolerance, admissible, describe)


def actions_from_probs(
    spec: PolicySpec, probs: npt.NDArray[np.float32], uniforms: npt.NDArray[np.float32]
) -> Outputs:
    """(probs, greedy, sampled) by the runtime's contract: per head the first maximum and the
    inverse-CDF sample of its uniform, the head's start added; (n,) for one head."""
    layout = spec.action_layout
    greedy, sampled, offset = [], [], 0
    for index, (size, start) in enumerate(zip(layout.nvec, layout.start, strict=True)):
        chunk = probs[:, offset : offset + size]
        greedy.append(chunk.argmax(axis=1).astype(np.int64) + start)
        sampled.append(inverse_cdf(chunk, uniforms[:, index]) + start)
        offset += size
    if len(greedy) == 1:
        return probs, greedy[0], sampled[0]
    return probs, np.stack(greedy, axis=1), np.stack(sampled, axis=1)


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


def require_passed(
    check: FormatCheck, *, atol: float, folder: Path, reference: str = "the PyTorch policy"
) -> FormatCheck:
    """``check`` when it passed, else the error saying how far the file is from the source."""
    if check.passed:  # NaN fails too: the ratio comparison is "<= 1.0"
        return check
    raise ExportVerificationError(
        f"{check.format} export differs from {reference}: max |dp| = "
        f"{check.max_abs_diff:.3g}, {check.max_tolerance_ratio:.3g}x the float32 "
        f"tolerance (atol floor {atol:.3g}), "
        f"{check.greedy_mismatches} greedy and {check.sampled_mismatches} sampled "
        f"action mismatches over {check.n_observations} observations; nothing was written "
        f"({folder} was left as it was)"
    )


def run_form(graph: GraphFn | Agent, spec: PolicySpec, reference: Reference) -> Outputs:
    """An exported form's (probs, greedy, sampled) on the reference's observations."""
    if isinstance(graph, Agent):
        out = graph.run_graph(reference.obs, reference.uniforms)
        return tuple(out[name] for name in OUTPUT_NAMES)  # type: ignore[return-value]
    return TorchAgent(graph, spec).run_graph(reference.obs, reference.uniforms)


def compare(
    fmt: str, path: Path, graph: GraphFn | Agent, spec: PolicySpec, reference: Reference
) -> FormatCheck:
    """Compare probs with the per-element tolerance, and greedy and sampled actions;
    decisions within the tolerance of a tie are not mismatches (argmax heads: see
    :func:`resolve_near_ties`)."""
    probs, greedy, sampled = run_form(graph, spec, reference)
    (ref_probs, ref_greedy, ref_sampled), ties = resolve_near_ties(spec, reference, greedy)
    abs_diff = np.abs(probs.astype(np.float64) - ref_probs)
    n = len(reference.obs)
    nvec = list(spec.action_layout.nvec)
    greedy_bad = np.zeros(n, bool)
    sampled_bad = np.zeros(n, bool)
    offset = 0
    for index, size in enumerate(nvec):
        head = slice(offset, offset + size)
        p, tol = ref_probs[:, head], reference.tolerance[:, head]
        margin = 2 * tol.sum(axis=1) + 4e-7  # a decision this close to a boundary may flip
        top2 = np.sort(p, axis=1)[:, -2:]
        clear_greedy = (top2[:, 1] - top2[:, 0]) > margin
        cdf = np.cumsum(p[:, :-1], axis=1)
        u = reference.uniforms[:, index : index + 1]
        clear_sample = (np.abs(cdf - u) > margin[:, None]).all(axis=1)
        g, rg = _head(greedy, n, index), _head(ref_greedy, n, index)
        s_, rs = _head(sampled, n, index), _head(ref_sampled, n, index)
        greedy_bad |= (g != rg) & clear_greedy
        sampled_bad |= (s_ != rs) & clear_sample
        offset += size
    return FormatCheck(
        format=fmt,
        path=path,
        max_abs_diff=float(abs_diff.max()),
        max_tolerance_ratio=float((abs_diff / reference.tolerance).max()),
        greedy_mismatches=int(greedy_bad.sum()),
        sampled_mismatches=int(sampled_bad.sum()),
        n_observations=n,
        near_ties=ties,
    )


def resolve_near_ties(
    spec: PolicySpec, reference: Reference, greedy: npt.NDArray[np.int64]
) -> tuple[Outputs, int]:
    """The reference outputs to hold a form with greedy actions ``greedy`` to, and how many
    rows were near-ties it resolved otherwise.

    On an argmax head, where the form's greedy action differs from the reference's but is
    admissible (:func:`near_ties`), the form's action is an equally correct float32
    answer: that row's expected one-hot, greedy and sampled action become the form's.
    Anywhere else the reference stands, so every other difference is a mismatch.
    """
    if reference.admissible is None:
        return reference.outputs, 0
    probs, ref_greedy, ref_sampled = (np.array(a, copy=True) for a in reference.outputs)
    layout = spec.action_layout
    n = len(probs)
    rows = np.arange(n)
    resolved = np.zeros(n, bool)
    offset = 0
    for index, (size, start) in enumerate(zip(layout.nvec, layout.start, strict=True)):
        got = _head(greedy, n, index) - start
        want = _head(ref_greedy, n, index) - start
        inside = (got >= 0) & (got < size)
        ok = inside & (got != want)
        ok[ok] = reference.admissible[rows[ok], offset + got[ok]]
        probs[ok, offset : offset + size] = 0.0
        probs[rows[ok], offset + got[ok]] = 1.0
        for actions in (ref_greedy, ref_sampled):
            if actions.ndim == 1:
                actions[ok] = got[ok] + start
            else:
                actions[ok, index] = got[ok] + start
        resolved |= ok
        offset += size
    return (probs, ref_greedy, ref_sampled), int(resolved.sum())


def _head(actions: npt.NDArray[Any], n: int, index: int) -> npt.NDArray[np.int64]:
    return np.asarray(actions).reshape(n, -1)[:, index].astype(np.int64)
