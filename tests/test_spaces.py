"""Every supported space kind trains, exports and plays end to end, on tiny envs (seconds).

The runtime agent is handed observations exactly as the env returns them (an int for
Discrete, a dict for Dict, a (2, 3) array for a 2-D Box ...) and returns the env's own
action values (``start`` included; an int64 array for MultiDiscrete): the tiny envs
reject any action outside their space, so a wrong offset fails the episode loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest

import tests.tiny_envs  # noqa: F401  (registers the envs)
from pgdeploy.errors import ObservationError
from pgdeploy.export import export_checkpoint
from pgdeploy.export.reference import TorchAgent
from pgdeploy.runtime import Agent, play
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train

ENVS = ["Pick-v0", "Grid-v0", "MultiGuess-v0", "DictGuess-v0", "TupleGuess-v0"]


@pytest.fixture(scope="module", params=ENVS)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_id = f"tests.tiny_envs:{request.param}"
    folder = tmp_path_factory.mktemp(request.param)
    config = TrainConfig(env_id=env_id, total_timesteps=20_000, hidden_sizes=(32,))
    result = train(config, out_dir=folder)
    assert result.summary["solved"], result.summary["stop_reason"]
    export_checkpoint(folder / "model.pt", n_random=256, n_on_policy=256)
    return folder


def test_exported_policy_plays_the_env_with_its_own_observations(trained: Path) -> None:
    agent = Agent.load(trained / "model.onnx", seed=0, deterministic=True)
    env = gym.make(agent.spec.env_id)
    report = play(agent, env, episodes=20, seed=0)
    assert report.mean_return >= 7.0  # solved: the threshold the tiny envs register
    action = agent.act(env.reset(seed=1)[0])
    assert env.action_space.contains(np.asarray(action, dtype=np.int64))
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        assert isinstance(action, np.ndarray) and action.shape == env.action_space.shape
    else:
        assert isinstance(action, int)


def test_same_seed_same_actions_in_pytorch_and_onnx(trained: Path) -> None:
    policy = load_checkpoint(trained / "model.pt").build_policy()
    env = gym.make(policy.spec.env_id)
    observations = []
    obs, _ = env.reset(seed=3)
    for _ in range(300):
        observations.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    onnx_agent = Agent.load(trained / "model.onnx", seed=7)
    torch_agent = TorchAgent.from_policy(policy, seed=7)
    ours = np.asarray([onnx_agent.act(o) for o in observations])
    reference = np.asarray([torch_agent.act(o) for o in observations])
    assert np.array_equal(ours, reference)
    assert len(np.unique(reference)) > 1  # several actions occur, so the check has teeth


def test_act_batch_takes_what_a_vector_env_returns(trained: Path) -> None:
    agent = Agent.load(trained / "model.onnx", seed=0, deterministic=True)
    envs = gym.make_vec(agent.spec.env_id, num_envs=3)
    obs, _ = envs.reset(seed=0)
    actions = agent.act_batch(obs)
    single = [agent.act(_row(obs, i)) for i in range(3)]
    assert np.array_equal(actions, np.asarray(single))
    envs.step(actions)  # the vector env accepts them
    envs.close()


def _row(batch: Any, i: int) -> Any:
    """Observation ``i`` of a vector env's batch, in the single env's form."""
    if isinstance(batch, dict):
        return {k: _row(v, i) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_row(v, i) for v in batch)
    return batch[i]


def test_graph_contract_raw_row_fed_to_onnxruntime_directly(trained: Path) -> None:
    """docs/envs.md: the row is the leaves' values in layout order; one uniform per head."""
    agent = Agent.load(trained / "model.onnx")
    spec = agent.spec
    env = gym.make(spec.env_id)
    obs, _ = env.reset(seed=5)
    leaves = _leaves(obs, env.observation_space)
    row = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in leaves])
    session = ort.InferenceSession(str(trained / "model.onnx"))
    heads = spec.action_layout.n_branches
    probs = session.run(
        ["probs"], {"obs": row[np.newaxis, :], "uniform": np.zeros((1, heads), np.float32)}
    )[0][0]
    np.testing.assert_allclose(probs, agent.probs(obs), rtol=0, atol=1e-7)
    assert probs.shape == (spec.n_actions,)


