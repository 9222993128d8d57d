"""Attack 5: a small file must not buy unbounded work or memory.

Every refusal here happens before the expensive step: the canonical-graph comparison and
the size limits before onnxruntime builds a session (no operator outside pgdeploy's own
graph ever runs, so no file can ask for a loop, a shape or a broadcast of its choosing),
the zip records before ``torch.load``,
``hidden_sizes`` before a layer is allocated, YAML aliases before they are expanded.
"""

from __future__ import annotations

import dataclasses
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from pgdeploy.errors import CheckpointError, ConfigError, ModelLoadError
from pgdeploy.inspect import describe
from pgdeploy.runtime import Agent
from pgdeploy.runtime import agent as agent_module
from pgdeploy.runtime.onnx_graph import read_parts
from pgdeploy.runtime.policy_graph import build_model
from pgdeploy.spec import PolicySpec
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config_files import load_config_file
from tests.attack_files import (
    checkpoint_dict,
    constant,
    load_onnx,
    loop_node,
    save_checkpoint_dict,
    save_onnx,
    with_node_before_outputs,
)

NOT_OURS = "is not a pgdeploy policy graph: "


def test_constant_of_shape_32768_squared_is_refused_before_onnxruntime(
    exported_model: Path, tmp_path: Path
) -> None:
    model = load_onnx(exported_model)
    model.graph.node.append(constant("shape", np.array([32768, 32768], np.int64)))
    with_node_before_outputs(model, helper.make_node("ConstantOfShape", ["shape"], ["big"]))
    path = save_onnx(model, tmp_path / "model.onnx")
    assert path.stat().st_size < 20_000
    with pytest.raises(ModelLoadError, match=NOT_OURS):
        Agent.load(path)


def test_a_loop_of_1e8_trips_is_refused(exported_model: Path, tmp_path: Path) -> None:
    model = load_onnx(exported_model)
    model.graph.node.append(constant("trips", np.array(10**8, np.int64)))
    model.graph.node.append(loop_node(10**8))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=NOT_OURS + r"graph: node 11 \('Constant'\) where"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))
    assert time.perf_counter() - start < 60  # a guard against a hang, not a timing claim


@pytest.mark.parametrize(
    "op", ["Scan", "If", "Multinomial", "RandomNormal", "RandomUniformLike", "Expand", "Tile"]
)
def test_other_unbounded_operators_are_refused(
    exported_model: Path, tmp_path: Path, op: str
) -> None:
    model = load_onnx(exported_model)
    model.graph.node[3].op_type = op  # the Relu
    with pytest.raises(ModelLoadError, match=NOT_OURS + f"graph: node 3 .*op_type is '{op}'"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_subgraph_attributes_are_refused_even_on_allowed_ops(
    exported_model: Path, tmp_path: Path
) -> None:
    model = load_onnx(exported_model)
    body = loop_node(1).attribute[0]
    model.graph.node[3].attribute.append(body)
    with pytest.raises(ModelLoadError, match=NOT_OURS + r"graph: node 3 \('Relu'\): an extra"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_custom_domains_and_functions_are_refused(exported_model: Path, tmp_path: Path) -> None:
    model = load_onnx(exported_model)
    model.functions.add().name = "f"
    with pytest.raises(ModelLoadError, match=NOT_OURS + "an extra functions"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_tensor_dims_and_metadata_sizes_are_bounded(exported_model: Path) -> None:
    model = load_onnx(exported_model)
    huge = model.graph.initializer.add(name="huge", data_type=TensorProto.FLOAT)
    huge.dims.extend([2**20, 2**20])  # declared only: no data
    with pytest.raises(ModelLoadError, match=r"has an initializer of shape \[1048576, 1048576\]"):
        read_parts(model.SerializeToString(), source="f")
    model = load_onnx(exported_model)
    model.metadata_props.add(key="pad", value="x" * 2_000_000)
    with pytest.raises(ModelLoadError, match="1048576 bytes of metadata"):
        read_parts(model.SerializeToString(), source="f")
    model = load_onnx(exported_model)
    for i in range(100):
        model.metadata_props.add(key=f"k{i}", value="")
    with pytest.raises(ModelLoadError, match="more than 64 metadata entries"):
        read_parts(model.SerializeToString(), source="f")


def test_a_spec_that_would_need_huge_derived_constants_is_refused(exported_model: Path) -> None:
    """The builder's own constants (the sampler's A x (A-1) matrix) are bounded too."""
    network = Agent.load(exported_model / "model.onnx").model.network
    spec = Agent.load(exported_model / "model.onnx").spec.to_dict()
    layers = list(network.layers)
    layers[-1] = (np.zeros((2**13, 128), np.float32), np.zeros(2**13, np.float32))
    big = PolicySpec.from_dict(
        {**spec, "n_actions": 2**13, "action_names": [], "action_space": None}
    )
    with pytest.raises(ModelLoadError, match="derived constant elements"):
        build_model(big, dataclasses.replace(network, layers=tuple(layers)), {})


def test_model_size_caps_are_configurable(exported_model: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"more than the limit of 1000.*max_bytes=N"):
        Agent.load(exported_model / "model.onnx", max_bytes=1000)
    with pytest.raises(CheckpointError, match="more than the limit of 1000"):
        load_checkpoint(exported_model / "model.pt", max_bytes=1000)


def test_hidden_sizes_300_million_is_refused_before_allocation(
    exported_model: Path, tmp_path: Path
) -> None:
    data = checkpoint_dict(exported_model)
    data["config"]["hidden_sizes"] = [300_000_000]
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="'hidden_sizes' must be widths of at most 65536"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="hidden_sizes"):
        describe(path)


def test_shapes_are_checked_without_allocating(exported_model: Path, tmp_path: Path) -> None:
    data = checkpoint_dict(exported_model)
    data["config"]["hidden_sizes"] = [16384, 16384]  # 268M weights if it were built
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="state_dict does not fit its config"):
        load_checkpoint(path)


def deflated_zip(path: Path, declared: int) -> None:
    """A zip whose one record inflates to ``declared`` zero bytes (deflated: ~1000x smaller)."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("archive/data.pkl", "w", force_zip64=True) as handle,
    ):
        chunk = bytes(1 << 24)
        for _ in range(declared // len(chunk)):
            handle.write(chunk)


def test_a_deflated_record_is_refused_before_inflating(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    deflated_zip(path, 1 << 28)  # 256 MiB declared, ~260 KB on disk
    assert path.stat().st_size < 1 << 20
    with pytest.raises(
        CheckpointError, match=r"compressed record 'archive/data.pkl'.*uncompressed"
    ):
        load_checkpoint(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.infolist()[0].file_size == 1 << 28


def test_yaml_billion_laughs_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than 10000 values through aliases"):
        load_config_file(path)


def test_probs_runs_huge_batches_in_chunks(
    exported_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent.load(exported_model / "model.onnx")
    obs = np.random.default_rng(0).uniform(-0.2, 0.2, (1000, 4)).astype(np.float32)
    whole = agent.probs(obs)
    calls: list[int] = []
    run = agent._session.run
    monkeypatch.setattr(agent_module, "BATCH_CHUNK", 64)
    monkeypatch.setattr(
        agent._session, "run", lambda n, f: calls.append(len(f["obs"])) or run(n, f)
    )
    np.testing.assert_array_equal(agent.probs(obs), whole)
    assert max(calls) == 64 and sum(calls) == 1000
