"""Shared fixtures: one quickly trained, exported CartPole policy for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdeploy.training.config import TrainConfig


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model.pt, model.onnx and model.torchscript.pt (briefly trained CartPole).

    A short run keeps the suite fast; parity does not need a good policy, only a real one
    whose observation statistics and weights are not at their initial values.
    """
    from pgdeploy.export import export_checkpoint
    from pgdeploy.training.train import train

    folder = tmp_path_factory.mktemp("cartpole")
    train(TrainConfig(seed=0, total_timesteps=5_000), out_dir=folder)
    export_checkpoint(folder / "model.pt", n_random=512, n_on_policy=512)
    return folder
