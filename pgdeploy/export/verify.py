"""Verification of an exported file against its source's float policy, with a grounded bound.

The reference is the source's own float computation (a trained policy's PyTorch forward
pass; for an imported file, the PyTorch rebuild of the source library's actor). The
tolerance is derived from the :class:`~pgdeploy.runtime.network.PolicyNetwork` alone, in
numpy float64 (:mod:`pgdeploy.export.tolerance`), so a trained and an imported policy are held to
the same kind of check: how far two correct float32 evaluations of these weights on this
observation may differ, never a fixed constant.

Greedy (``argmax``) heads, DQN's, have one-hot probabilities: the greedy action must
equal the reference's exactly, except on a near-tie, a row where another action's Q
value lies within the rigorous worst-case float32 error of the maximum (both bounds
overlapping, :func:`~pgdeploy.export.tolerance.near_ties`). There either action is a
correct float32 answer, so the export's choice is accepted when it is one of those tied
actions, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ExportVerificationError
from pgdeploy.export.reference import GraphFn, TorchAgent
from pgdeploy.export.tolerance import (
    logit_error_bound,
    near_ties,
    network_logits,
    probability_tolerance,
)
from pgdeploy.runtime.agent import Agent
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import OUTPUT_NAMES, PolicySpec

Outputs = tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]


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
