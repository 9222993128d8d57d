"""The runtime Agent: fast and public paths agree, sampling keeps the contract, bad input fails."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pgdeploy.errors import ObservationError
from pgdeploy.runtime import Agent, UniformStream, inverse_cdf
from pgdeploy.runtime.agent import BATCH_CHUNK

_BUILT: dict[str, Path] = {}


def exported_folder(request: pytest.FixtureRequest) -> Path:
    """The suite's shared exported model (conftest's ``exported_model``) or one built here."""
    try:
        return Path(request.getfixturevalue("exported_model"))
    except pytest.FixtureLookupError:
        pass
    if "folder" not in _BUILT:
        from pgdeploy.export import export_checkpoint
        from pgdeploy.training.config import TrainConfig
        from pgdeploy.training.train import train

        folder = request.getfixturevalue("tmp_path_factory").mktemp("runtime_model")
        train(TrainConfig(seed=0, total_timesteps=2_000), out_dir=folder)
        export_checkpoint(folder / "model.pt", n_random=256, n_on_policy=256)
        _BUILT["folder"] = folder
    return _BUILT["folder"]


@pytest.fixture
def onnx_path(request: pytest.FixtureRequest) -> Path:
    return exported_folder(request) / "model.onnx"


def observations(agent: Agent, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.2, 0.2, size=(n, agent.spec.obs_dim)).astype(np.float32)


@pytest.mark.parametrize("fast_path", [True, False])
def test_act_follows_inverse_cdf_contract(onnx_path: Path, fast_path: bool) -> None:
    agent = Agent.load(onnx_path, seed=7, fast_path=fast_path)
    assert agent.uses_fast_path is fast_path
    obs = observations(agent, 300)
    actions = [agent.act(row) for row in obs]
    expected = inverse_cdf(agent.probs(obs), UniformStream(7).take(len(obs)))
    np.testing.assert_array_equal(actions, expected)
    assert all(type(a) is int for a in actions)


@pytest.mark.parametrize("fast_path", [True, False])
def test_deterministic_act_is_argmax(onnx_path: Path, fast_path: bool) -> None:
    agent = Agent.load(onnx_path, deterministic=True, fast_path=fast_path)
    obs = observations(agent, 100)
    actions = [agent.act(row) for row in obs]
    np.testing.assert_array_equal(actions, agent.probs(obs).argmax(axis=1))


def test_mixed_act_and_act_batch_reproduce_one_stream(onnx_path: Path) -> None:
    obs = observations(Agent.load(onnx_path), 5000)
    whole = Agent.load(onnx_path, seed=3, batch_threads=1).act_batch(obs)
    mixed = Agent.load(onnx_path, seed=3, batch_threads=2)
    parts = [
        np.array([mixed.act(row) for row in obs[:10]]),
        mixed.act_batch(obs[10:4000]),
        np.array([mixed.act(row) for row in obs[4000:4003]]),
        mixed.act_batch(obs[4003:]),
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("batch_threads", [1, 2, 3])
def test_chunked_act_batch_matches_reference(onnx_path: Path, batch_threads: int) -> None:
    agent = Agent.load(onnx_path, seed=11, batch_threads=batch_threads)
    obs = observations(agent, 3 * BATCH_CHUNK + 17)
    actions = agent.act_batch(obs)
    assert actions.dtype == np.int64 and actions.shape == (len(obs),)
    expected = inverse_cdf(agent.probs(obs), UniformStream(11).take(len(obs)))
    np.testing.assert_array_equal(actions, expected)


def test_act_accepts_safe_conversions(onnx_path: Path) -> None:
    agent = Agent.load(onnx_path, deterministic=True)
    row = observations(agent, 1)[0]
    expected = agent.act(row)
    strided = np.repeat(row[:, np.newaxis], 2, axis=1)[:, 0]
    assert not strided.flags.c_contiguous
    for obs in (strided, row.astype(np.float64), row.tolist(), tuple(row.tolist())):
        assert agent.act(obs) == expected


def test_act_from_another_thread_uses_its_own_stream(onnx_path: Path) -> None:
    agent = Agent.load(onnx_path, seed=5)
    obs = observations(agent, 50)
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.extend(agent.act(row) for row in obs))
    worker.start()
    worker.join()
    (child,) = np.random.SeedSequence(5).spawn(1)
    expected = inverse_cdf(agent.probs(obs), UniformStream(child).take(len(obs)))
    np.testing.assert_array_equal(results, expected)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(
    ("obs", "match"),
    [
        ([0.0, float("nan"), 0.0, 0.0], r"observation\[1\] is nan, expected a finite number"),
        ([0.0, 0.0, float("inf"), 0.0], r"observation\[2\] is inf"),
        ([1e300, 0.0, 0.0, 0.0], r"observation\[0\] is inf"),
        ([9.0, 0.0, 0.0, 0.0], r"observation\[0\] = 9.0 is outside the observation space"),
        ([0.0, 0.0, 0.0], r"observation must have shape \(4,\), got \(3,\)"),
        ([[0.0] * 4], r"got \(1, 4\) \(use act_batch for a batch\)"),
        ([True, False, True, False], r"must be real numbers .* got dtype bool"),
    ],
)
def test_act_refuses_bad_observations(
    onnx_path: Path, fast_path: bool, obs: list[object], match: str
) -> None:
    agent = Agent.load(onnx_path, seed=0, fast_path=fast_path)
    for value in (obs, np.asarray(obs)):
        with pytest.raises(ObservationError, match=match):
            agent.act(value)


@pytest.mark.parametrize("fast_path", [True, False])
def test_act_refuses_bad_float32_rows(onnx_path: Path, fast_path: bool) -> None:
    """The fast path's own check (float32 rows copied straight into the bound buffer)."""
    agent = Agent.load(onnx_path, seed=0, fast_path=fast_path)
    row = np.zeros(4, np.float32)
    row[3] = np.nan
    with pytest.raises(ObservationError, match=r"observation\[3\] is nan"):
        agent.act(row)
    row[3] = -np.inf
    with pytest.raises(ObservationError, match=r"observation\[3\] is -inf"):
        agent.act(row)
    row[3], row[2] = 0.0, 1.0
    with pytest.raises(ObservationError, match=r"observation\[2\] = 1.0 is outside"):
        agent.act(row)


