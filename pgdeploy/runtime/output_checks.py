"""What a policy graph outputs, checked: on a probe batch at load, and cheaply at run time.

A graph can lie: ``Add(sampled_action, 97)``, probabilities ``2p - 0.5`` that are
negative yet sum to 1, constant outputs that ignore the batch, or weights that overflow
to NaN for half the observation space. At load, a probe batch spanning the observation
bounds must give finite, non-negative probabilities summing to 1, greedy actions that
are the argmax, sampled actions that follow the inverse-CDF contract, and one output
row per input row (batch 1 and batch 10). At run time the agent checks every returned
action against ``n_actions`` and the probability row for NaN (a truthful graph whose
logits overflow gives an all-NaN softmax row, whose sampled action would be 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ModelSpecError, PolicyOutputError
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import PolicySpec

#: Magnitude probed along dimensions the spec leaves unbounded.
PROBE_UNBOUNDED = 100.0
#: Probe rows: zeros, low, high, middle, +-1, four random points inside the bounds.
PROBE_ROWS = 10
#: Decisions closer than this to a tie or a CDF step are not held to the contract.
_MARGIN = 1e-5


def probe_observations(spec: PolicySpec) -> npt.NDArray[np.float32]:
    """``PROBE_ROWS`` float32 observations spanning the bounds (seeded, so loads repeat)."""
    low = np.asarray(spec.obs_low, np.float64)
    high = np.asarray(spec.obs_high, np.float64)
    finite_low, finite_high = np.isfinite(low), np.isfinite(high)
    with np.errstate(invalid="ignore"):
        lo = np.where(
            finite_low, low, np.where(finite_high, np.minimum(high, 0), 0) - PROBE_UNBOUNDED
        )
        hi = np.where(
            finite_high, high, np.where(finite_low, np.maximum(low, 0), 0) + PROBE_UNBOUNDED
        )
    rng = np.random.default_rng(0)
    rows = [np.zeros_like(lo), lo, hi, (lo + hi) / 2, np.ones_like(lo), -np.ones_like(lo)]
    rows += [rng.uniform(lo, hi) for _ in range(PROBE_ROWS - len(rows))]
    layout = getattr(spec, "obs_layout", None)
    for column, (first, last) in (layout.categorical_bounds() if layout else {}).items():
        rows = [r.copy() for r in rows]  # categorical columns hold integer values
        for row in rows:
            row[column] = min(max(round(float(row[column])), first), last)
    big = float(np.finfo(np.float32).max)
    probe: npt.NDArray[np.float64] = np.clip(
        np.stack(rows), np.maximum(lo, -big), np.minimum(hi, big)
    )
    return probe.astype(np.float32)


#: (start, size) of each action head: one for Discrete, one per component for MultiDiscrete.
Heads = tuple[tuple[int, int], ...]


def action_heads(spec: PolicySpec) -> Heads:
    """The spec's action heads; a spec without an action layout is ``Discrete(n_actions)``.

    Read through ``getattr`` so these checks follow an action layout (``start``,
    MultiDiscrete ``nvec``) wherever the spec carries one.
    """
    layout = getattr(spec, "action_layout", None)
    if layout is None:
        return ((0, spec.n_actions),)
    return tuple((int(a), int(n)) for a, n in zip(layout.start, layout.nvec, strict=True))


def multi_head(spec: PolicySpec) -> bool:
    """Whether actions have a column per head (MultiDiscrete) rather than one value."""
    return bool(getattr(getattr(spec, "action_layout", None), "multi", False))


def probe_uniforms(n: int, heads: int = 1) -> npt.NDArray[np.float32]:
    """``(n, heads)`` uniforms spread over [0, 1), shuffled so every row meets a different one."""
    values = np.linspace(0.0, 0.999, n * heads, dtype=np.float32)
    return np.random.default_rng(1).permutation(values).reshape(n, heads)


def check_probe_outputs(
    outputs: list[Any],
    uniforms: npt.NDArray[np.float32],
    spec: PolicySpec,
    *,
    source: str,
) -> None:
    """Raise ModelSpecError unless the three outputs keep the graph's contract, head by head."""
    heads, multi = action_heads(spec), multi_head(spec)
    n, n_actions = len(uniforms), sum(size for _, size in heads)
    action_shape = (n, len(heads)) if multi else (n,)
    expected = (((n, n_actions), np.float32), (action_shape, np.int64), (action_shape, np.int64))
    names = ("probs", "greedy_action", "sampled_action")
    for name, (shape, dtype), value in zip(names, expected, outputs, strict=True):
        if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
            got = f"{value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray) else value
            raise ModelSpecError(
                f"{source}: output {name!r} is {got} for a batch of {n}, expected "
                f"{np.dtype(dtype)}{list(shape)} ({n_actions} actions per its metadata)"
            )
    probs, greedy, sampled = outputs
    if not np.isfinite(probs).all():
        raise ModelSpecError(f"{source}: output 'probs' is not finite on a probe observation")
    offset = 0
    for h, (start, size) in enumerate(heads):
        columns = (slice(None), h) if multi else (slice(None),)
        _check_head(
            probs[:, offset : offset + size],
            greedy[columns] - start,
            sampled[columns] - start,
            uniforms[:, h : h + 1],
            start,
            source,
        )
        offset += size


