"""Read an ONNX file's structure without the ``onnx`` package, and refuse unsafe graphs.

onnxruntime runs whatever a graph says: a ``Loop`` with a trip count of 1e8 never
returns, a ``ConstantOfShape([32768, 32768])`` in a 17 KB file allocates 4 GiB at load
and again at every call, a custom domain asks for a kernel library. So before a session
is built, :func:`read_graph` walks the protobuf wire format (a few hundred fields for a
policy; weights are skipped as opaque bytes) and checks every node against
:data:`ALLOWED_OPS` -- the operators pgdeploy's exporter emits plus standard ones of
bounded work -- and every tensor, dimension and metadata entry against
:class:`GraphLimits`. The runtime keeps its dependencies at numpy + onnxruntime.

With only these operators, no node can create more elements than its inputs' sizes
allow (no operator takes a shape or a count as data), so memory and time per call are
bounded by the file's own size and the batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pgdeploy.errors import ModelLoadError

#: Operators a policy graph may use. Found by exporting (models/CartPole-v1/model.onnx and
#: fresh exports use Gemm, MatMul, Relu, Max, Min, Softmax, ArgMax, ReduceSum,
#: LessOrEqual, Cast), plus standard ops an MLP export with observation encodings
#: (one-hot, Dict/Tuple concatenation) and several action heads plausibly needs. Every
#: entry does work bounded by its inputs' sizes; ops that take a shape, a count or a
#: trip count as data (Expand, Tile, Pad, Range, OneHot, ConstantOfShape, Resize, Loop,
#: Scan, If) and random ops are deliberately absent. Extend here, one name per op.
ALLOWED_OPS = frozenset(
    {
        # emitted by pgdeploy's exporter today
        "Gemm",
        "MatMul",
        "Relu",
        "Max",
        "Min",
        "Softmax",
        "ArgMax",
        "ReduceSum",
        "LessOrEqual",
        "Cast",
        # elementwise arithmetic and activations
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Neg",
        "Abs",
        "Sqrt",
        "Exp",
        "Log",
        "Tanh",
        "Sigmoid",
        "Clip",
        "LogSoftmax",
        "Identity",
        "Constant",
        # comparisons and logic (one-hot by Equal against a constant range)
        "Less",
        "Greater",
        "GreaterOrEqual",
        "Equal",
        "Not",
        "And",
        "Or",
        "Where",
        # reductions and scans over existing elements
        "ReduceMax",
        "ReduceMin",
        "ReduceMean",
        "CumSum",
        # layout: never more elements than the inputs hold
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "Shape",
    }
)

#: Domains whose operators onnxruntime implements itself; anything else is a custom op.
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})

_WIRE_VARINT, _WIRE_FIXED64, WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5  # WIRE_BYTES: graph_pruning too
_TENSOR_EXTERNAL = 1
_ATTR_GRAPH_FIELDS = {6: "a subgraph", 11: "subgraphs", 22: "a sparse tensor", 23: "sparse tensors"}


@dataclass(frozen=True)
class GraphLimits:
    """Upper bounds on what a policy file may declare; all are far above a real policy."""

    max_nodes: int = 4096
    max_initializers: int = 4096
    #: Elements of any one tensor (initializer or Constant): 2**26 float32 = 256 MiB.
    max_tensor_elements: int = 1 << 26
    #: Elements over all initializers together.
    max_total_elements: int = 1 << 27
    #: Any fixed dimension of a graph input, output or value_info.
    max_dim: int = 1 << 24
    max_rank: int = 8
    max_metadata_entries: int = 64
    max_metadata_bytes: int = 1 << 20


@dataclass
class GraphInfo:
    """What :func:`read_graph` found: enough for the loader, ``inspect`` and the limits."""

    ir_version: int = 0
    producer_name: str = ""
    opset: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    #: name -> dims of each graph input and output (``None`` for a symbolic dimension).
    inputs: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    outputs: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    n_initializers: int = 0
    total_elements: int = 0


def read_graph(data: bytes, *, source: str, limits: GraphLimits | None = None) -> GraphInfo:
    """Parse ``data`` as an ONNX ModelProto and check it; every failure is a ModelLoadError."""
    reader = WireReader(bytes(data), source, limits or GraphLimits())
    info = GraphInfo()
    try:
        reader.model(info)
    except RecursionError as exc:  # pragma: no cover - nesting is bounded by the schema
        raise reader.error("is nested too deeply") from exc
    if "graph" not in reader.seen:
        raise reader.corrupt("no graph")
    return info


class WireReader:
    """A protobuf wire-format walker for the ONNX fields pgdeploy checks (and prunes)."""

    def __init__(self, data: bytes, source: str, limits: GraphLimits) -> None:
        self.data = data
        self.source = source
        self.limits = limits
        self.seen: set[str] = set()
        self.metadata_bytes = 0

    def error(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.source} {what}; it is not a graph pgdeploy will run")

    def corrupt(self, what: str) -> ModelLoadError:
        return ModelLoadError(
            f"cannot load {self.source} as an ONNX model: {what} "
            "(the file is not an ONNX model, or it is truncated)"
        )

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, value or start, end) for each field in [start, end)."""
        data, pos = self.data, start
        while pos < end:
            key = data[pos]  # one-byte keys (fields 1-15) are the common case
            if key < 0x80:
                pos += 1
            else:
                key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.corrupt("invalid protobuf field number 0")
            if wire == WIRE_BYTES:
                length = data[pos] if pos < end else 0x80
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise self.corrupt("a field runs past its end")
                yield number, wire, pos, pos + length
                pos += length
            elif wire == _WIRE_VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value, pos
            elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
                pos += 8 if wire == _WIRE_FIXED64 else 4
                if pos > end:
                    raise self.corrupt("a field runs past its end")
                yield number, wire, 0, pos
            else:
                raise self.corrupt(f"invalid protobuf wire type {wire}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        data, result, shift = self.data, 0, 0
        while pos < end and shift < 70:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7
        raise self.corrupt("a number runs past its end")

    def text(self, start: int, end: int, what: str) -> str:
        try:
            return self.data[start:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"has {what} that is not valid UTF-8 (byte {exc.start})") from exc

    def model(self, info: GraphInfo) -> None:
        for number, wire, a, b in self.fields(0, len(self.data)):
            if number == 1 and wire == _WIRE_VARINT:
                info.ir_version = a
            elif number == 2 and wire == WIRE_BYTES:
                info.producer_name = self.text(a, b, "a producer name")
            elif number == 7 and wire == WIRE_BYTES:
                if "graph" in self.seen:
                    raise self.error("has two graphs")
                self.seen.add("graph")
                self.graph(a, b, info)
            elif number == 8 and wire == WIRE_BYTES:
                self.opset(a, b, info)
            elif number == 14 and wire == WIRE_BYTES:
                self.metadata_entry(a, b, info)
            elif number == 20:
                raise self.error("has training_info (a training graph)")
            elif number == 25:
                raise self.error("defines model-local functions")

    def opset(self, start: int, end: int, info: GraphInfo) -> None:
        domain, version = "", 0
        for number, wire, a, b in self.fields(start, end):
            if number == 1 and wire == WIRE_BYTES:
                domain = self.text(a, b, "an opset domain")
            elif number == 2 and wire == _WIRE_VARINT:
                version = a
        if domain not in STANDARD_DOMAINS:
            raise self.error(
                f"imports operator domain {domain!r} (custom-op libraries are never loaded)"
            )
        info.opset[domain or "ai.onnx"] = version

    def metadata_entry(self, start: int, end: int, info: GraphInfo) -> None:
        if len(info.metadata) >= self.limits.max_metadata_entries:
            raise self.error(f"has more than {self.limits.max_metadata_entries} metadata entries")
        self.metadata_bytes += end - start
        if self.metadata_bytes > self.limits.max_metadata_bytes:
            raise self.error(f"has more than {self.limits.max_metadata_bytes} bytes of metadata")
        key = value = ""
        for number, wire, a, b in self.fields(start, end):
            if number == 1 and wire == WIRE_BYTES:
                key = self.text(a, b, "a metadata key")
            elif number == 2 and wire == WIRE_BYTES:
                value = self.text(a, b, f"metadata {key!r}")
        info.metadata[key] = value

    def graph(self, start: int, end: int, info: GraphInfo) -> None:
        for number, wire, a, b in self.fields(start, end):
            if wire != WIRE_BYTES:
                continue
            if number == 1:
                self.node(a, b, info)
            elif number == 5:
                info.n_initializers += 1
                if info.n_initializers > self.limits.max_initializers:
                    raise self.error(f"has more than {self.limits.max_initializers} initializers")
                info.total_elements += self.tensor(a, b)
                if info.total_elements > self.limits.max_total_elements:
                    raise self.error(
                        f"declares more than {self.limits.max_total_elements} weight elements"
                    )
            elif number == 15:
                raise self.error("has sparse initializers")
            elif number in (11, 12, 13):
                name, dims = self.value_info(a, b)
                if number == 11:
                    info.inputs[name] = dims
                elif number == 12:
                    info.outputs[name] = dims

    def node(self, start: int, end: int, info: GraphInfo) -> None:
        if sum(info.ops.values()) >= self.limits.max_nodes:
            raise self.error(f"has more than {self.limits.max_nodes} nodes")
        op, domain, attributes = "", "", []
        for number, wire, a, b in self.fields(start, end):
            if number == 4 and wire == WIRE_BYTES:
                op = self.text(a, b, "an operator name")
            elif number == 7 and wire == WIRE_BYTES:
                domain = self.text(a, b, "an operator domain")
            elif number == 5 and wire == WIRE_BYTES:
                attributes.append((a, b))
        if domain not in STANDARD_DOMAINS:
            raise self.error(
                f"uses operator {op[:64]!r} from custom domain {domain!r} "
                "(custom-op libraries are never loaded)"
            )
        if op not in ALLOWED_OPS:
            raise self.error(
                f"uses operator {op[:64]!r}, which is not among the operators pgdeploy emits "
                f"({', '.join(sorted(ALLOWED_OPS))})"
            )
        for a, b in attributes:
            self.attribute(a, b, op)
        info.ops[op] = info.ops.get(op, 0) + 1

    def attribute(self, start: int, end: int, op: str) -> None:
        for number, wire, a, b in self.fields(start, end):
            if number in _ATTR_GRAPH_FIELDS:
                raise self.error(f"has {_ATTR_GRAPH_FIELDS[number]} inside operator {op!r}")
            if number in (5, 10) and wire == WIRE_BYTES:  # t / tensors
                self.tensor(a, b)

    def tensor(self, start: int, end: int) -> int:
        """Check one TensorProto's declared shape; returns its element count."""
        dims: list[int] = []
        for number, wire, a, b in self.fields(start, end):
            if number == 1:
                dims.extend([a] if wire == _WIRE_VARINT else self.packed(a, b))
            elif number == 13 or (number == 14 and wire == _WIRE_VARINT and a == _TENSOR_EXTERNAL):
                raise self.error(
                    "keeps tensor data in an external file (external data files are never read)"
                )
            if len(dims) > self.limits.max_rank:
                raise self.error(f"has a tensor of rank > {self.limits.max_rank}")
        elements = 1
        for dim in dims:
            if dim >= 1 << 63:
                raise self.error("has a tensor with a negative dimension")
            elements *= dim
            if elements > self.limits.max_tensor_elements:
                raise self.error(
                    f"has a tensor of shape {dims} (more than "
                    f"{self.limits.max_tensor_elements} elements)"
                )
        return elements

    def packed(self, start: int, end: int) -> list[int]:
        values, pos = [], start
        while pos < end:
            value, pos = self.varint(pos, end)
            values.append(value)
        return values

    def value_info(self, start: int, end: int) -> tuple[str, tuple[int | None, ...]]:
        name, dims = "", tuple[int | None, ...]()
        for number, wire, a, b in self.fields(start, end):
            if number == 1 and wire == WIRE_BYTES:
                name = self.text(a, b, "an input or output name")
            elif number == 2 and wire == WIRE_BYTES:
                dims = self.type_dims(a, b, name)
        return name, dims

    def type_dims(self, start: int, end: int, name: str) -> tuple[int | None, ...]:
        dims: list[int | None] = []
        for number, wire, a, b in self.fields(start, end):
            if number in (4, 5, 8, 9):  # sequence, map, sparse tensor, optional
                raise self.error(f"declares {name!r} as a non-tensor type")
            if number != 1 or wire != WIRE_BYTES:
                continue
            for number2, wire2, a2, b2 in self.fields(a, b):  # TypeProto.Tensor
                if number2 != 2 or wire2 != WIRE_BYTES:
                    continue
                for number3, wire3, a3, b3 in self.fields(a2, b2):  # TensorShapeProto
                    if number3 == 1 and wire3 == WIRE_BYTES:
                        dims.append(self.dimension(a3, b3, name))
                        if len(dims) > self.limits.max_rank:
                            raise self.error(
                                f"declares {name!r} with rank > {self.limits.max_rank}"
                            )
        return tuple(dims)

    def dimension(self, start: int, end: int, name: str) -> int | None:
        for number, wire, a, _ in self.fields(start, end):
            if number == 1 and wire == _WIRE_VARINT:
                if a > self.limits.max_dim:
                    raise self.error(f"declares {name!r} with a dimension of {a}")
                return a
        return None
