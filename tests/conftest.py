"""Shared fixtures: briefly trained, exported CartPole policies for the whole session.

Under ``pytest -n N`` every worker process would build each session fixture itself; the
models are instead built once per run, by whichever worker needs one first, in a folder
all workers share (the pattern pytest-xdist documents), so the suite trains and exports
each model once. Tests only read these folders.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest

from pgdeploy.training.config import TrainConfig
from pgdeploy.training.presets import preset_for


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test process: ``pytest -n 2`` already runs one process per core,
    and extra intra-op threads only contend (a tiny op such as ``triu`` went from ~3 us to
    over 1 ms per call on a busy 2-core machine). Training sets its own thread count."""
    import torch

    torch.set_num_threads(1)


def _trained_and_exported(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: TrainConfig
) -> Path:
    """``name``/ with model.pt, model.onnx and model.torchscript.pt, built once per run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by its workers
    folder = root / name
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".complete").exists():
            from pgdeploy.export import export_checkpoint
            from pgdeploy.training.train import train

            shutil.rmtree(folder, ignore_errors=True)
            train(config, out_dir=folder)
            export_checkpoint(folder / "model.pt", n_random=512, n_on_policy=512)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model.pt, model.onnx and model.torchscript.pt (briefly trained CartPole).

    A short run keeps the suite fast; parity does not need a good policy, only a real one
    whose weights are not at their initial values. Trained as ``pgdeploy train`` trains
    CartPole (its preset: lr 0.05, no entropy bonus), so observation normalisation is off
    and its folding into the graph is the identity here: :func:`exported_normalized_model`
    exercises it.
    """
    config = TrainConfig(seed=0, total_timesteps=5_000, **preset_for("CartPole-v1"))
    return _trained_and_exported(tmp_path_factory, "cartpole", config)


@pytest.fixture(scope="session")
def exported_normalized_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like :func:`exported_model`, trained with ``normalize_obs=True``.

    Its running mean/variance are far from (0, 1), so the export must fold them into the
    graph's clip bounds and first layer; parity on this model is what checks the folding.
    """
    config = TrainConfig(
        seed=0, total_timesteps=5_000, normalize_obs=True, **preset_for("CartPole-v1")
    )
    return _trained_and_exported(tmp_path_factory, "cartpole_normalized", config)
