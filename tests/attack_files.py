"""Builders of hostile policy files for the attack tests (built in the test, never checked in).

Each builder starts from the real exported CartPole files of the ``exported_model``
fixture and changes exactly what one attack changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper


def load_onnx(exported_model: Path) -> onnx.ModelProto:
    return onnx.load(str(exported_model / "model.onnx"))


def save_onnx(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def set_meta(model: onnx.ModelProto, key: str, value: Any) -> None:
    for prop in model.metadata_props:
        if prop.key == f"pgdeploy.{key}":
            prop.value = value if isinstance(value, str) else json.dumps(value)
            return
    raise AssertionError(f"no metadata key {key}")


def get_meta(model: onnx.ModelProto, key: str) -> Any:
    return next(json.loads(p.value) for p in model.metadata_props if p.key == f"pgdeploy.{key}")


def set_spec(model: onnx.ModelProto, **changes: Any) -> None:
    spec = get_meta(model, "spec")
    spec.update(changes)
    set_meta(model, "spec", spec)


def producer(model: onnx.ModelProto, output: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if output in n.output)


def reroute(model: onnx.ModelProto, output: str, nodes: list[onnx.NodeProto]) -> None:
    """Make ``output`` the result of ``nodes`` applied to the old ``output`` (named ``raw``)."""
    node = producer(model, output)
    node.output[:] = ["raw" if o == output else o for o in node.output]
    for other in model.graph.node:
        if other is not node:
            other.input[:] = ["raw" if i == output else i for i in other.input]
    model.graph.node.extend(nodes)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_v")
    )


def with_node_before_outputs(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Insert a node whose result (scaled by 0) is added to the probabilities, so it runs."""
    reroute(
        model,
        "probs",
        [
            node,
            helper.make_node("ReduceSum", [node.output[0]], ["big_sum"], keepdims=0),
            constant("zero", np.zeros((), np.float32)),
            helper.make_node("Mul", ["big_sum", "zero"], ["big_zero"]),
            helper.make_node("Add", ["raw", "big_zero"], ["probs"]),
        ],
    )


def loop_node(trip_count: int) -> onnx.NodeProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )
    return helper.make_node("Loop", ["trips", ""], ["loop_out"], body=body)


def checkpoint_dict(exported_model: Path) -> dict[str, Any]:
    data: dict[str, Any] = torch.load(exported_model / "model.pt", weights_only=True)
    return data


def save_checkpoint_dict(data: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def marker_module(folder: Path, name: str) -> Path:
    """``folder/name.py`` that writes ``folder/MARKER`` when imported; returns the marker path."""
    marker = folder / "MARKER"
    (folder / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
    )
    return marker
