"""act, act_batch and probs refuse the same observations and outputs with the same errors.

One family of bad observations (NaN and infinities at every position, out of bounds,
masked arrays, every refused dtype, wrong shapes, ragged and non-numeric values) runs
through all three paths of agents with and without the single-step fast path; NaN in a
probability that is not the first is refused everywhere; an onnxruntime failure is a
PolicyOutputError on every path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgdeploy.errors import ObservationError, PolicyOutputError
from pgdeploy.runtime import Agent
from pgdeploy.runtime import agent as agent_module
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.runtime.policy_graph import build_model
from pgdeploy.spec import PolicySpec, spec_to_metadata

GOOD = np.array([0.01, -0.02, 0.03, 0.0], np.float32)


def bad_observations() -> Iterator[tuple[str, Any]]:
    for i in range(4):
        for value in (math.nan, math.inf, -math.inf):
            row = GOOD.copy()
            row[i] = value
            yield f"{value} at {i}", row
            yield f"{value} at {i} as float64", row.astype(np.float64)
            yield f"{value} at {i} as a list", row.tolist()
    yield "out of bounds", np.array([9.0, 0, 0, 0], np.float32)
    yield "float64 beyond float32", np.array([1e300, 0, 0, 0])
    yield "masked", np.ma.masked_array(GOOD, mask=[True, False, False, False])
    yield "masked, nothing masked", np.ma.masked_array(GOOD)
    yield "float16 NaN", np.array([np.nan, 0, 0, 0], np.float16)
    for dtype in (bool, complex, str, object):
        yield f"dtype {dtype.__name__}", GOOD.astype(dtype)
    yield "too short", GOOD[:3]
    yield "too long", np.append(GOOD, 0)
    yield "ragged", [[0.0, 1.0], [0.0]]
    yield "None", None
    yield "a string", "0 0 0 0"
    yield "strided with NaN", np.array([np.nan, 9, 0, 9, 0, 9, 0, 9], np.float32)[::2]


def batch_of(obs: Any) -> Any:
    if isinstance(obs, np.ndarray):
        return obs[np.newaxis]
    return [obs]


def paths(agent: Agent) -> dict[str, Callable[[Any], Any]]:
    return {
        "act": agent.act,
        "act_batch": lambda obs: agent.act_batch(batch_of(obs)),
        "probs": agent.probs,
    }


@pytest.mark.parametrize(
    "options",
    [{}, {"fast_path": False}, {"deterministic": True}],
    ids=["fast", "public-run", "greedy"],
)
def test_every_bad_observation_is_the_same_error_on_every_path(
    exported_model: Path, options: dict[str, Any]
) -> None:
    agent = Agent.load(exported_model / "model.onnx", seed=0, **options)
    assert agent.uses_fast_path == options.get("fast_path", True)
    for call in paths(agent).values():
        call(GOOD)
    members = 0
    for _, obs in bad_observations():
        for call in paths(agent).values():
            with pytest.raises(ObservationError):
                call(obs)
            members += 1
    assert members > 100


def _nan_in_second(original: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        out[0][:, 1] = np.nan  # probs is the first output asked for ...
        return out

    return run


@pytest.mark.parametrize("fast_path", [True, False])
def test_nan_in_the_second_probability_is_refused_on_every_path(
    exported_model: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    """A NaN in probs[1] only (not [0]); the engine's outputs are doctored after the run."""
    original_init = agent_module._BoundSingleStep.__init__

    def init(self: Any, *args: Any) -> None:
        original_init(self, *args)
        run = self.run

        def doctored() -> None:
            run()
            self.probs[0, 1] = np.nan

        self.run = doctored

    monkeypatch.setattr(agent_module._BoundSingleStep, "__init__", init)
    agent = Agent.load(exported_model / "model.onnx", seed=0, fast_path=fast_path)
    session = agent._session

    class Doctored:
        def __getattr__(self, name: str) -> Any:
            return getattr(session, name)

        def run(self, names: list[str], feeds: Any) -> Any:
            out = session.run(names, feeds)
            out[names.index("probs")][:, 1] = np.nan
            return out

    agent._session = Doctored()  # type: ignore[assignment]
    for name, call in paths(agent).items():
        with pytest.raises(PolicyOutputError, match="probabilities are NaN"):
            call(GOOD)
        assert name


def overflowing_second_head(tmp_path: Path) -> Agent:
    """A canonical two-head graph whose second head's logit overflows to +inf: probs
    [p0, p1, NaN, NaN], the first head finite. No doctoring: the weights do it."""
    spec = PolicySpec(
        "TwoHeads-v0",
        2,
        4,
        (-1.0, -1.0),
        (1.0, 1.0),
        action_space={"type": "multi_discrete", "nvec": [2, 2], "start": [0, 0]},
    )
    last = np.zeros((4, 2), np.float32)
    last[3] = 3e38
    network = PolicyNetwork(
        clip_low=np.full(2, -1, np.float32),
        clip_high=np.full(2, 1, np.float32),
        layers=(
            (np.zeros((2, 2), np.float32), np.full(2, 3e38, np.float32)),
            (last, np.zeros(4, np.float32)),
        ),
    )
    metadata = spec_to_metadata(
        spec, training={}, pgdeploy_version="0", network=network.description()
    )
    path = tmp_path / "two_heads.onnx"
    path.write_bytes(build_model(spec, network, metadata))
    return Agent.load(path, seed=0)


def test_nan_in_a_later_head_is_refused_on_every_path(tmp_path: Path) -> None:
    agent = overflowing_second_head(tmp_path)
    probs = agent.run_graph(np.zeros((1, 2), np.float32), np.zeros(2, np.float32))["probs"]
    assert np.isfinite(probs[0, :2]).all() and np.isnan(probs[0, 2:]).all()
    obs = np.zeros(2, np.float32)
    for name, call in paths(agent).items():
        with pytest.raises(PolicyOutputError, match="probabilities are NaN"):
            call(obs)
        assert name


@pytest.mark.parametrize("fast_path", [True, False])
def test_an_onnxruntime_failure_is_a_policy_output_error_on_every_path(
    exported_model: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    original_init = agent_module._BoundSingleStep.__init__

    def init(self: Any, *args: Any) -> None:
        original_init(self, *args)

        def fail() -> None:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory")

        self.run = fail

    monkeypatch.setattr(agent_module._BoundSingleStep, "__init__", init)
    agent = Agent.load(exported_model / "model.onnx", seed=0, fast_path=fast_path)

    class Failing:
        def run(self, names: list[str], feeds: Any) -> Any:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory")

    agent._session = Failing()  # type: ignore[assignment]
    for name, call in paths(agent).items():
        with pytest.raises(
            PolicyOutputError, match=r"onnxruntime failed on a batch of 1: .*memory"
        ):
            call(GOOD)
        assert name
