"""Observations: every bad one is an ObservationError; safe casts are documented and tested."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgdeploy.errors import ObservationError
from pgdeploy.runtime import Agent
from pgdeploy.runtime.observations import ObservationChecker
from pgdeploy.spec import PolicySpec

# CartPole's space: |x| <= 4.8, |theta| <= 0.418, velocities unbounded (float32 max).
GOOD = [0.01, -0.2, 0.03, 0.1]
F32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(scope="module")
def agent(exported_model: Path) -> Agent:
    return Agent.load(exported_model / "model.onnx", seed=0)


@pytest.fixture(scope="module")
def clipping_agent(exported_model: Path) -> Agent:
    return Agent.load(exported_model / "model.onnx", seed=0, out_of_bounds="clip")


@pytest.mark.parametrize(
    ("obs", "match"),
    [
        (np.float32(0.5), r"must have shape \(4,\), got \(\)"),
        (np.zeros(3, np.float32), r"must have shape \(4,\), got \(3,\)"),
        (np.zeros(5), r"must have shape \(4,\), got \(5,\)"),
        (np.zeros((1, 4), np.float32), r"got \(1, 4\) \(use act_batch for a batch\)"),
        (np.zeros((2, 2, 4)), r"got \(2, 2, 4\)"),
        ([[0.1, 0.2], [0.3]], "not a numeric array"),
    ],
)
def test_act_wrong_shape(agent: Agent, obs: Any, match: str) -> None:
    with pytest.raises(ObservationError, match=match):
        agent.act(obs)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (np.zeros(4, np.float32), r"must have shape \(n, 4\), got \(4,\)"),
        (np.zeros((3, 5), np.float32), r"got \(3, 5\)"),
        (np.zeros((2, 2, 4)), r"got \(2, 2, 4\)"),
        (np.zeros((0, 4), np.float32), "batch is empty, expected at least one row"),
    ],
)
def test_act_batch_wrong_shape(agent: Agent, batch: Any, match: str) -> None:
    with pytest.raises(ObservationError, match=match):
        agent.act_batch(batch)


@pytest.mark.parametrize(
    "obs",
    [
        np.array([True, False, True, False]),
        np.array(["0.1", "0.2", "0.3", "0.4"]),
        np.array([0.1, None, 0.2, 0.3], dtype=object),
        np.zeros(4, np.complex64),
        ["a", "b", "c", "d"],
    ],
)
def test_non_numeric_dtypes_are_refused(agent: Agent, obs: Any) -> None:
    with pytest.raises(ObservationError, match=r"must be real numbers .*got dtype"):
        agent.act(obs)
    with pytest.raises(ObservationError, match="must be real numbers"):
        agent.act_batch([obs])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mode", ["reject", "clip"])
@pytest.mark.parametrize("col", [0, 1])
def test_non_finite_is_always_refused(
    exported_model: Path, bad: float, mode: Any, col: int
) -> None:
    agent = Agent.load(exported_model / "model.onnx", out_of_bounds=mode)
    obs = np.array(GOOD, np.float32)
    obs[col] = bad
    for call in (agent.act, agent.probs):
        with pytest.raises(ObservationError, match=rf"observation\[{col}\] is .*expected a finite"):
            call(obs)
    batch = np.tile(np.array(GOOD, np.float32), (3, 1))
    batch[2, col] = bad
    with pytest.raises(ObservationError, match=rf"observation\[2, {col}\] is"):
        agent.act_batch(batch)


def test_float64_beyond_float32_range_is_refused(agent: Agent) -> None:
    obs = np.array([0.0, 1e300, 0.0, 0.0])  # finite float64, inf as float32
    with pytest.raises(ObservationError, match="expected a finite number"):
        agent.act(obs)


def test_out_of_bounds_rejected_by_default(agent: Agent) -> None:
    obs = [5.0, 0.0, 0.0, 0.0]  # cart position limit is 4.8
    with pytest.raises(ObservationError, match=r"observation\[0\] = 5.0 is outside .*'clip'"):
        agent.act(obs)
    with pytest.raises(ObservationError, match=r"observation\[1, 2\] = -1.0 is outside"):
        agent.act_batch([GOOD, [0.0, 0.0, -1.0, 0.0]])


def test_clip_mode_equals_clipped_observation(agent: Agent, clipping_agent: Agent) -> None:
    outside = np.array([50.0, 0.0, -3.0, 0.0], np.float32)
    clipped = np.clip(
        outside, [-4.8, -F32_MAX, -0.41887903, -F32_MAX], [4.8, F32_MAX, 0.41887903, F32_MAX]
    )
    np.testing.assert_allclose(clipping_agent.probs(outside), agent.probs(clipped), atol=1e-6)


@pytest.mark.parametrize(
    "obs",
    [
        GOOD,
        tuple(GOOD),
        np.array(GOOD, np.float64),
        np.array(GOOD, np.float16),
        np.array([0, 1, 0, -1], np.int64),
        np.array([0, 1, 0, 1], np.uint8),
        [0, 1, 0, -1],
        np.asfortranarray(np.array([GOOD, GOOD]))[0],
        np.array([GOOD, GOOD])[:, ::-1][0][::-1],  # non-contiguous view
    ],
)
def test_safe_casts_match_float32(agent: Agent, obs: Any) -> None:
    expected = agent.probs(np.asarray(obs, np.float32))
    np.testing.assert_array_equal(agent.probs(obs), expected)
    greedy = Agent.load(agent.path, deterministic=True)
    assert greedy.act(obs) == int(expected.argmax())
    assert greedy.act_batch([obs, obs]).tolist() == [int(expected.argmax())] * 2


@pytest.mark.parametrize("value", [F32_MAX, -F32_MAX, 1e30, -1e30, 1e-45])
def test_extreme_finite_inputs_give_finite_probs(clipping_agent: Agent, value: float) -> None:
    obs = np.full(4, value, np.float32)
    probs = clipping_agent.probs(obs)
    assert np.isfinite(probs).all()
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert clipping_agent.act(obs) in (0, 1)


def test_unbounded_dims_accept_extreme_values_in_reject_mode(agent: Agent) -> None:
    obs = np.array([0.0, F32_MAX, 0.0, -F32_MAX], np.float32)  # velocities are unbounded
    assert np.isfinite(agent.probs(obs)).all()


def test_failed_act_leaves_agent_usable(agent: Agent) -> None:
    greedy = Agent.load(agent.path, deterministic=True)
    before = greedy.act(GOOD)
    with pytest.raises(ObservationError, match="finite"):
        greedy.act(np.array([np.nan, 0, 0, 0], np.float32))
    assert greedy.act(GOOD) == before


def test_bad_out_of_bounds_policy_is_refused() -> None:
    spec = PolicySpec("X", 1, 2, (-1.0,), (1.0,))
    with pytest.raises(ValueError, match="out_of_bounds must be 'reject' or 'clip', got 'wrap'"):
        ObservationChecker(spec, "wrap")  # type: ignore[arg-type]
