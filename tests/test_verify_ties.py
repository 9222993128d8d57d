"""Greedy (argmax) heads: actions must match exactly, except within float32 reach of a tie.

DQN is exported as one-hot probabilities on argmax Q. Two correct float32 evaluations of
the same Q-network may pick different actions only when the Q values lie within their
rounding error of each other; :func:`pgdeploy.export.verify.near_ties` bounds that error
rigorously, and :func:`~pgdeploy.export.verify.compare` accepts a different action there
and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pgdeploy.export.tolerance import logit_error_bound, near_ties, network_logits
from pgdeploy.export.verify import compare, reference_outputs
from pgdeploy.importers.network_numpy import network_probs
from pgdeploy.runtime.network import ACTIVATIONS, PolicyNetwork
from pgdeploy.spec import PolicySpec

SPEC = PolicySpec("Ties-v0", 4, 3, obs_low=(-np.inf,) * 4, obs_high=(np.inf,) * 4)


def _network(bias_gap: float, seed: int = 0, activation: str = "relu") -> PolicyNetwork:
    """A 4-16-3 Q-network whose actions 0 and 1 have the same weights and biases ``gap``
    apart (0 ahead), action 2 far behind."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 1, (16, 4)).astype(np.float32)
    row = rng.normal(0, 1, 16).astype(np.float32)
    w1 = np.stack([row, row, row]).astype(np.float32)
    b1 = np.asarray([bias_gap, 0.0, -100.0], np.float32)
    inf = np.full(4, np.finfo(np.float32).max, np.float32)
    return PolicyNetwork(
        clip_low=-inf,
        clip_high=inf,
        layers=((w0, np.zeros(16, np.float32)), (w1, b1)),
        activation=activation,
        head="argmax",
    )


def _picks(action: int):  # type: ignore[no-untyped-def]
    """A stand-in exported form whose greedy (and sampled) action is always ``action``."""

    def graph(obs: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(obs)
        probs = torch.zeros(n, 3)
        probs[:, action] = 1.0
        actions = torch.full((n,), action, dtype=torch.int64)
        return probs, actions, actions

    return graph


def _check(network: PolicyNetwork, form: int, n: int = 256):  # type: ignore[no-untyped-def]
    obs = np.random.default_rng(1).normal(0, 1, (n, 4)).astype(np.float32)
    probs = network_probs(SPEC, network, obs)
    reference = reference_outputs(SPEC, network, probs, obs, seed=0, atol=1e-9)
    return compare("onnx", Path("model.onnx"), _picks(form), SPEC, reference)


def test_the_other_action_of_an_exact_tie_is_accepted_and_counted() -> None:
    check = _check(_network(0.0), form=1)  # the reference (first maximum) picks 0
    assert check.passed and check.near_ties == 256 and check.max_abs_diff == 0.0
    assert "256 argmax near-ties" in check.render("model.onnx", 256, 0)


def test_a_tie_far_outside_float32_error_is_a_mismatch() -> None:
    check = _check(_network(1e-2), form=1)  # action 0 ahead by 0.01: no rounding flips that
    assert not check.passed and check.greedy_mismatches == 256 and check.near_ties == 0


def test_a_clear_loser_is_a_mismatch_even_on_a_tie_row() -> None:
    check = _check(_network(0.0), form=2)
    assert check.greedy_mismatches == 256 and check.near_ties == 0
    assert check.max_abs_diff == 1.0


def test_the_same_choice_as_the_reference_needs_no_tie() -> None:
    check = _check(_network(1e-2), form=0)
    assert check.passed and check.near_ties == 0 and check.max_abs_diff == 0.0


def test_near_ties_admit_the_maximum_and_what_its_bound_reaches() -> None:
    logits = np.asarray([[1.0, 1.0 + 1e-9, -3.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    bound = np.full_like(logits, 1e-6)
    np.testing.assert_array_equal(
        near_ties(logits, bound, [3]),
        [[True, True, False], [False, True, False], [True, True, True]],
    )
    assert not near_ties(logits, np.zeros_like(logits), [3])[0, 0]  # 1e-9 apart, no error


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_evaluations_in_other_orders_pick_only_admissible_actions(
    activation: str,
) -> None:
    """The rigorous bound is sound: torch's float32 forward pass and a float32 pass
    summing in reverse order each pick an action the bound admits, on networks built to
    have near-ties (actions 0 and 1 a few ulps apart)."""
    for seed in range(4):
        network = _network(float(np.float32(2.0**-22)), seed=seed, activation=activation)
        obs = np.random.default_rng(seed).normal(0, 3, (2048, 4)).astype(np.float32)
        logits64 = network_logits(SPEC, network, obs)
        bound = logit_error_bound(SPEC, network, obs, rigorous=True)
        admissible = near_ties(logits64, bound, [3])
        for reverse in (False, True):
            z = _float32_logits(network, obs, reverse=reverse)
            assert admissible[np.arange(len(z)), z.argmax(axis=1)].all()
        assert not admissible[:, 2].any()  # and it is not vacuous: 100 behind is no tie


def _float32_logits(network: PolicyNetwork, obs: np.ndarray, *, reverse: bool) -> np.ndarray:
    from pgdeploy.export.tolerance import activate

    h = torch.from_numpy(obs)
    for i, (weight, bias) in enumerate(network.layers):
        w = torch.from_numpy(weight)
        if reverse:  # another summation order: the inputs backwards, one at a time
            acc = torch.zeros(len(h), w.shape[0])
            for k in reversed(range(w.shape[1])):
                acc = acc + h[:, k : k + 1] * w[:, k]
            h = acc + torch.from_numpy(bias)
        else:
            h = h @ w.T + torch.from_numpy(bias)
        if i < len(network.layers) - 1:
            h = activate(network.activation, network.activation_alpha, h)
    return h.numpy()
