"""Training resumed from a checkpoint continues the same run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import CheckpointError
from pgdeploy.training.checkpoint import load_checkpoint, resume_config, resume_state
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train

CONFIG = TrainConfig(seed=3, num_envs=4, hidden_sizes=(16,), total_timesteps=600)


def test_resume_continues_counters_optimizer_and_window(tmp_path: Path) -> None:
    first = train(CONFIG, out_dir=tmp_path / "a")
    checkpoint = load_checkpoint(tmp_path / "a" / "model.pt")
    state = resume_state(checkpoint)
    assert state.env_steps == first.summary["env_steps"] >= 600
    assert state.iterations == len(first.history) == state.optimizer["step"]

    config = resume_config(checkpoint, total_timesteps=1200)
    second = train(config, out_dir=tmp_path / "b", resume_from=checkpoint)
    assert second.history[0].iteration == state.iterations + 1
    assert second.history[0].env_steps > state.env_steps
    assert second.summary["env_steps"] >= 1200
    after = resume_state(second.checkpoint)
    assert after.optimizer["step"] == after.iterations == state.iterations + len(second.history)
    assert after.episodes == second.history[-1].episodes

    # Resuming the same checkpoint again is the same run: identical weights.
    third = train(config, resume_from=checkpoint)
    for name, value in second.checkpoint.state_dict.items():
        assert torch.equal(third.checkpoint.state_dict[name], value)


def test_checkpoint_without_resume_section_is_refused(tmp_path: Path) -> None:
    train(CONFIG, out_dir=tmp_path)
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    checkpoint.resume = {}
    with pytest.raises(CheckpointError, match=r"cannot be resumed: .*lacks \['env_steps'"):
        train(CONFIG, resume_from=checkpoint)


def test_cli_train_resume(tmp_path: Path) -> None:
    train(CONFIG, out_dir=tmp_path / "a")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--resume",
            str(tmp_path / "a" / "model.pt"),
            "--total-timesteps",
            "1000",
            "--out",
            str(tmp_path / "b"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    resumed = load_checkpoint(tmp_path / "b" / "model.pt")
    assert resumed.config.hidden_sizes == (16,) and resumed.config.seed == 3
    assert resume_state(resumed).env_steps >= 1000
