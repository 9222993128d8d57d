"""The one ONNX graph of a policy: :func:`build_model` (spec + PolicyNetwork) -> bytes.

The exporter writes these bytes; the runtime's loader rebuilds them from a file's own
metadata and weights and runs the file only when the two are identical
(:mod:`pgdeploy.runtime.model_file`). So every graph onnxruntime ever runs is this
function's output: rows are independent, actions follow from the probabilities, and the
size of every intermediate follows from the spec and the weights. The structure (nodes,
wiring, attributes, initializer names, shapes) is fixed by the spec and the network's
named choices; only the numbers are free.

Per row (:mod:`pgdeploy.runtime.network` is the arithmetic): one-hot of the categorical
columns (``Gather`` + ``Equal`` + ``Cast``), clip of the continuous ones (``Max``/``Min``),
normalisation as ``Sub`` then ``Div`` (never folded into the first layer: exact in
float32 for any statistics), optional ``Clip`` of the normalised value, ``Concat``, the
MLP (``Gemm`` + activation), then per head ``Softmax`` (or one-hot of the first maximum
for an ``argmax`` head), the greedy action (``ArgMax``) and the inverse-CDF sample
(cumulative sums as a ``MatMul`` with an upper-triangular ones matrix, ``LessOrEqual``,
``Cast``, ``ReduceSum``), plus the action space's ``start``. Every node has a fixed cost
per call in onnxruntime, so nothing is emitted that a given spec does not need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ModelLoadError
from pgdeploy.runtime import protobuf as pb
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import (
    GREEDY_OUTPUT,
    OBS_INPUT,
    OUTPUT_NAMES,
    PROBS_OUTPUT,
    SAMPLED_OUTPUT,
    UNIFORM_INPUT,
    PolicySpec,
)

OPSET = 18
IR_VERSION = 8
PRODUCER = "pgdeploy"
GRAPH_NAME = "pgdeploy_policy"
BATCH = "batch"
#: Elements of the constants the builder derives from a spec (one-hot tables, the
#: sampler's matrices): a bound on what a small metadata record can make it allocate.
MAX_DERIVED_ELEMENTS = 1 << 24
#: Output sets :func:`build_model` makes: the whole graph, or one action and the probs.
OUTPUT_SETS = (OUTPUT_NAMES, (PROBS_OUTPUT, GREEDY_OUTPUT), (PROBS_OUTPUT, SAMPLED_OUTPUT))

_SQRT1_2 = np.float32(0.7071067811865476)


def layer_names(index: int) -> tuple[str, str]:
    """Initializer names of layer ``index``'s weight and bias."""
    return f"layer{index}.weight", f"layer{index}.bias"


#: Initializer names of the normalisation statistics and the clip bounds.
CLIP_LOW, CLIP_HIGH, OBS_MEAN, OBS_STD = "clip_low", "clip_high", "obs_mean", "obs_std"
NORM_CLIP_LOW, NORM_CLIP_HIGH = "norm_clip_low", "norm_clip_high"


