"""Both files or neither: a mismatched model.onnx / model.torchscript.pt pair is refused.

The pair is written as an interrupted export would leave it: the ONNX file of one export
beside the TorchScript file of another (a second checkpoint), and an old (format 2)
TorchScript file with no pair id.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from pgdeploy.errors import ModelLoadError
from pgdeploy.export import export_checkpoint
from pgdeploy.export.formats import load_torchscript
from pgdeploy.inspect import describe
from pgdeploy.runtime import Agent
from pgdeploy.runtime.pairing import read_pair_id
from pgdeploy.spec import is_pair_id


@pytest.fixture(scope="module")
def two_exports(
    exported_model: Path, exported_normalized_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    folders = []
    for source in (exported_model, exported_normalized_model):
        folder = tmp_path_factory.mktemp("pair")
        for name in ("model.pt", "model.onnx", "model.torchscript.pt"):
            shutil.copy(source / name, folder / name)
        folders.append(folder)
    return folders[0], folders[1]


def test_an_export_carries_one_pair_id_in_both_files(two_exports: tuple[Path, Path]) -> None:
    first, _ = two_exports
    ids = [read_pair_id(f / n) for f in two_exports for n in ("model.onnx", "model.torchscript.pt")]
    assert all(is_pair_id(i) for i in ids)
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    Agent.load(first / "model.onnx")
    load_torchscript(first / "model.torchscript.pt")
    assert describe(first / "model.onnx")["pair"] == "matches model.torchscript.pt"
    assert describe(first / "model.torchscript.pt")["pair_id"] == ids[0]


def test_reexporting_the_same_checkpoint_gives_the_same_pair(
    exported_model: Path, tmp_path: Path
) -> None:
    shutil.copy(exported_model / "model.pt", tmp_path / "model.pt")
    export_checkpoint(tmp_path / "model.pt", n_random=64, n_on_policy=0)
    assert read_pair_id(tmp_path / "model.onnx") == read_pair_id(exported_model / "model.onnx")
    assert (tmp_path / "model.onnx").read_bytes() == (exported_model / "model.onnx").read_bytes()


def test_a_mismatched_pair_is_refused_by_each_loader(
    two_exports: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = two_exports
    shutil.copy(first / "model.onnx", tmp_path / "model.onnx")  # the new file ...
    shutil.copy(second / "model.torchscript.pt", tmp_path / "model.torchscript.pt")  # ... old
    with pytest.raises(ModelLoadError, match=r"are not one export \(pair id [0-9a-f]{64} vs"):
        Agent.load(tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="are not one export"):
        load_torchscript(tmp_path / "model.torchscript.pt")
    assert describe(tmp_path / "model.onnx")["pair"] == "DOES NOT match model.torchscript.pt"
    # alone, under another name, each file is a model of its own
    shutil.move(tmp_path / "model.torchscript.pt", tmp_path / "other.torchscript.pt")
    Agent.load(tmp_path / "model.onnx")


def test_a_sibling_without_pair_id_is_a_mismatch(
    two_exports: tuple[Path, Path], tmp_path: Path
) -> None:
    """A TorchScript file of format 2 (no pair id) beside a new model.onnx."""
    first, _ = two_exports
    shutil.copy(first / "model.onnx", tmp_path / "model.onnx")
    old = tmp_path / "model.torchscript.pt"
    with (
        zipfile.ZipFile(first / "model.torchscript.pt") as src,
        zipfile.ZipFile(old, "w") as dst,
    ):
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/extra/pgdeploy.json"):
                props = json.loads(data)
                del props["pgdeploy.pair_id"]
                data = json.dumps(props).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelLoadError, match=r"vs None\)"):
        Agent.load(tmp_path / "model.onnx")
    old.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=r"vs unreadable"):
        Agent.load(tmp_path / "model.onnx")
