"""The exported formats: the canonical ONNX graph of the checkpoint's network, and
TorchScript computing the same unfolded normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from pgdeploy.export.formats import ExportFiles, load_torchscript, onnx_bytes
from pgdeploy.export.observations import on_policy_rows
from pgdeploy.export.source import checkpoint_source
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.policy import network_from_policy

#: What every exported softmax policy graph with one hidden layer is made of.
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


def _graph(folder: Path) -> onnx.ModelProto:
    checkpoint = load_checkpoint(folder / "model.pt")
    policy = checkpoint.build_policy()
    files = ExportFiles.make(checkpoint.spec, network_from_policy(policy), {}, "0" * 64)
    return onnx.load_from_string(onnx_bytes(files))


def _batch_dims(model: onnx.ModelProto) -> list[str]:
    values = [*model.graph.input, *model.graph.output]
    return [v.type.tensor_type.shape.dim[0].dim_param for v in values]


def test_graph_has_only_the_policy_ops_and_a_batch_axis(exported_model: Path) -> None:
    model = _graph(exported_model)
    assert [n.op_type for n in model.graph.node] == OPS
    assert _batch_dims(model) == ["batch"] * 5
    names = [i.name for i in model.graph.initializer]
    assert names == [
        "clip_low",
        "clip_high",
        "layer0.weight",
        "layer0.bias",
        "layer1.weight",
        "layer1.bias",
        "cdf_upper",
        "sum_axes",
    ]
    (cdf,) = [i for i in model.graph.initializer if i.name == model.graph.node[7].input[1]]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(cdf), [[1.0], [0.0]])


def test_normalisation_is_sub_then_div_in_onnx_and_torchscript(
    exported_normalized_model: Path,
) -> None:
    """Unfolded: the graph subtracts the mean and divides by the std, as training does."""
    model = _graph(exported_normalized_model)
    assert [n.op_type for n in model.graph.node][:4] == ["Max", "Min", "Sub", "Div"]
    scripted = load_torchscript(exported_normalized_model / "model.torchscript.pt")
    assert bool(scripted.normalize)
    policy = load_checkpoint(exported_normalized_model / "model.pt").build_policy()
    np.testing.assert_array_equal(scripted.obs_std.numpy(), policy.obs_std().numpy())
    obs = torch.randn(64, 4)
    with torch.no_grad():
        np.testing.assert_array_equal(scripted.features(obs).numpy(), policy.features(obs).numpy())


def test_on_policy_rows_are_seeded_and_exclude_final_states(exported_model: Path) -> None:
    source = checkpoint_source(exported_model / "model.pt")

    def rows(n: int, seed: int) -> np.ndarray:
        return on_policy_rows(source.spec, "CartPole-v1", source.probs, n, seed)

    first = rows(700, seed=1)
    assert first.shape == (700, 4) and first.dtype == np.float32
    np.testing.assert_array_equal(first, rows(700, seed=1))
    assert not np.array_equal(first, rows(700, seed=2))
    # CartPole terminates past |x| 2.4 or |theta| 0.2095: final states are not collected.
    assert np.abs(first[:, 0]).max() <= 2.4 and np.abs(first[:, 2]).max() <= 0.2095
    assert rows(0, seed=1).shape == (0, 4)
    # each of the lockstep envs starts from its own seeded reset
    starts = first[: min(16, 700)]
    assert len({tuple(row) for row in starts}) == len(starts)
