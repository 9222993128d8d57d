"""model.pt: never unpickles code; bad versions, keys and shapes are CheckpointErrors."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.envs.making import policy_spec
from pgdeploy.errors import CheckpointError
from pgdeploy.training.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_policy_state,
    save_checkpoint,
)
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import SoftmaxPolicy


class CreatesFile:
    """Unpickling this calls ``os.mkdir(marker)``: the marker appears only if code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def small_checkpoint(hidden: int = 8) -> Checkpoint:
    config = TrainConfig(hidden_sizes=(hidden,))
    spec = policy_spec(config.env_id)
    policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
    return Checkpoint(config=config, spec=spec, state_dict=policy.state_dict())


def saved_dict(tmp_path: Path, data: Any, name: str = "model.pt") -> Path:
    path = tmp_path / name
    torch.save(data, path)
    return path


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint whose pickle would create ``marker`` when loaded unsafely."""
    marker = tmp_path / "pwned.txt"
    data = small_checkpoint().to_dict()
    data["training"] = {"note": CreatesFile(marker)}
    return saved_dict(tmp_path, data, "evil.pt"), marker


def test_round_trip(tmp_path: Path) -> None:
    checkpoint = small_checkpoint()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "model.pt", checkpoint))
    assert loaded.config == checkpoint.config and loaded.spec == checkpoint.spec
    for name, value in checkpoint.state_dict.items():
        assert torch.equal(loaded.state_dict[name], value)


def test_malicious_reduce_is_refused_and_does_not_run(evil: tuple[Path, Path]) -> None:
    path, marker = evil
    with pytest.raises(CheckpointError, match=r"refused to load .*nothing from it was executed"):
        load_checkpoint(path)
    assert not marker.exists()
    # The payload is real: an unsafe load does run it (so the check above has teeth).
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_cli_export_of_malicious_checkpoint_fails_cleanly(evil: tuple[Path, Path]) -> None:
    path, marker = evil
    result = CliRunner().invoke(main, ["export", str(path)])
    assert result.exit_code == 1
    assert "Error: refused to load" in result.output
    assert "could run code" in result.output
    assert not marker.exists()
    assert not (path.parent / "model.onnx").exists()


def test_wrong_format_version(tmp_path: Path) -> None:
    data = small_checkpoint().to_dict()
    data["format_version"] = 7
    with pytest.raises(CheckpointError, match=r"has format version 7, expected one of \[1, 2, 3\]"):
        load_checkpoint(saved_dict(tmp_path, data))


@pytest.mark.parametrize("key", ["format_version", "config", "spec", "state_dict", "training"])
def test_missing_keys(tmp_path: Path, key: str) -> None:
    data = small_checkpoint().to_dict()
    del data[key]
    with pytest.raises(CheckpointError, match=rf"is missing keys \['{key}'\]"):
        load_checkpoint(saved_dict(tmp_path, data))


def test_not_a_dict(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a list, expected a dict"):
        load_checkpoint(saved_dict(tmp_path, [1, 2, 3]))


@pytest.mark.parametrize("key", ["training", "resume", "config"])
def test_wrong_section_type(tmp_path: Path, key: str) -> None:
    data = small_checkpoint().to_dict()
    data[key] = [1]
    with pytest.raises(CheckpointError, match=rf"'{key}' is a list, expected a dict"):
        load_checkpoint(saved_dict(tmp_path, data))


def test_mismatched_weight_shapes(tmp_path: Path) -> None:
    data = small_checkpoint(hidden=8).to_dict()
    data["state_dict"] = dict(small_checkpoint(hidden=16).state_dict)
    with pytest.raises(
        CheckpointError, match=r"\['net.0.weight'\] has shape \(16, 4\), expected \(8, 4\)"
    ):
        load_checkpoint(saved_dict(tmp_path, data))


def test_missing_weight(tmp_path: Path) -> None:
    data = small_checkpoint().to_dict()
    del data["state_dict"]["net.2.bias"]
    with pytest.raises(CheckpointError, match=r"missing \['net.2.bias'\], unexpected \[\]"):
        load_checkpoint(saved_dict(tmp_path, data))


def test_non_tensor_weights(tmp_path: Path) -> None:
    data = small_checkpoint().to_dict()
    data["state_dict"]["net.2.bias"] = [0.0, 0.0]
    with pytest.raises(CheckpointError, match="'state_dict' must map names to tensors"):
        load_checkpoint(saved_dict(tmp_path, data))


def test_invalid_config_value(tmp_path: Path) -> None:
    data = small_checkpoint().to_dict()
    data["config"]["gamma"] = 3.0
    with pytest.raises(CheckpointError, match=r"invalid config or spec: .*'gamma' must be in"):
        load_checkpoint(saved_dict(tmp_path, data))


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "good.pt", small_checkpoint()).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint .*truncated"):
        load_checkpoint(cut)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("hello.txt", "hi")
    other = tmp_path / "other.pt"
    other.write_bytes(zipped.getvalue())
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(other)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist, expected a model.pt file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_wrong_weight_dtype(tmp_path: Path) -> None:
    data = small_checkpoint().to_dict()
    data["state_dict"]["net.0.bias"] = data["state_dict"]["net.0.bias"].double()
    torch.save(data, tmp_path / "model.pt")
    with pytest.raises(
        CheckpointError, match=r"\['net.0.bias'\] has dtype torch.float64, expected torch.float32"
    ):
        load_checkpoint(tmp_path / "model.pt")


def test_policy_state_is_checked_before_loading() -> None:
    checkpoint = small_checkpoint()
    policy = checkpoint.build_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    state = dict(checkpoint.state_dict)
    state.pop("net.2.weight")
    state["net.0.weight"] = torch.ones_like(state["net.0.weight"])
    with pytest.raises(CheckpointError, match=r"missing \['net.2.weight'\]"):
        load_policy_state(policy, state, source="test")
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())
