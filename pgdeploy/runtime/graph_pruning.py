"""The policy graph cut down to the outputs one caller reads, for onnxruntime to run less.

onnxruntime runs every node of a graph on each call, whatever outputs are bound (and
``RunOptions.only_execute_path_to_fetches`` costs more per call than it saves here). At one
observation each node is ~0.4 us of a ~4.5 us call, so the agent's single-step path runs
the file's graph without the nodes of the action it does not read: sampling skips the
greedy ``ArgMax``, greedy control skips the four sampling nodes and the ``uniform`` input.

Pruning is dead-code elimination on the protobuf wire format of a file
:func:`~pgdeploy.runtime.onnx_graph.read_graph` has already accepted: whole node,
initializer, input, output and value_info entries are dropped and their bytes are
otherwise copied unchanged, so what remains is the file's own graph, node for node.
"""

from __future__ import annotations

from collections.abc import Iterable

from pgdeploy.runtime.onnx_graph import WIRE_BYTES, GraphLimits, WireReader

_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
_NODE_INPUT, _NODE_OUTPUT = 1, 2
_TENSOR_NAME, _VALUE_INFO_NAME = 8, 1


def prune_to_outputs(data: bytes, outputs: Iterable[str]) -> bytes:
    """The model in ``data`` with only ``outputs`` and the nodes and values they need.

    ``data`` must be a model ``read_graph`` accepted. Raises ``ValueError`` when one of
    ``outputs`` is not an output of the graph.
    """
    reader = WireReader(data, "the graph being pruned", GraphLimits())
    wanted = set(outputs)
    parts: list[bytes] = []
    start = 0
    for number, wire, a, b in reader.fields(0, len(data)):
        if number == _MODEL_GRAPH and wire == WIRE_BYTES:
            graph = _prune_graph(reader, a, b, wanted)
            parts.append(_key(number) + _varint(len(graph)) + graph)
        else:
            parts.append(data[start:b])
        start = b
    return b"".join(parts)


def _prune_graph(reader: WireReader, start: int, end: int, wanted: set[str]) -> bytes:
    data = reader.data
    entries: list[tuple[int, int, int, int]] = []  # (field, entry start, value start, end)
    nodes: dict[int, tuple[list[str], list[str]]] = {}  # entry index -> (inputs, outputs)
    declared_outputs: set[str] = set()
    entry_start = start
    for number, wire, a, b in reader.fields(start, end):
        if wire == WIRE_BYTES and number == _GRAPH_NODE:
            nodes[len(entries)] = _node_names(reader, a, b)
        elif wire == WIRE_BYTES and number == _GRAPH_OUTPUT:
            declared_outputs.add(_name(reader, a, b, _VALUE_INFO_NAME))
        entries.append((number, entry_start, a, b))
        entry_start = b
    missing = wanted - declared_outputs
    if missing:
        raise ValueError(f"the graph has no output {sorted(missing)}")
    # A walk back from the outputs through each value's producer: it does not rely on the
    # nodes being listed in topological order (onnxruntime sorts a graph that is not).
    producer = {name: index for index, (_, outputs) in nodes.items() for name in outputs}
    needed: set[str] = set()
    kept_nodes: set[int] = set()
    produced: set[str] = set()
    pending = list(wanted)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        index = producer.get(name)
        if index is not None and index not in kept_nodes:
            kept_nodes.add(index)
            inputs, outputs = nodes[index]
            produced.update(outputs)
            pending.extend(value for value in inputs if value)
    values = needed | produced
    kept: list[bytes] = []
    for index, (number, entry_start, a, b) in enumerate(entries):
        if number == _GRAPH_NODE:
            keep = index in kept_nodes
        elif number == _GRAPH_OUTPUT:
            keep = _name(reader, a, b, _VALUE_INFO_NAME) in wanted
        elif number in (_GRAPH_INPUT, _GRAPH_VALUE_INFO):
            keep = _name(reader, a, b, _VALUE_INFO_NAME) in values
        elif number == _GRAPH_INITIALIZER:
            keep = _name(reader, a, b, _TENSOR_NAME) in values
        else:
            keep = True
        if keep:
            kept.append(data[entry_start:b])
    return b"".join(kept)


def _node_names(reader: WireReader, start: int, end: int) -> tuple[list[str], list[str]]:
    inputs: list[str] = []
    outputs: list[str] = []
    for number, wire, a, b in reader.fields(start, end):
        if wire == WIRE_BYTES and number == _NODE_INPUT:
            inputs.append(reader.text(a, b, "a node input name"))
        elif wire == WIRE_BYTES and number == _NODE_OUTPUT:
            outputs.append(reader.text(a, b, "a node output name"))
    return inputs, outputs


def _name(reader: WireReader, start: int, end: int, field: int) -> str:
    for number, wire, a, b in reader.fields(start, end):
        if number == field and wire == WIRE_BYTES:
            return reader.text(a, b, "a value name")
    return ""


def _key(number: int) -> bytes:
    return _varint(number << 3 | WIRE_BYTES)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
