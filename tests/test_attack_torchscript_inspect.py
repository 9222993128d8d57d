"""Attack 2: ``pgdeploy inspect`` reads a TorchScript archive's metadata, never runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import ModelLoadError
from pgdeploy.export.formats import TORCHSCRIPT_METADATA
from pgdeploy.inspect import describe


class Noisy(torch.nn.Module):
    """A module whose ``__setstate__`` runs when the archive is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.x = 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    @torch.jit.export
    def __getstate__(self) -> tuple[int, bool]:
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        print("SETSTATE RAN")
        self.x = state[0]
        self.training = state[1]


def hostile_archive(exported_model: Path, path: Path) -> Path:
    """``Noisy`` saved with the real export's metadata record, as a downloaded file could be."""
    extra = {TORCHSCRIPT_METADATA: ""}
    torch.jit.load(  # type: ignore[no-untyped-call]
        str(exported_model / "model.torchscript.pt"), _extra_files=extra
    )
    torch.jit.save(torch.jit.script(Noisy()), str(path), _extra_files=extra)
    return path


def test_inspect_never_calls_torch_jit_load(
    exported_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = hostile_archive(exported_model, tmp_path / "model.pt")
    torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    assert "SETSTATE RAN" in capfd.readouterr().out  # loading it does run its code

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("inspect called torch.jit.load")

    monkeypatch.setattr(torch.jit, "load", refuse)
    info = describe(path)
    assert info["kind"] == "torchscript" and info["metadata"]["spec"]["env_id"] == "CartPole-v1"
    assert "TorchScript files are programs" in info["note"]
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0 and "env CartPole-v1" in result.output
    assert "SETSTATE RAN" not in capfd.readouterr().out


def test_an_archive_without_metadata_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(Noisy()), str(path))
    with pytest.raises(ModelLoadError, match="TorchScript archive without pgdeploy metadata"):
        describe(path)
