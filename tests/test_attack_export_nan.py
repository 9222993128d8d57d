"""Attack 4: export never passes NaN, a NaN tolerance, or weights it would silently cast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import CheckpointError, ExportVerificationError, InvalidArgumentError
from pgdeploy.export import export_checkpoint
from pgdeploy.export.pipeline import check_atol
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.resume import resume_state
from tests.attack_files import checkpoint_dict, save_checkpoint_dict


def test_overflowing_weights_are_refused(exported_model: Path, tmp_path: Path) -> None:
    data = checkpoint_dict(exported_model)
    data["state_dict"]["net.0.weight"][:, 0] = 1e38  # finite weights, NaN probabilities
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(ExportVerificationError, match=r"not finite.*nothing was written"):
        export_checkpoint(path, n_random=64, n_on_policy=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_nan_weights_are_refused(exported_model: Path, tmp_path: Path) -> None:
    data = checkpoint_dict(exported_model)
    data["state_dict"]["net.2.bias"][0] = float("nan")
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(ExportVerificationError, match=r"\['net.2.bias'\] hold NaN or infinity"):
        export_checkpoint(path, n_random=64, n_on_policy=64)


def test_resuming_nan_weights_is_refused(exported_model: Path, tmp_path: Path) -> None:
    data = checkpoint_dict(exported_model)
    data["state_dict"]["net.0.weight"][0, 0] = float("inf")
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"cannot be resumed: weights \['net.0.weight'\]"):
        checkpoint = load_checkpoint(path)
        resume_state(checkpoint, checkpoint.config, checkpoint.spec)


@pytest.mark.parametrize("atol", [float("nan"), float("inf"), -1e-6, 0.0, "1e-6", True])
def test_atol_must_be_finite_and_positive(atol: object) -> None:
    with pytest.raises(InvalidArgumentError, match="atol must be a finite number > 0"):
        check_atol(atol)


def test_cli_atol_nan_is_refused(exported_model: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(exported_model / "model.pt"), "--atol", "nan"])
    assert result.exit_code == 1
    assert "atol must be a finite number > 0, got nan" in result.output


def test_a_nan_difference_fails_the_comparison() -> None:
    diff = float("nan")
    assert not diff <= 1e-6  # the exporter's test; "diff > atol" would have passed it


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int64, torch.bool])
def test_complex_and_integer_weights_are_refused(
    exported_model: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    data = checkpoint_dict(exported_model)
    data["state_dict"]["net.0.weight"] = data["state_dict"]["net.0.weight"].to(dtype)
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"'net.0.weight'\] has dtype .*real floating-point"):
        load_checkpoint(path)


def test_nan_weights_are_refused_by_the_c_target_even_unverified(
    exported_model: Path, tmp_path: Path
) -> None:
    from pgdeploy.export import export_c

    data = checkpoint_dict(exported_model)
    data["state_dict"]["net.2.bias"][0] = float("nan")
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(ExportVerificationError, match=r"\['net.2.bias'\] hold NaN or infinity"):
        export_c(path, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
