"""Only pgdeploy's own graph runs: every mutation of a canonical file is refused unread.

Families built here from a real export: every node's op type, every attribute changed,
added and removed, every node removed, every node input rewired, an extra node,
initializers added and renamed, the issue's Shape-based batch trick, a greedy flip on an
observation region, the broadcast bomb, extra outputs, extra metadata, and the fuzz
generator's operator swaps and shape edits. Each member must be refused with "not a
pgdeploy policy graph" (or another one-line ModelLoadError), and onnxruntime must never
be handed its bytes: an ``InferenceSession`` spy records everything it is given.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from pgdeploy.errors import ModelLoadError, ModelSpecError
from pgdeploy.runtime import Agent
from tests.attack_files import constant, load_onnx, reroute

NOT_OURS = "is not a pgdeploy policy graph: "


@pytest.fixture
def ort_spy(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every model onnxruntime is asked to build, recorded (and then built for real)."""
    seen: list[bytes] = []
    real = onnxruntime.InferenceSession

    def spy(model: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(
            bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        )
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    return seen


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def node_mutations(base: onnx.ModelProto) -> Iterator[tuple[str, onnx.ModelProto]]:
    for i, node in enumerate(base.graph.node):
        for op in ("Identity", "Shape", "Relu", "Add", "Max"):
            if op != node.op_type:
                m = copy(base)
                m.graph.node[i].op_type = op
                yield f"node {i} op {op}", m
        m = copy(base)
        del m.graph.node[i]
        yield f"node {i} removed", m
        m = copy(base)
        m.graph.node[i].attribute.add().CopyFrom(helper.make_attribute("axis", 0))
        yield f"node {i} extra attribute", m
        m = copy(base)
        m.graph.node[i].domain = "com.example.evil"
        yield f"node {i} custom domain", m
        for a, attr in enumerate(node.attribute):
            m = copy(base)
            target = m.graph.node[i].attribute[a]
            if target.type == onnx.AttributeProto.INT:
                target.i += 1
            elif target.type == onnx.AttributeProto.FLOAT:
                target.f *= 2
            else:
                target.ints.append(0)
            yield f"node {i} attribute {attr.name} changed", m
            m = copy(base)
            del m.graph.node[i].attribute[a]
            yield f"node {i} attribute {attr.name} removed", m
        values = ["obs", "uniform", *(t.name for t in base.graph.initializer)]
        for j, name in enumerate(node.input):
            for other in values:
                if other != name:
                    m = copy(base)
                    m.graph.node[i].input[j] = other
                    yield f"node {i} input {j} -> {other}", m
    m = copy(base)
    m.graph.node.append(helper.make_node("Identity", ["probs"], ["spare"]))
    yield "extra Identity node", m
    m = copy(base)
    m.graph.node.insert(0, m.graph.node[-1])
    del m.graph.node[-1]
    yield "nodes reordered", m


def initializer_mutations(base: onnx.ModelProto) -> Iterator[tuple[str, onnx.ModelProto]]:
    for i, tensor in enumerate(base.graph.initializer):
        m = copy(base)
        m.graph.initializer[i].name = tensor.name + "_x"
        yield f"initializer {tensor.name} renamed", m
        m = copy(base)
        m.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), f"spare{i}"))
        yield "extra initializer", m
    for name in ("cdf_upper", "sum_axes"):
        m = copy(base)
        t = next(t for t in m.graph.initializer if t.name == name)
        array = numpy_helper.to_array(t).copy()
        array.flat[0] += 1
        t.CopyFrom(numpy_helper.from_array(array, name))
        yield f"derived constant {name} changed", m


