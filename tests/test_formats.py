"""The ONNX graph from the fast tracer is the one the torch.export-based exporter writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from pgdeploy.export.formats import onnx_bytes
from pgdeploy.export.verify import on_policy_observations
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.policy import DeployablePolicy

#: What every exported softmax policy graph is made of (no Shape/Trilu/Constant nodes).
OPS = [
    "Max",
    "Min",
    "Gemm",
    "Relu",
    "Gemm",
    "Softmax",
    "ArgMax",
    "MatMul",
    "LessOrEqual",
    "Cast",
    "ReduceSum",
]


def _graph(exported_model: Path, exporter: str) -> onnx.ModelProto:
    checkpoint = load_checkpoint(exported_model / "model.pt")
    deployable = DeployablePolicy(checkpoint.build_policy()).eval()
    return onnx.load_from_string(onnx_bytes(deployable, checkpoint, exporter=exporter))  # type: ignore[arg-type]


def _batch_dims(model: onnx.ModelProto) -> list[str]:
    values = [*model.graph.input, *model.graph.output]
    return [v.type.tensor_type.shape.dim[0].dim_param for v in values]


def test_traced_graph_has_only_the_policy_ops_and_a_batch_axis(exported_model: Path) -> None:
    model = _graph(exported_model, "trace")
    assert [n.op_type for n in model.graph.node] == OPS
    assert _batch_dims(model) == ["batch"] * 5
    names = {i.name for i in model.graph.initializer}
    assert {"clip_low", "clip_high", "net.0.weight", "net.2.bias"} <= names
    (cdf,) = [i for i in model.graph.initializer if i.name == model.graph.node[7].input[1]]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(cdf), [[1.0], [0.0]])


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_graph(exported_model: Path) -> None:
    traced, dynamo = _graph(exported_model, "trace"), _graph(exported_model, "dynamo")
    assert [n.op_type for n in dynamo.graph.node] == [n.op_type for n in traced.graph.node]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in dynamo.graph.initializer}
    shared = [i for i in traced.graph.initializer if i.name in weights]
    assert len(shared) == 6  # clip bounds and the two layers' weights and biases
    for init in shared:
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), weights[init.name])


def test_on_policy_observations_are_seeded_and_exclude_final_states(exported_model: Path) -> None:
    policy = load_checkpoint(exported_model / "model.pt").build_policy()
    first = on_policy_observations(policy, 700, seed=1)
    assert first.shape == (700, 4) and first.dtype == np.float32
    np.testing.assert_array_equal(first, on_policy_observations(policy, 700, seed=1))
    assert not np.array_equal(first, on_policy_observations(policy, 700, seed=2))
    # CartPole terminates past |x| 2.4 or |theta| 0.2095: final states are not collected.
    assert np.abs(first[:, 0]).max() <= 2.4 and np.abs(first[:, 2]).max() <= 0.2095
    assert on_policy_observations(policy, 0, seed=1).shape == (0, 4)
