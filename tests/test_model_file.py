"""Every kind of bad model file is a typed error at load time, never at the first act."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.external_data_helper import set_external_data

from pgdeploy.errors import ModelLoadError
from pgdeploy.runtime import Agent

NOT_OURS = "is not a pgdeploy policy graph: "


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def mutated(
    exported_model: Path, tmp_path: Path, change: Callable[[onnx.ModelProto], None]
) -> Path:
    model = onnx.load(str(exported_model / "model.onnx"))
    change(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def rename(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in (*model.graph.input, *model.graph.output):
        if value.name == old:
            value.name = new


def set_meta(model: onnx.ModelProto, key: str, value: object) -> None:
    for prop in model.metadata_props:
        if prop.key == f"pgdeploy.{key}":
            prop.value = json.dumps(value)
            return
    raise AssertionError(f"no metadata key {key}")


def get_meta(model: onnx.ModelProto, key: str) -> object:
    return next(json.loads(p.value) for p in model.metadata_props if p.key == f"pgdeploy.{key}")


def test_good_model_loads_and_acts(exported_model: Path) -> None:
    agent = Agent.load(exported_model / "model.onnx", deterministic=True)
    assert agent.act(np.zeros(4, np.float32)) in (0, 1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Agent.load(tmp_path / "nope.onnx")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"is a directory, expected an .onnx file"):
        Agent.load(tmp_path)


def test_zero_bytes(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"is empty \(0 bytes\)"):
        Agent.load(write(tmp_path, "empty.onnx", b""))


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated(exported_model: Path, tmp_path: Path, fraction: float) -> None:
    data = (exported_model / "model.onnx").read_bytes()
    path = write(tmp_path, "cut.onnx", data[: int(len(data) * fraction)])
    with pytest.raises(ModelLoadError, match=r"cannot load .* as an ONNX model"):
        Agent.load(path)


def test_random_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "noise.onnx", np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="not an ONNX model, or it is truncated"):
        Agent.load(path)


def test_text_file(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.onnx", b"this is not a model\n" * 20)
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        Agent.load(path)


@pytest.mark.parametrize("name", ["model.pt", "model.torchscript.pt"])
def test_checkpoint_renamed_to_onnx(exported_model: Path, tmp_path: Path, name: str) -> None:
    path = write(tmp_path, "model.onnx", (exported_model / name).read_bytes())
    with pytest.raises(ModelLoadError, match=r"is a zip archive .*pgdeploy export"):
        Agent.load(path)


def test_wrong_input_name(exported_model: Path, tmp_path: Path) -> None:
    path = mutated(exported_model, tmp_path, lambda m: rename(m, "obs", "observation"))
    with pytest.raises(
        ModelLoadError, match=NOT_OURS + r"graph: node 0 \('Max'\): input is 'observation'"
    ):
        Agent.load(path)


def test_wrong_output_name(exported_model: Path, tmp_path: Path) -> None:
    path = mutated(exported_model, tmp_path, lambda m: rename(m, "probs", "p"))
    with pytest.raises(ModelLoadError, match=NOT_OURS + "graph: node 5 .*output is 'p'"):
        Agent.load(path)


def test_obs_dim_differs_from_metadata(exported_model: Path, tmp_path: Path) -> None:
    def change(model: onnx.ModelProto) -> None:
        spec = get_meta(model, "spec")
        assert isinstance(spec, dict)
        spec.update(obs_dim=5, obs_low=[None] * 5, obs_high=[None] * 5, observation_space=None)
        set_meta(model, "spec", spec)

    path = mutated(exported_model, tmp_path, change)
    with pytest.raises(
        ModelLoadError, match=r"is not a pgdeploy policy: clip_low has shape \[4\], expected \[5\]"
    ):
        Agent.load(path)


def test_n_actions_differs_from_metadata(exported_model: Path, tmp_path: Path) -> None:
    def change(model: onnx.ModelProto) -> None:
        spec = get_meta(model, "spec")
        assert isinstance(spec, dict)
        spec.update(n_actions=3, action_names=[], action_space=None)
        set_meta(model, "spec", spec)

    path = mutated(exported_model, tmp_path, change)
    with pytest.raises(
        ModelLoadError, match=r"is not a pgdeploy policy: the last layer has 2 outputs, .* 3"
    ):
        Agent.load(path)


def test_unknown_format_version(exported_model: Path, tmp_path: Path) -> None:
    path = mutated(exported_model, tmp_path, lambda m: set_meta(m, "format_version", 99))
    with pytest.raises(ModelLoadError, match=r"format version 99, expected one of \[3\]"):
        Agent.load(path)


@pytest.mark.parametrize("version", [1, 2])
def test_earlier_format_versions_are_refused_with_re_export(
    exported_model: Path, tmp_path: Path, version: int
) -> None:
    path = mutated(exported_model, tmp_path, lambda m: set_meta(m, "format_version", version))
    with pytest.raises(
        ModelLoadError, match=rf"format version {version}, from an earlier pgdeploy; re-export"
    ):
        Agent.load(path)


def test_no_pgdeploy_metadata(exported_model: Path, tmp_path: Path) -> None:
    path = mutated(exported_model, tmp_path, lambda m: m.ClearField("metadata_props"))
    with pytest.raises(ModelLoadError, match="has no pgdeploy metadata; export it"):
        Agent.load(path)


def test_malformed_metadata(exported_model: Path, tmp_path: Path) -> None:
    def change(model: onnx.ModelProto) -> None:
        next(p for p in model.metadata_props if p.key == "pgdeploy.spec").value = "{not json"

    path = mutated(exported_model, tmp_path, change)
    with pytest.raises(ModelLoadError, match="malformed pgdeploy metadata"):
        Agent.load(path)


def test_external_data_outside_folder_is_refused(exported_model: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)

    def change(model: onnx.ModelProto) -> None:
        init = model.graph.initializer[0]
        set_external_data(init, location="../secret.bin")
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL

    (tmp_path / "sub").mkdir()
    path = mutated(exported_model, tmp_path / "sub", change)
    with pytest.raises(ModelLoadError, match=NOT_OURS + "initializer 'clip_low' is not raw"):
        Agent.load(path)


def test_custom_op_domain_is_refused(exported_model: Path, tmp_path: Path) -> None:
    def change(model: onnx.ModelProto) -> None:
        model.graph.node[0].domain = "com.example.evil"
        model.opset_import.append(helper.make_opsetid("com.example.evil", 1))

    path = mutated(exported_model, tmp_path, change)
    with pytest.raises(ModelLoadError, match=NOT_OURS):
        Agent.load(path)


def test_sha256_check(exported_model: Path) -> None:
    path = exported_model / "model.onnx"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert Agent.load(path, expected_sha256=digest.upper()).model.sha256 == digest
    with pytest.raises(ModelLoadError, match=r"has sha256 .* the file was modified"):
        Agent.load(path, expected_sha256="0" * 64)