def _leaves(obs: Any, space: gym.Space[Any]) -> list[Any]:
    """Leaf values in gymnasium's flatten order: a Dict's keys in the space's order (sorted
    by gymnasium), not the order of the env's dict (DictGuess returns pos, target, bits)."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in _leaves(obs[key], sub)]
    if isinstance(space, gym.spaces.Tuple):
        return [
            leaf
            for part, sub in zip(obs, space.spaces, strict=False)
            for leaf in _leaves(part, sub)
        ]
    return [obs]


def _agent(env_id: str, tmp_path: Path) -> Agent:
    folder = tmp_path / env_id
    train(TrainConfig(env_id=f"tests.tiny_envs:{env_id}", total_timesteps=200), out_dir=folder)
    export_checkpoint(folder / "model.pt", n_random=64, n_on_policy=64)
    return Agent.load(folder / "model.onnx", seed=0)


def test_structured_observation_errors_are_clear(tmp_path: Path) -> None:
    agent = _agent("DictGuess-v0", tmp_path)
    good = {"pos": np.zeros(2, np.float32), "target": 1, "bits": np.array([0, 1], np.int8)}
    assert agent.act(good) in (0, 1, 2)
    with pytest.raises(ObservationError, match=r"obs is missing key 'target'"):
        agent.act({"pos": good["pos"], "bits": good["bits"]})
    with pytest.raises(ObservationError, match=r"obs\['pos'\] must have shape \(2,\), got \(3,\)"):
        agent.act({**good, "pos": np.zeros(3, np.float32)})
    with pytest.raises(ObservationError, match=r"outside the observation space \[0.0, 2.0\]"):
        agent.act({**good, "target": 3})
    with pytest.raises(ObservationError, match=r"obs\['target'\] holds the non-integer value 1.5"):
        agent.act({**good, "target": 1.5})
    with pytest.raises(ObservationError, match=r"must be a dict with keys"):
        agent.act(np.zeros(5, np.float32))


def test_discrete_observation_and_action_start(tmp_path: Path) -> None:
    agent = _agent("Pick-v0", tmp_path)
    assert agent.spec.obs_dim == 1 and agent.spec.action_layout.start == (1,)
    assert agent.act(5) in range(1, 6)
    assert agent.act_batch(np.array([1, 2, 5])).min() >= 1
    with pytest.raises(ObservationError, match=r"outside the observation space \[1.0, 5.0\]"):
        agent.act(0)


@pytest.mark.slow
def test_frozenlake_from_the_cli_trains_exports_best_and_runs(tmp_path: Path) -> None:
    """docs/envs.md: train, export best.pt, run, exactly as written there (short budget)."""
    from click.testing import CliRunner

    from pgdeploy.cli import main

    out = tmp_path / "frozenlake"

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), prog_name="pgdeploy")
        assert result.exit_code == 0, result.output
        return result.output

    trained = invoke(
        "train", "--env", "FrozenLake-v1", "--out", str(out), "--total-timesteps", "4000", "-q"
    )
    assert "without reaching the reward threshold 0.7" in trained
    exported = invoke("export", str(out / "best.pt"))
    assert "onnx: " in exported and "x its float32 tolerance" in exported
    played = invoke("run", str(out / "model.onnx"), "--episodes", "5", "--deterministic")
    assert "over 5 episodes" in played and played.count("episode ") == 5


def test_greedy_variant_matches_the_whole_graph(trained: Path) -> None:
    """The graph built without sampling nodes (the greedy single-step path) gives the whole
    graph's values on one-hot encodings and several heads; the file itself is canonical."""
    import onnxruntime as ort

    from pgdeploy.runtime.model_file import greedy_session

    agent = Agent.load(trained / "model.onnx", deterministic=True)
    assert agent.model.data == (trained / "model.onnx").read_bytes()
    spec = agent.spec
    rng = np.random.default_rng(0)
    obs = np.stack([spec.obs_layout.probe_row(spec.obs_low, spec.obs_high)] * 64)
    for column, (first, last) in spec.obs_layout.categorical_bounds().items():
        obs[:, column] = rng.integers(first, last + 1, len(obs))
    whole = agent.model.session.run(
        ["probs", "greedy_action"],
        {"obs": obs, "uniform": np.zeros((64, spec.action_layout.n_branches), np.float32)},
    )
    variant = greedy_session(agent.model)
    assert isinstance(variant, ort.InferenceSession)
    got = variant.run(["probs", "greedy_action"], {"obs": obs})
    for value, want in zip(got, whole, strict=True):
        np.testing.assert_array_equal(value, want)
