"""SB3 zips through export (ONNX), inspect, the CLI and the runtime Agent's SB3 convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.export import export_foreign
from pgdeploy.importers import load_foreign
from pgdeploy.runtime import Agent

from .sb3_models import make_model, sample_batch, save, sb3_probs

sb3 = pytest.importorskip("stable_baselines3")


@pytest.fixture(scope="module")
def cartpole_ppo(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    folder = tmp_path_factory.mktemp("cartpole")
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, seed=0, device="cpu")
    model.learn(512)
    model.save(folder / "ppo.zip")
    return model, folder / "ppo.zip"


def test_evaluate_policy_on_the_deployed_file_equals_sb3s(
    cartpole_ppo: tuple[object, Path], tmp_path: Path
) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    model, path = cartpole_ppo
    report = export_foreign(path, out_dir=tmp_path, env_id="CartPole-v1")
    agent = Agent.load(report.path, seed=0)
    results = []
    for policy in (model, agent):
        env = make_vec_env("CartPole-v1", n_envs=2, seed=7)
        results.append(
            evaluate_policy(
                policy,  # type: ignore[arg-type]
                env,
                n_eval_episodes=6,
                deterministic=True,
                return_episode_rewards=True,
            )
        )
    assert results[0] == results[1]
    assert len(results[0][0]) == 6


@pytest.mark.parametrize("action", ["discrete", "multidiscrete"])
@pytest.mark.parametrize("obs", ["box", "box2d", "dict"])
def test_predict_is_shaped_like_sb3s(obs: str, action: str, tmp_path: Path) -> None:
    model = make_model("PPO", obs, action, "shared", "relu")
    agent = Agent.load(export_foreign(save(model, tmp_path)).path, seed=0)
    batch = sample_batch(model.observation_space, 5, seed=3)
    single = {k: v[0] for k, v in batch.items()} if isinstance(batch, dict) else batch[0]
    for observation in (single, batch):
        want, _ = model.predict(observation, deterministic=True)
        got, state = agent.predict(observation, deterministic=True)
        assert state is None
        assert got.shape == want.shape and got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    sampled, _ = agent.predict(batch, deterministic=False)
    assert sampled.shape == want.shape


def test_predict_samples_from_the_agents_seed(tmp_path: Path) -> None:
    model = make_model("A2C", "discrete", "discrete", "shared", "tanh")
    path = export_foreign(save(model, tmp_path)).path
    batch = sample_batch(model.observation_space, 4096, seed=3)
    runs = [Agent.load(path, seed=5).predict(batch)[0] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    # the sampled actions follow SB3's probabilities (a two-sided check per action)
    probs = sb3_probs(model, batch)
    counts = np.bincount(runs[0], minlength=3)
    expected = probs.sum(axis=0)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)


def test_exported_onnx_matches_sb3_and_carries_provenance(tmp_path: Path) -> None:
    model = make_model("DQN", "multidiscrete", "discrete", "shared", "elu")
    report = export_foreign(save(model, tmp_path))
    agent = Agent.load(report.path, deterministic=True)
    batch = sample_batch(model.observation_space, 4096, seed=4)
    got = agent.act_batch(batch)  # the env's own (structured) batch
    from .sb3_models import sb3_greedy

    np.testing.assert_array_equal(got, sb3_greedy(model, batch))
    provenance = agent.metadata.training["provenance"]
    assert provenance["algorithm"] == "DQN" and "greedy" in provenance["note"]
    assert provenance["input_sha256"] == report.provenance["input_sha256"]


def test_cli_export_and_inspect_an_sb3_zip(
    cartpole_ppo: tuple[object, Path], tmp_path: Path
) -> None:
    _, path = cartpole_ppo
    runner = CliRunner()
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "stable-baselines3" in result.output and '"algorithm": "PPO"' in result.output
    result = runner.invoke(
        main, ["export", str(path), "--out-dir", str(tmp_path), "--env", "CartPole-v1"]
    )
    assert result.exit_code == 0, result.output
    assert "verified on 8192 observations (4096 random, 4096 on-policy)" in result.output
    assert "against the stable-baselines3 policy rebuilt in PyTorch" in result.output
    assert Agent.load(tmp_path / "model.onnx").spec.env_id == "CartPole-v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no TorchScript


def test_cli_refuses_an_unsupported_policy_in_one_line(tmp_path: Path) -> None:
    model = sb3.PPO("MlpPolicy", "Pendulum-v1", n_steps=8, batch_size=8, seed=0, device="cpu")
    model.save(tmp_path / "pendulum.zip")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "pendulum.zip")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "continuous (Box) actions" in lines[0]
    assert not (tmp_path / "model.onnx").exists()


def test_load_foreign_is_the_python_call(tmp_path: Path) -> None:
    imported = load_foreign(save(make_model("PPO", "box", "discrete", "shared", "tanh"), tmp_path))
    assert imported.metadata()["network"]["activation"] == "tanh"


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "leaky_relu", "silu", "gelu"])
def test_every_activation_exports_verified(activation: str, tmp_path: Path) -> None:
    model = make_model("PPO", "box2d", "discrete", "separate", activation)
    report = export_foreign(save(model, tmp_path))
    assert report.onnx.max_tolerance_ratio < 0.1  # the grounded bound, far from binding
    agent = Agent.load(report.path)
    batch = sample_batch(model.observation_space, 1024, seed=5)
    assert np.abs(agent.probs(batch) - sb3_probs(model, batch)).max() < 1e-5