class _Graph:
    """Nodes and initializers in the order they are added; value names are positional."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self.names: set[str] = set()
        self.derived = 0

    def const(self, name: str, array: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> str:
        if name not in self.names:
            self.names.add(name)
            self.initializers.append(pb.tensor(name, array))
        return name

    def derived_const(
        self, name: str, array: npt.NDArray[np.float32] | npt.NDArray[np.int64]
    ) -> str:
        self.derived += array.size
        return self.const(name, array)

    def op(
        self,
        op: str,
        *inputs: str,
        attrs: Sequence[pb.Attribute] = (),
        out: str | None = None,
        n_out: int = 1,
    ) -> str:
        outputs = [out] if out else [f"t{len(self.nodes)}_{i}" for i in range(n_out)]
        self.nodes.append(pb.node(op, inputs, outputs, attrs))
        return outputs[0]


def build_model(
    spec: PolicySpec,
    network: PolicyNetwork,
    metadata: Mapping[str, str],
    *,
    outputs: Sequence[str] = OUTPUT_NAMES,
) -> bytes:
    """The canonical ONNX ModelProto for ``spec`` and ``network`` (checked by the caller).

    ``metadata`` goes into ``metadata_props`` sorted by key. ``outputs`` is one of
    :data:`OUTPUT_SETS`; without ``sampled_action`` the graph has no ``uniform`` input.
    Raises ModelLoadError when the spec would need derived constants above
    :data:`MAX_DERIVED_ELEMENTS`.
    """
    outputs = tuple(outputs)
    if outputs not in OUTPUT_SETS:
        raise ValueError(f"outputs must be one of {OUTPUT_SETS}, got {outputs}")
    g = _Graph()
    features = _features(g, spec, network)
    logits = _mlp(g, network, features)
    actions = spec.action_layout
    nvec, start, multi = list(actions.nvec), list(actions.start), actions.multi
    head_probs = _head_probs(g, network.head, logits, nvec)
    probs = (
        g.op("Concat", *head_probs, attrs=[("axis", 1)], out=PROBS_OUTPUT)
        if len(head_probs) > 1
        else _rename(g, head_probs[0], PROBS_OUTPUT)
    )
    if GREEDY_OUTPUT in outputs:
        _greedy(g, probs, head_probs, start, multi)
    if SAMPLED_OUTPUT in outputs:
        _sampled(g, probs, nvec, start, multi)
    if g.derived > MAX_DERIVED_ELEMENTS:
        raise ModelLoadError(
            f"a policy graph for this spec needs {g.derived} derived constant elements (one-hot "
            f"tables, sampling matrices), more than {MAX_DERIVED_ELEMENTS}"
        )
    return _model(g, spec, outputs, metadata)


def _rename(g: _Graph, value: str, name: str) -> str:
    """Give the last node's single output the graph output's name (no Identity node)."""
    last = g.nodes[-1]
    old = pb.text(2, value)
    assert old in last
    g.nodes[-1] = last.replace(old, pb.text(2, name), 1)
    return name


def _features(g: _Graph, spec: PolicySpec, network: PolicyNetwork) -> str:
    """Raw rows -> MLP inputs: [clipped (normalised) continuous columns, one-hot columns]."""
    layout = spec.obs_layout
    has_onehot = len(layout.onehot_columns) > 0
    onehot = ""
    if has_onehot:
        columns = np.asarray(layout.onehot_columns, np.int64)
        values = np.asarray(layout.onehot_values, np.float32)
        picked = g.op(
            "Gather", OBS_INPUT, g.derived_const("onehot_columns", columns), attrs=[("axis", 1)]
        )
        equal = g.op("Equal", picked, g.derived_const("onehot_values", values))
        onehot = g.op("Cast", equal, attrs=[("to", pb.FLOAT)])
        if not layout.continuous_columns:
            return onehot
    x = OBS_INPUT
    if has_onehot and not layout.plain:
        cont = np.asarray(layout.continuous_columns, np.int64)
        x = g.op("Gather", x, g.derived_const("continuous_columns", cont), attrs=[("axis", 1)])
    x = g.op("Max", x, g.const(CLIP_LOW, network.clip_low))
    x = g.op("Min", x, g.const(CLIP_HIGH, network.clip_high))
    if network.obs_mean is not None and network.obs_std is not None:
        x = g.op("Sub", x, g.const(OBS_MEAN, network.obs_mean))
        x = g.op("Div", x, g.const(OBS_STD, network.obs_std))
        if network.norm_clip is not None:
            c = np.float32(network.norm_clip)
            low = g.const(NORM_CLIP_LOW, np.asarray(-c, np.float32))
            x = g.op("Clip", x, low, g.const(NORM_CLIP_HIGH, np.asarray(c, np.float32)))
    if has_onehot:
        x = g.op("Concat", x, onehot, attrs=[("axis", 1)])
    return x


def _mlp(g: _Graph, network: PolicyNetwork, x: str) -> str:
    last = len(network.layers) - 1
    for index, (weight, bias) in enumerate(network.layers):
        w_name, b_name = layer_names(index)
        x = g.op("Gemm", x, g.const(w_name, weight), g.const(b_name, bias), attrs=[("transB", 1)])
        if index < last:
            x = _activation(g, network, x)
    return x


def _scalar(g: _Graph, name: str, value: float) -> str:
    return g.const(name, np.asarray(value, np.float32))


def _activation(g: _Graph, network: PolicyNetwork, x: str) -> str:
    name = network.activation
    if name == "relu":
        return g.op("Relu", x)
    if name == "tanh":
        return g.op("Tanh", x)
    if name == "elu":
        return g.op("Elu", x, attrs=[("alpha", 1.0)])
    if name == "leaky_relu":
        return g.op("LeakyRelu", x, attrs=[("alpha", float(np.float32(network.activation_alpha)))])
    if name == "silu":  # x * sigmoid(x)
        return g.op("Mul", x, g.op("Sigmoid", x))
    if name == "gelu":  # exact: (x * 0.5) * (1 + erf(x / sqrt(2))), torch's order
        erf = g.op("Erf", g.op("Mul", x, _scalar(g, "gelu_sqrt1_2", float(_SQRT1_2))))
        half = g.op("Mul", x, _scalar(g, "gelu_half", 0.5))
        return g.op("Mul", half, g.op("Add", erf, _scalar(g, "gelu_one", 1.0)))
    raise ValueError(f"unknown activation {name!r}")  # PolicyNetwork.check refuses it first


def _head_probs(g: _Graph, head: str, logits: str, nvec: list[int]) -> list[str]:
    """Each head's probabilities (n, nvec[h])."""
    parts = [logits]
    if len(nvec) > 1:
        sizes = g.derived_const("head_sizes", np.asarray(nvec, np.int64))
        first = g.op("Split", logits, sizes, attrs=[("axis", 1)], n_out=len(nvec))
        parts = [first[: -len("_0")] + f"_{i}" for i in range(len(nvec))]
    if head == "softmax":
        return [g.op("Softmax", part, attrs=[("axis", 1)]) for part in parts]
    result = []
    for part, n in zip(parts, nvec, strict=True):  # argmax: one-hot on the first maximum
        index = g.op("ArgMax", part, attrs=[("axis", 1), ("keepdims", 1)])
        choices = g.derived_const(f"choices_{n}", np.arange(n, dtype=np.int64))
        result.append(g.op("Cast", g.op("Equal", index, choices), attrs=[("to", pb.FLOAT)]))
    return result


