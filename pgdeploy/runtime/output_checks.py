"""The run-time checks of a policy's outputs, and the one mapping of engine errors.

The graph is pgdeploy's own (:mod:`pgdeploy.runtime.policy_graph`), so its outputs have
the contract's shapes and dtypes and its actions follow from its probabilities by
construction. What weights can still do is overflow float32: logits of +-inf give NaN
probabilities (in some heads, or all), and the sampled action of a NaN row means
nothing. So every path (``act``, ``act_batch``, ``probs``) refuses a NaN anywhere in a
probability row and an action outside its head's range, and turns any onnxruntime
failure into a :class:`~pgdeploy.errors.PolicyOutputError`, through the functions here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import PolicyOutputError
from pgdeploy.spec import PolicySpec

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


def check_probs(probs: npt.NDArray[np.float32], heads: Heads) -> None:
    """Refuse probabilities (n, n_actions) with a NaN anywhere (the ``probs`` path)."""
    if np.isnan(probs.sum()):
        row = int(np.argmax(np.isnan(probs).any(axis=1)))
        raise bad_action_error(0, probs[row], heads)


def engine_error(exc: BaseException, rows: int) -> PolicyOutputError:
    """The typed error for an exception onnxruntime raised while running the graph."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return PolicyOutputError(f"onnxruntime failed on a batch of {rows}: {first}")
