"""A deterministic protobuf writer for the few ONNX messages a policy graph is made of.

The same inputs always give the same bytes (fields in one fixed order, repeated scalars
unpacked as the ``onnx`` package writes them), which is what lets the runtime compare a
file with the graph it rebuilds (:mod:`pgdeploy.runtime.policy_graph`). numpy only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

WIRE_VARINT, WIRE_BYTES, WIRE_FIXED32 = 0, 2, 5

#: ONNX TensorProto.DataType values used by policy graphs.
FLOAT, INT64, BOOL = 1, 7, 9
#: ONNX AttributeProto.AttributeType values.
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7

Attribute = tuple[str, float | int | tuple[int, ...]]


def varint(value: int) -> bytes:
    """Base-128 varint; negative values as 64-bit two's complement (protobuf's int64)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def message(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a sub-message, a string or bytes)."""
    return key(number, WIRE_BYTES) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return message(number, value.encode("utf-8"))


def integer(number: int, value: int) -> bytes:
    return key(number, WIRE_VARINT) + varint(value)


def attribute(name: str, value: float | int | tuple[int, ...]) -> bytes:
    """AttributeProto: name (1), f (2), i (3), ints (8), type (20)."""
    out = text(1, name)
    if isinstance(value, float):
        out += key(2, WIRE_FIXED32) + struct.pack("<f", value) + integer(20, _ATTR_FLOAT)
    elif isinstance(value, int):
        out += integer(3, value) + integer(20, _ATTR_INT)
    else:
        out += b"".join(integer(8, v) for v in value) + integer(20, _ATTR_INTS)
    return out


def node(
    op: str, inputs: Sequence[str], outputs: Sequence[str], attrs: Iterable[Attribute]
) -> bytes:
    """NodeProto: input (1), output (2), op_type (4), attribute (5)."""
    out = b"".join(text(1, name) for name in inputs)
    out += b"".join(text(2, name) for name in outputs)
    out += text(4, op)
    out += b"".join(message(5, attribute(name, value)) for name, value in attrs)
    return out


def tensor(name: str, array: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    if array.dtype == np.float32:
        data_type, raw = FLOAT, array.astype("<f4").tobytes()
    elif array.dtype == np.int64:
        data_type, raw = INT64, array.astype("<i8").tobytes()
    else:  # pragma: no cover - the builder makes only these
        raise TypeError(f"no tensor type for {array.dtype}")
    out = b"".join(integer(1, int(d)) for d in array.shape)
    return out + integer(2, data_type) + text(8, name) + message(9, raw)


def value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> bytes:
    """ValueInfoProto with a tensor type; a ``str`` dimension is symbolic (dim_param)."""
    shape = b"".join(message(1, text(2, d) if isinstance(d, str) else integer(1, d)) for d in dims)
    tensor_type = integer(1, elem_type) + message(2, shape)
    return text(1, name) + message(2, message(1, tensor_type))