def shape_trick(base: onnx.ModelProto) -> onnx.ModelProto:
    """The issue's lying graph: actions flipped at batch sizes other than 1 and 10."""
    m = copy(base)
    for output in ("greedy_action", "sampled_action"):
        reroute(
            m,
            output,
            [
                helper.make_node("Shape", ["obs"], [f"{output}_shape"], end=1),
                constant(f"{output}_one", np.array([1], np.int64)),
                constant(f"{output}_ten", np.array([10], np.int64)),
                helper.make_node("Equal", [f"{output}_shape", f"{output}_one"], [f"{output}_e1"]),
                helper.make_node("Equal", [f"{output}_shape", f"{output}_ten"], [f"{output}_e10"]),
                helper.make_node("Or", [f"{output}_e1", f"{output}_e10"], [f"{output}_honest"]),
                helper.make_node("Not", [f"{output}_honest"], [f"{output}_lie"]),
                helper.make_node(
                    "Cast", [f"{output}_lie"], [f"{output}_flip"], to=TensorProto.INT64
                ),
                helper.make_node("Sub", ["raw", f"{output}_flip"], [f"{output}_d"]),
                helper.make_node("Abs", [f"{output}_d"], [output]),
            ],
        )
        for node in m.graph.node:  # reroute names the old output "raw": keep them apart
            node.input[:] = [f"{output}_raw" if n == "raw" else n for n in node.input]
            node.output[:] = [f"{output}_raw" if n == "raw" else n for n in node.output]
    return m


def greedy_flip(base: onnx.ModelProto) -> onnx.ModelProto:
    """Greedy action flipped only where obs[0] is in (0.01, 0.05); probabilities honest."""
    m = copy(base)
    reroute(
        m,
        "greedy_action",
        [
            constant("col0", np.array([0], np.int64)),
            constant("lo", np.array(0.01, np.float32)),
            constant("hi", np.array(0.05, np.float32)),
            helper.make_node("Gather", ["obs", "col0"], ["x0"], axis=1),
            helper.make_node("Greater", ["x0", "lo"], ["above"]),
            helper.make_node("Less", ["x0", "hi"], ["below"]),
            helper.make_node("And", ["above", "below"], ["inside2"]),
            helper.make_node("Cast", ["inside2"], ["inside_i"], to=TensorProto.INT64),
            helper.make_node("ReduceSum", ["inside_i", "col0"], ["inside"], keepdims=0),
            helper.make_node("Sub", ["raw", "inside"], ["diff"]),
            helper.make_node("Abs", ["diff"], ["greedy_action"]),
        ],
    )
    return m


def broadcast_bomb(base: onnx.ModelProto, n: int = 1024) -> onnx.ModelProto:
    """(n,1,1) + (1,n,1) + (1,1,n): an n**3 intermediate from 3n stored numbers."""
    m = copy(base)
    for name, shape in (("a", (n, 1, 1)), ("b", (1, n, 1)), ("c", (1, 1, n))):
        m.graph.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), name))
    reroute(
        m,
        "probs",
        [
            helper.make_node("Add", ["a", "b"], ["ab"]),
            helper.make_node("Add", ["ab", "c"], ["abc"]),
            helper.make_node("ReduceSum", ["abc"], ["s"], keepdims=0),
            helper.make_node("Mul", ["s", "s"], ["s2"]),
            helper.make_node("Add", ["raw", "s2"], ["probs"]),
        ],
    )
    return m


