"""Property tests: any observation and any file bytes give a result or a typed error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pgdeploy.errors import ModelLoadError, ObservationError
from pgdeploy.runtime import Agent

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

dtypes = st.one_of(
    hnp.floating_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
)
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))


@pytest.fixture(scope="module")
def agents(exported_model: Path) -> tuple[Agent, Agent]:
    path = exported_model / "model.onnx"
    return Agent.load(path, seed=0), Agent.load(path, seed=0, out_of_bounds="clip")


@FAST
@given(obs=arrays)
def test_any_array_is_an_action_or_an_observation_error(
    agents: tuple[Agent, Agent], obs: np.ndarray
) -> None:
    for agent in agents:
        try:
            action = agent.act(obs)
        except ObservationError:
            pass
        else:
            assert type(action) is int and action in (0, 1)
        try:
            actions = agent.act_batch(obs)
        except ObservationError:
            pass
        else:
            assert actions.dtype == np.int64 and actions.ndim == 1
            assert set(actions.tolist()) <= {0, 1}
        try:
            probs = agent.probs(obs)
        except ObservationError:
            continue
        assert probs.dtype == np.float32 and probs.shape[-1] == 2
        assert (probs >= 0).all() and np.allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


@FAST
@given(row=st.lists(st.floats(width=32), min_size=4, max_size=4))
def test_clip_mode_finite_rows_always_give_finite_probs(
    agents: tuple[Agent, Agent], row: list[float]
) -> None:
    _, clipping = agents
    if not np.isfinite(row).all():
        with pytest.raises(ObservationError, match="expected a finite number"):
            clipping.probs(row)
        return
    probs = clipping.probs(row)
    assert np.isfinite(probs).all() and abs(float(probs.sum()) - 1.0) < 1e-5


@FAST
@given(data=st.binary(max_size=2048))
def test_any_bytes_load_or_fail_with_model_load_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(data)
        with pytest.raises(ModelLoadError, match=str(path)):
            Agent.load(path)


@FAST
@given(cut=st.integers(min_value=0), flips=st.lists(st.integers(min_value=0), max_size=8))
def test_corrupted_real_model_never_escapes_untyped(
    exported_model: Path, cut: int, flips: list[int]
) -> None:
    data = bytearray((exported_model / "model.onnx").read_bytes())
    for position in flips:
        data[position % len(data)] ^= 0xFF
    data = data[: len(data) - cut % len(data)] if cut else data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(bytes(data))
        try:
            agent = Agent.load(path, deterministic=True)
        except ModelLoadError:
            return
        assert agent.act(np.zeros(4, np.float32)) in range(agent.spec.n_actions)