@pytest.mark.parametrize("n", [1, 63, 64, 65, BATCH_CHUNK + 5])
@pytest.mark.parametrize("where", ["first", "last"])
def test_act_batch_refuses_non_finite_and_out_of_bounds(
    onnx_path: Path, n: int, where: str
) -> None:
    agent = Agent.load(onnx_path)
    row = 0 if where == "first" else n - 1
    obs = observations(agent, n)
    obs[row, 3] = np.nan
    with pytest.raises(ObservationError, match=r"observation\[.*3\] is nan"):
        agent.act_batch(obs)
    obs[row, 3] = 0.0
    obs[row, 0] = -9.0
    with pytest.raises(ObservationError, match=r"= -9.0 is outside the observation space"):
        agent.act_batch(obs)


def test_clip_mode_accepts_out_of_bounds_but_not_nan(onnx_path: Path) -> None:
    agent = Agent.load(onnx_path, out_of_bounds="clip", deterministic=True)
    obs = observations(agent, BATCH_CHUNK + 3)
    obs[-1, 0] = 1e30
    assert agent.act_batch(obs).shape == (len(obs),)
    obs[-1, 0] = np.inf
    with pytest.raises(ObservationError, match=r"is inf, expected a finite number"):
        agent.act_batch(obs)


def test_batch_threads_must_be_positive(onnx_path: Path) -> None:
    with pytest.raises(
        ValueError, match="batch_threads must be an integer from 1 to 1024 or None, got 0"
    ):
        Agent.load(onnx_path, batch_threads=0)


def test_a_subclass_overriding_act_keeps_its_override(onnx_path: Path) -> None:
    """The fast closure replaces act on plain agents only; super().act() still reaches it."""
    calls: list[int] = []

    class Logged(Agent):
        def act(self, obs: object) -> object:
            action = super().act(obs)
            calls.append(int(action))  # type: ignore[call-overload]
            return action

    obs = observations(Agent.load(onnx_path), 50)
    logged = Logged.load(onnx_path, seed=9)
    plain = Agent.load(onnx_path, seed=9)
    assert [logged.act(row) for row in obs] == [plain.act(row) for row in obs] == calls
    assert logged.uses_fast_path