def _greedy(g: _Graph, probs: str, head_probs: list[str], start: list[int], multi: bool) -> None:
    if not multi:
        name = GREEDY_OUTPUT if start[0] == 0 else None
        greedy = g.op("ArgMax", probs, attrs=[("axis", 1), ("keepdims", 0)], out=name)
        if start[0] != 0:
            g.op(
                "Add",
                greedy,
                g.const("action_start", np.asarray(start, np.int64)),
                out=GREEDY_OUTPUT,
            )
        return
    columns = [g.op("ArgMax", p, attrs=[("axis", 1), ("keepdims", 1)]) for p in head_probs]
    plain = not any(start)
    name = GREEDY_OUTPUT if plain else None
    greedy = (
        g.op("Concat", *columns, attrs=[("axis", 1)], out=name)
        if len(columns) > 1
        else (_rename(g, columns[0], GREEDY_OUTPUT) if plain else columns[0])
    )
    if not plain:
        g.op("Add", greedy, g.const("action_start", np.asarray(start, np.int64)), out=GREEDY_OUTPUT)


def _sampled(g: _Graph, probs: str, nvec: list[int], start: list[int], multi: bool) -> None:
    """Inverse CDF per head: how many of the head's first n-1 cumulative sums are <= u."""
    n_logits, heads = sum(nvec), len(nvec)
    upper = np.zeros((n_logits, n_logits - heads), np.float32)
    uniform_columns = np.zeros(n_logits - heads, np.int64)
    head_sum = np.zeros((n_logits - heads, heads), np.float32)
    row = col = 0
    for h, n in enumerate(nvec):
        upper[row : row + n, col : col + n - 1] = np.triu(np.ones((n, n - 1), np.float32))
        uniform_columns[col : col + n - 1] = h
        head_sum[col : col + n - 1, h] = 1
        row, col = row + n, col + n - 1
    cdf = g.op("MatMul", probs, g.derived_const("cdf_upper", upper))
    if not multi:
        below = g.op("Cast", g.op("LessOrEqual", cdf, UNIFORM_INPUT), attrs=[("to", pb.INT64)])
        axes = g.const("sum_axes", np.asarray([1], np.int64))
        name = SAMPLED_OUTPUT if start[0] == 0 else None
        sampled = g.op("ReduceSum", below, axes, attrs=[("keepdims", 0)], out=name)
        if start[0] != 0:
            g.op(
                "Add",
                sampled,
                g.const("action_start", np.asarray(start, np.int64)),
                out=SAMPLED_OUTPUT,
            )
        return
    u = g.op(
        "Gather",
        UNIFORM_INPUT,
        g.derived_const("uniform_columns", uniform_columns),
        attrs=[("axis", 1)],
    )
    below = g.op("Cast", g.op("LessOrEqual", cdf, u), attrs=[("to", pb.FLOAT)])
    counts = g.op("MatMul", below, g.derived_const("head_sum", head_sum))
    plain = not any(start)
    sampled = g.op("Cast", counts, attrs=[("to", pb.INT64)], out=SAMPLED_OUTPUT if plain else None)
    if not plain:
        g.op(
            "Add", sampled, g.const("action_start", np.asarray(start, np.int64)), out=SAMPLED_OUTPUT
        )


def _model(
    g: _Graph, spec: PolicySpec, outputs: tuple[str, ...], metadata: Mapping[str, str]
) -> bytes:
    actions = spec.action_layout
    heads, multi = actions.n_branches, actions.multi
    inputs = [pb.value_info(OBS_INPUT, pb.FLOAT, [BATCH, spec.obs_dim])]
    if SAMPLED_OUTPUT in outputs:
        inputs.append(pb.value_info(UNIFORM_INPUT, pb.FLOAT, [BATCH, heads]))
    action_dims: list[int | str] = [BATCH, heads] if multi else [BATCH]
    shapes: dict[str, tuple[int, list[int | str]]] = {
        PROBS_OUTPUT: (pb.FLOAT, [BATCH, actions.n_logits]),
        GREEDY_OUTPUT: (pb.INT64, action_dims),
        SAMPLED_OUTPUT: (pb.INT64, action_dims),
    }
    graph = b"".join(pb.message(1, n) for n in g.nodes)
    graph += pb.text(2, GRAPH_NAME)
    graph += b"".join(pb.message(5, t) for t in g.initializers)
    graph += b"".join(pb.message(11, v) for v in inputs)
    graph += b"".join(pb.message(12, pb.value_info(name, *shapes[name])) for name in outputs)
    model = pb.integer(1, IR_VERSION) + pb.text(2, PRODUCER) + pb.message(7, graph)
    model += pb.message(8, pb.text(1, "") + pb.integer(2, OPSET))
    for key_name in sorted(metadata):
        model += pb.message(14, pb.text(1, key_name) + pb.text(2, metadata[key_name]))
    return model
