"""Every command on every observation/action layout: bench, run and inspect on 1-D and 2-D
Box, Discrete, MultiDiscrete actions, Dict (Box, Discrete, MultiBinary) and Tuple models."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import tests.tiny_envs  # noqa: F401  (registers the envs)
from pgdeploy.cli import main
from pgdeploy.export import export_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train

LAYOUTS = ["Guess-v0", "Pick-v0", "Grid-v0", "MultiGuess-v0", "DictGuess-v0", "TupleGuess-v0"]


@pytest.fixture(scope="module", params=LAYOUTS)
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("layout") / request.param
    config = TrainConfig(env_id=f"tests.tiny_envs:{request.param}", total_timesteps=64)
    train(config, out_dir=folder)
    export_checkpoint(folder / "model.pt", n_random=32, n_on_policy=32)
    return folder / "model.onnx"


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), prog_name="pgdeploy")
    assert result.exit_code == 0, result.output
    return result.output


def test_bench(model: Path) -> None:
    for mode in ("raise", "clip"):
        out = cli(
            "bench", str(model), "--calls", "20", "--batch-sizes", "1,7", "--out-of-bounds", mode
        )
        assert "act: p50" in out and "act_batch n=7:" in out


def test_run(model: Path) -> None:
    out = cli("run", str(model), "--episodes", "2", "--env", f"tests.tiny_envs:{model.parent.name}")
    assert "episode 1: return" in out and "mean return" in out


def test_inspect(model: Path) -> None:
    assert "env tests.tiny_envs:" in cli("inspect", str(model))