def _check_head(
    probs: npt.NDArray[np.float32],
    greedy: npt.NDArray[np.int64],
    sampled: npt.NDArray[np.int64],
    uniforms: npt.NDArray[np.float32],
    start: int,
    source: str,
) -> None:
    """One head: a distribution per row, actions (less ``start``) in range and per contract."""
    size = probs.shape[1]
    tolerance = 1e-4 + 1e-6 * size
    if (probs < 0).any() or not (np.abs(probs.sum(axis=1) - 1.0) <= tolerance).all():
        raise ModelSpecError(
            f"{source}: output 'probs' is not a probability distribution on a probe "
            "observation (negative, or rows not summing to 1)"
        )
    for name, actions in (("greedy_action", greedy), ("sampled_action", sampled)):
        bad = (actions < 0) | (actions >= size)
        if bad.any():
            raise ModelSpecError(
                f"{source}: output {name!r} gave action {int(actions[bad][0]) + start} on a "
                f"probe observation, expected {start}..{start + size - 1}"
            )
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > _MARGIN
    if (greedy != probs.argmax(axis=1))[clear].any():
        raise ModelSpecError(f"{source}: output 'greedy_action' is not the argmax of 'probs'")
    cdf = np.cumsum(probs[:, :-1], axis=1)
    clear = (np.abs(cdf - uniforms) > _MARGIN).all(axis=1)
    if (sampled != inverse_cdf(probs, uniforms))[clear].any():
        raise ModelSpecError(
            f"{source}: output 'sampled_action' does not follow the inverse-CDF contract"
        )


def bad_action_error(action: Any, probs: npt.NDArray[np.float32], heads: Heads) -> Exception:
    """The error for a run-time output that must not become an action."""
    if np.isnan(probs).any():
        return PolicyOutputError(
            "the policy's probabilities are NaN for this observation (its activations "
            "overflow float32), so no action is returned; check the observation's scale "
            "or retrain with normalize_obs=True"
        )
    expected = ", ".join(f"{start}..{start + size - 1}" for start, size in heads)
    return PolicyOutputError(
        f"the policy returned action {action}, expected {expected}; "
        "the model file does not keep its own contract"
    )


def check_batch_outputs(
    actions: npt.NDArray[np.int64], probs: npt.NDArray[np.float32], heads: Heads
) -> None:
    """Run-time check of a batch: every action in range, no NaN probability row.

    Two reductions: a NaN anywhere makes the sum NaN; viewed as uint64, an action below
    its head's start is huge, so one max per head catches both ends of the range.
    """
    starts = np.asarray([a for a, _ in heads], np.int64)
    sizes = np.asarray([n for _, n in heads], np.uint64)
    if len(heads) == 1:
        shifted = actions - starts[0] if heads[0][0] else actions
        if shifted.view(np.uint64).max() < sizes[0] and not np.isnan(probs.sum()):
            return
        bad = shifted.view(np.uint64) >= sizes[0]
    else:
        outside = (actions - starts).view(np.uint64) >= sizes
        if not outside.any() and not np.isnan(probs.sum()):
            return
        bad = outside.any(axis=1)
    row = int(np.argmax(bad | np.isnan(probs).any(axis=1)))
    raise bad_action_error(actions[row], probs[row], heads)