def io_and_metadata_mutations(base: onnx.ModelProto) -> Iterator[tuple[str, onnx.ModelProto]]:
    m = copy(base)
    m.graph.output.append(helper.make_tensor_value_info("raw_logits", TensorProto.FLOAT, ["b", 2]))
    m.graph.node[4].output[0] = "raw_logits"
    m.graph.node[5].input[0] = "raw_logits"
    yield "extra output (the logits)", m
    m = copy(base)
    m.graph.output.append(m.graph.output[0])
    yield "duplicated output", m
    m = copy(base)
    del m.graph.output[1]
    yield "output removed", m
    m = copy(base)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    yield "fixed batch of 2", m
    m = copy(base)
    m.graph.value_info.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2]))
    yield "extra value_info", m
    m = copy(base)
    m.metadata_props.add(key="pgdeploy.extra", value="{}")
    yield "extra pgdeploy metadata key", m
    m = copy(base)
    m.metadata_props.add(key="author", value="someone")
    yield "extra foreign metadata key", m
    m = copy(base)
    m.doc_string = "hello"
    yield "doc string", m
    m = copy(base)
    m.producer_version = "9"
    yield "producer version", m
    m = copy(base)
    m.opset_import[0].version = 17
    yield "other opset", m
    m = copy(base)
    m.opset_import.add(domain="com.microsoft", version=1)
    yield "extra opset domain", m
    m = copy(base)
    m.ir_version = 9
    yield "other ir_version", m


def family(base: onnx.ModelProto) -> Iterator[tuple[str, onnx.ModelProto]]:
    yield from node_mutations(base)
    yield from initializer_mutations(base)
    yield from io_and_metadata_mutations(base)
    yield "Shape-based batch trick", shape_trick(base)
    yield "greedy flip on an observation region", greedy_flip(base)
    yield "broadcast bomb", broadcast_bomb(base)


def test_every_mutation_is_refused_before_onnxruntime(
    exported_model: Path, tmp_path: Path, ort_spy: list[bytes]
) -> None:
    base = load_onnx(exported_model)
    canonical = (exported_model / "model.onnx").read_bytes()
    assert base.SerializeToString() == canonical  # onnx writes the canonical bytes back
    path = tmp_path / "model.onnx"
    kinds = 0
    for kind, model in family(base):
        data = model.SerializeToString()
        assert data != canonical, kind
        path.write_bytes(data)
        with pytest.raises(ModelLoadError) as caught:
            Agent.load(path)
        message = str(caught.value)
        assert isinstance(caught.value, ModelSpecError), kind
        assert NOT_OURS in message, f"{kind}: {message}"
        assert "\n" not in message
        kinds += 1
    assert ort_spy == []
    assert kinds > 200
    Agent.load(exported_model / "model.onnx")
    assert ort_spy, "the spy sees a canonical file's session"


def test_the_refusal_names_the_first_difference(
    exported_model: Path, tmp_path: Path, ort_spy: list[bytes]
) -> None:
    base = load_onnx(exported_model)
    cases = {
        "node 3 op Shape": r"graph: node 3 \('Shape'\): op_type is 'Shape', pgdeploy writes 'Relu'",
        "duplicated output": r"graph: an extra output 3 \('probs'\) that pgdeploy does not write",
        "extra output (the logits)": (
            r"graph: node 4 \('Gemm'\): output is 'raw_logits', pgdeploy writes 't4_0'"
        ),
        "extra foreign metadata key": r"an extra metadata 9 \('author'\) that pgdeploy does not",
    }
    models = dict(family(base))
    for kind, expected in cases.items():
        path = tmp_path / "model.onnx"
        path.write_bytes(models[kind].SerializeToString())
        with pytest.raises(ModelLoadError, match=NOT_OURS + expected):
            Agent.load(path)
    assert ort_spy == []


def test_fuzz_generator_mutations_are_refused_or_canonical(
    exported_model: Path, tmp_path: Path, ort_spy: list[bytes]
) -> None:
    """The fuzz generator's operator swaps and shape edits never reach onnxruntime."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from fuzz import mutate_graph
    finally:
        sys.path.pop(0)
    base = load_onnx(exported_model)
    canonical = base.SerializeToString()
    rng = random.Random(0)
    path = tmp_path / "model.onnx"
    tried = 0
    while tried < 150:
        kind, data = mutate_graph(base, rng)
        if kind not in ("operator swap", "shape edit") or data == canonical:
            continue
        tried += 1
        path.write_bytes(data)
        with pytest.raises(ModelLoadError):
            Agent.load(path)
    assert ort_spy == []
