"""Run folders never mix: one run per folder, fresh numbered folders, runs/latest a pointer."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest

import tests.tiny_envs  # noqa: F401 - registers Guess-v0
from pgdeploy.errors import RunFolderError, WriteError
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.folder import new_run_dir
from pgdeploy.training.launch import run_training
from pgdeploy.training.train import train

CONFIG = TrainConfig(env_id="Guess-v0", num_envs=2, hidden_sizes=(8,), total_timesteps=48)


def test_default_folders_are_fresh_and_latest_points_to_the_newest(tmp_path: Path) -> None:
    first = run_training(CONFIG, progress=False, runs_root=tmp_path)
    second = run_training(CONFIG, progress=False, runs_root=tmp_path)
    assert first.checkpoint_path == tmp_path / "Guess-v0-001" / "model.pt"
    assert second.checkpoint_path == tmp_path / "Guess-v0-002" / "model.pt"
    assert (tmp_path / "latest").resolve() == (tmp_path / "Guess-v0-002")
    assert new_run_dir("Acrobot-v1", root=tmp_path).name == "Acrobot-v1-001"


def test_a_folder_holding_a_run_is_refused_unless_overwrite(tmp_path: Path) -> None:
    train(CONFIG, out_dir=tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"an export of the old run")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = dataclasses.replace(CONFIG, seed=7)
    with pytest.raises(RunFolderError, match=r"already holds a run \(config.json, metrics.csv"):
        run_training(other, tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    run_training(other, tmp_path, progress=False, overwrite=True)
    assert load_checkpoint(tmp_path / "model.pt").config.seed == 7
    assert not (tmp_path / "model.onnx").exists()  # the old run's export went with it


def test_disk_full_mid_run_keeps_the_last_saved_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(dataclasses.replace(CONFIG, checkpoint_every=1), out_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    saved = load_checkpoint(tmp_path / "model.pt")

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    more = dataclasses.replace(saved.config, total_timesteps=96)
    with pytest.raises(
        WriteError,
        match=r"No space left on device; .* still holds its previous checkpoint and artefacts",
    ):
        train(more, out_dir=tmp_path, resume_from=saved)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_folder_is_claimed_by_one_writer_at_a_time(tmp_path: Path) -> None:
    from pgdeploy.training.folder import RunFolder

    first, second = RunFolder(tmp_path / "run"), RunFolder(tmp_path / "run")
    assert first.claim()
    with pytest.raises(
        RunFolderError, match=rf"run is being written by another training run \(pid {os.getpid()}\)"
    ):
        second.prepare()
    with pytest.raises(RunFolderError, match="being written by another training run"):
        train(CONFIG, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model.pt").exists()
    first.release()
    assert second.claim() and (tmp_path / "run" / ".pgdeploy.lock").exists()
    second.release()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []


@pytest.mark.slow
def test_two_trainings_started_into_one_empty_folder_one_is_refused(tmp_path: Path) -> None:
    """The issue's race: both used to find the folder empty, and the first run was lost."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for trial in range(2):
        folder = tmp_path / f"run{trial}"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pgdeploy",
                    "train",
                    "--env",
                    "tests.tiny_envs:Guess-v0",
                    "--num-envs",
                    "2",
                    "--hidden-sizes",
                    "8",
                    "--total-timesteps",
                    "20000",
                    "--no-stop-on-solve",
                    "--seed",
                    str(seed),
                    "--out",
                    str(folder),
                    "-q",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=root,
            )
            for seed in (1, 2)
        ]
        outcomes = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)  # closes the pipes: no fd outlives the test
            outcomes.append((proc.returncode, out, err))
        codes = sorted(code for code, _, _ in outcomes)
        assert codes == [0, 1], outcomes
        loser = next(err for code, _, err in outcomes if code == 1)
        assert len(loser.strip().splitlines()) == 1, loser
        assert "being written by another training run" in loser or "already holds a run" in loser
        winner = 1 + [code for code, _, _ in outcomes].index(0)
        assert load_checkpoint(folder / "model.pt").config.seed == winner
