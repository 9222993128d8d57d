"""Read an ONNX file's metadata and weights without the ``onnx`` package, and name how it
differs from pgdeploy's own graph.

The loader (:mod:`pgdeploy.runtime.model_file`) needs only two things from a file: its
``metadata_props`` and its initializers by name. :func:`read_parts` walks the protobuf
wire format for those (a few dozen fields; every length is checked against the bytes
that hold it, and weight sizes against :data:`MAX_TENSOR_ELEMENTS`), and
:func:`first_difference` walks a file and the canonical bytes side by side to name the
first field where they part, in words ("graph node 3: op_type is 'Shape', pgdeploy
writes 'Relu'"). No other part of a file is ever interpreted: everything else is
compared byte for byte with what :func:`~pgdeploy.runtime.policy_graph.build_model`
writes. The runtime keeps its dependencies at numpy + onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pgdeploy.errors import ModelLoadError

_WIRE_VARINT, _WIRE_FIXED64, WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5

#: Elements of any one initializer: 2**26 float32 = 256 MiB.
MAX_TENSOR_ELEMENTS = 1 << 26
#: Elements over all initializers together.
MAX_TOTAL_ELEMENTS = 1 << 27
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 1 << 20
_MAX_RANK = 8


@dataclass
class Tensor:
    """One initializer as the file declares it: dims, ONNX data type, raw little-endian data."""

    dims: tuple[int, ...]
    data_type: int
    raw: bytes


@dataclass
class FileParts:
    """What :func:`read_parts` found: metadata (in file order) and initializers by name."""

    metadata: dict[str, str] = field(default_factory=dict)
    initializers: dict[str, Tensor] = field(default_factory=dict)


class WireReader:
    """A protobuf wire-format walker: fields of a byte range, checked against its bounds."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source

    def error(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.source} {what}; it is not a graph pgdeploy will run")

    def corrupt(self, what: str) -> ModelLoadError:
        return ModelLoadError(
            f"cannot load {self.source} as an ONNX model: {what} "
            "(the file is not an ONNX model, or it is truncated)"
        )

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, value or start, end) for each field in [start, end)."""
        pos = start
        while pos < end:
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.corrupt("invalid protobuf field number 0")
            if wire == WIRE_BYTES:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise self.corrupt("a field runs past its end")
                yield number, wire, pos, pos + length
                pos += length
            elif wire == _WIRE_VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value, pos
            elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
                begin = pos
                pos += 8 if wire == _WIRE_FIXED64 else 4
                if pos > end:
                    raise self.corrupt("a field runs past its end")
                yield number, wire, begin, pos
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


def read_parts(data: bytes, *, source: str) -> FileParts:
    """Metadata and initializers of the ONNX ModelProto in ``data``; a ModelLoadError if the
    bytes are not a protobuf message, hold no graph, or declare oversized tensors."""
    reader = WireReader(bytes(data), source)
    parts = FileParts()
    metadata_bytes = 0
    graphs = 0
    for number, wire, a, b in reader.fields(0, len(data)):
        if number == 14 and wire == WIRE_BYTES:
            metadata_bytes += b - a
            if len(parts.metadata) >= MAX_METADATA_ENTRIES or metadata_bytes > MAX_METADATA_BYTES:
                raise reader.error(
                    f"has more than {MAX_METADATA_ENTRIES} metadata entries or "
                    f"{MAX_METADATA_BYTES} bytes of metadata"
                )
            key_text, value = _entry(reader, a, b)
            parts.metadata.setdefault(key_text, value)
        elif number == 7 and wire == WIRE_BYTES:
            graphs += 1
            _initializers(reader, a, b, parts)
    if graphs == 0:
        raise reader.corrupt("no graph")
    return parts


def _entry(reader: WireReader, start: int, end: int) -> tuple[str, str]:
    key_text = value = ""
    for number, wire, a, b in reader.fields(start, end):
        if number == 1 and wire == WIRE_BYTES:
            key_text = reader.text(a, b, "a metadata key")
        elif number == 2 and wire == WIRE_BYTES:
            value = reader.text(a, b, f"metadata {ascii(key_text)[:80]}")
    return key_text, value


def _initializers(reader: WireReader, start: int, end: int, parts: FileParts) -> None:
    total = 0
    for number, wire, a, b in reader.fields(start, end):
        if number != 5 or wire != WIRE_BYTES:
            continue
        name, dims, data_type, raw = "", [], 0, b""
        for n2, w2, a2, b2 in reader.fields(a, b):
            if n2 == 1 and w2 == _WIRE_VARINT:
                dims.append(a2)
            elif n2 == 2 and w2 == _WIRE_VARINT:
                data_type = a2
            elif n2 == 8 and w2 == WIRE_BYTES:
                name = reader.text(a2, b2, "an initializer name")
            elif n2 == 9 and w2 == WIRE_BYTES:
                raw = reader.data[a2:b2]
        if len(dims) > _MAX_RANK:
            raise reader.error(f"has an initializer of rank > {_MAX_RANK}")
        elements = 1
        for dim in dims:
            elements *= dim
            if elements > MAX_TENSOR_ELEMENTS:
                raise reader.error(
                    f"has an initializer of shape {dims} (more than {MAX_TENSOR_ELEMENTS} elements)"
                )
        total += elements
        if total > MAX_TOTAL_ELEMENTS:
            raise reader.error(f"declares more than {MAX_TOTAL_ELEMENTS} weight elements")
        parts.initializers.setdefault(name, Tensor(tuple(dims), data_type, raw))


# --- naming the first difference -------------------------------------------------------

#: (message, field number) -> (field name, sub-message kind or None for a scalar).
_SCHEMA: dict[str, dict[int, tuple[str, str | None]]] = {
    "model": {
        1: ("ir_version", None),
        2: ("producer_name", None),
        3: ("producer_version", None),
        4: ("domain", None),
        5: ("model_version", None),
        6: ("doc_string", None),
        7: ("graph", "graph"),
        8: ("opset_import", "opset"),
        14: ("metadata", "entry"),
        20: ("training_info", None),
        25: ("functions", None),
    },
    "graph": {
        1: ("node", "node"),
        2: ("name", None),
        5: ("initializer", "tensor"),
        10: ("doc_string", None),
        11: ("input", "value_info"),
        12: ("output", "value_info"),
        13: ("value_info", "value_info"),
        15: ("sparse_initializer", None),
    },
    "node": {
        1: ("input", None),
        2: ("output", None),
        3: ("name", None),
        4: ("op_type", None),
        5: ("attribute", "attribute"),
        6: ("doc_string", None),
        7: ("domain", None),
    },
    "attribute": {1: ("name", None), 2: ("f", None), 3: ("i", None), 8: ("ints", None)},
    "tensor": {1: ("dims", None), 2: ("data_type", None), 8: ("name", None), 9: ("raw_data", None)},
    "value_info": {1: ("name", None), 2: ("type", None)},
    "opset": {1: ("domain", None), 2: ("version", None)},
    "entry": {1: ("key", None), 2: ("value", None)},
}
_TEXT_FIELDS = {
    "producer_name",
    "producer_version",
    "domain",
    "doc_string",
    "name",
    "input",
    "output",
    "op_type",
    "key",
    "value",
}
#: The field whose text labels an element in messages (a node by its op, a tensor by name).
_LABEL = {"node": 4, "tensor": 8, "entry": 1, "value_info": 1, "attribute": 1}


def first_difference(data: bytes, expected: bytes) -> str:
    """The first place where ``data`` differs from ``expected``, in words (both must differ)."""
    a, b = WireReader(bytes(data), "the file"), WireReader(bytes(expected), "pgdeploy's graph")
    try:
        found = _diff(a, (0, len(data)), b, (0, len(expected)), "model", "")
    except ModelLoadError:
        found = None
    if found is None:
        index = next(
            (i for i, (x, y) in enumerate(zip(data, expected, strict=False)) if x != y), None
        )
        index = min(len(data), len(expected)) if index is None else index
        return f"the bytes differ from pgdeploy's graph at byte {index}"
    return found


def _diff(
    a: WireReader,
    span_a: tuple[int, int],
    b: WireReader,
    span_b: tuple[int, int],
    kind: str,
    path: str,
) -> str | None:
    fields_a, fields_b = list(a.fields(*span_a)), list(b.fields(*span_b))
    schema = _SCHEMA[kind]
    counts: dict[int, int] = {}
    for index in range(max(len(fields_a), len(fields_b))):
        fa = fields_a[index] if index < len(fields_a) else None
        fb = fields_b[index] if index < len(fields_b) else None
        if fa is not None and fb is not None and _raw(a, fa) == _raw(b, fb):
            counts[fa[0]] = counts.get(fa[0], 0) + 1
            continue
        if fb is None:
            assert fa is not None
            return f"{path}an extra {_label(a, fa, schema, counts)} that pgdeploy does not write"
        if fa is None:
            return f"{path}{_label(b, fb, schema, counts)} is missing"
        if fa[0] != fb[0]:
            return (
                f"{path}{_label(a, fa, schema, counts)} where pgdeploy writes "
                f"{_label(b, fb, schema, counts)}"
            )
        name, sub = schema.get(fa[0], (f"field {fa[0]}", None))
        label = _label(a, fa, schema, counts)
        if sub is not None and fa[1] == WIRE_BYTES and fb[1] == WIRE_BYTES:
            inner = _diff(a, (fa[2], fa[3]), b, (fb[2], fb[3]), sub, f"{path}{label}: ")
            if inner is not None:
                return inner
        return f"{path}{label} is {_value(a, fa, name)}, pgdeploy writes {_value(b, fb, name)}"
    return None


def _raw(reader: WireReader, f: tuple[int, int, int, int]) -> tuple[int, int, bytes | int]:
    number, wire, a, b = f
    return (number, wire, a if wire == _WIRE_VARINT else reader.data[a:b])


def _label(
    reader: WireReader,
    f: tuple[int, int, int, int],
    schema: dict[int, tuple[str, str | None]],
    counts: dict[int, int],
) -> str:
    name, sub = schema.get(f[0], (f"field {f[0]}", None))
    if sub is None or sub == "graph":
        return name
    label = f"{name} {counts.get(f[0], 0)}"
    tag = _LABEL.get(sub)
    if tag is not None and f[1] == WIRE_BYTES:
        try:
            for number, wire, a, b in reader.fields(f[2], f[3]):
                if number == tag and wire == WIRE_BYTES:
                    return f"{label} ({ascii(reader.data[a:b].decode('utf-8', 'replace'))[:60]})"
        except ModelLoadError:
            pass
    return label


def _value(reader: WireReader, f: tuple[int, int, int, int], name: str) -> str:
    _, wire, a, b = f
    if wire == _WIRE_VARINT:
        return str(a)
    if wire == WIRE_BYTES and name in _TEXT_FIELDS:
        return ascii(reader.data[a:b].decode("utf-8", "replace"))[:80]
    return f"{b - a} other bytes" if wire == WIRE_BYTES else "another value"
