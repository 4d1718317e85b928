"""Cut an ONNX graph after a hidden state, and read model metadata, without the `onnx` package.

ONNX Runtime computes every node of a graph whatever outputs are requested, so `--layers 6` on a
12-layer model would pay for all 12. Cutting the serialized ModelProto keeps extraction's
dependencies small: a minimal protobuf wire-format walk that keeps every field it does not need
to change byte for byte (tensors' raw data are sliced, never decoded). Graphs with subgraph
attributes (If/Loop) are refused: the exporter never produces them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# Field numbers from onnx.proto.
MODEL_GRAPH, MODEL_METADATA = 7, 14
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_OUTPUT, GRAPH_VALUE_INFO, GRAPH_SPARSE_INITIALIZER = 1, 5, 12, 13, 15
NODE_INPUT, NODE_OUTPUT, NODE_ATTRIBUTE = 1, 2, 5
ATTRIBUTE_G, ATTRIBUTE_GRAPHS = 6, 11
TENSOR_NAME, VALUE_INFO_NAME, SPARSE_VALUES = 8, 1, 1
ENTRY_KEY, ENTRY_VALUE = 1, 2


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protobuf")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, memoryview, memoryview]]:
    """(field number, wire type, payload, whole field bytes) for each field of one message."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
            payload = data[start:pos]
        elif wire == 1:
            pos += 8
            payload = data[pos - 8 : pos]
        elif wire == 2:
            size, pos = _varint(data, pos)
            pos += size
            payload = data[pos - size : pos]
        elif wire == 5:
            pos += 4
            payload = data[pos - 4 : pos]
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf")
        yield number, wire, payload, data[start:pos]


def _strings(message: memoryview, number: int) -> list[str]:
    return [bytes(p).decode() for n, w, p, _ in _fields(message) if n == number and w == 2]


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _tensor_name(field_number: int, payload: memoryview) -> str:
    if field_number == GRAPH_SPARSE_INITIALIZER:
        values = [p for n, _, p, _ in _fields(payload) if n == SPARSE_VALUES]
        return _strings(values[0], TENSOR_NAME)[0] if values else ""
    names = _strings(payload, TENSOR_NAME)
    return names[0] if names else ""


def _cut_graph(graph: memoryview, keep: set[str]) -> bytes:
    fields = list(_fields(graph))
    outputs = {(_strings(p, VALUE_INFO_NAME) or [""])[0] for n, _, p, _ in fields if n == GRAPH_OUTPUT}
    missing = sorted(keep - outputs)
    if missing:
        raise ValueError(f"the graph has no output {missing[0]}")
    nodes = [(i, p) for i, (n, _, p, _) in enumerate(fields) if n == GRAPH_NODE]
    needed, kept_nodes = set(keep), set()
    for index, node in reversed(nodes):  # ONNX nodes are topologically sorted
        if needed.intersection(_strings(node, NODE_OUTPUT)):
            if any(n == NODE_ATTRIBUTE and _has_subgraph(p) for n, _, p, _ in _fields(node)):
                raise ValueError("graphs with subgraphs (If/Loop) are not supported")
            kept_nodes.add(index)
            needed.update(name for name in _strings(node, NODE_INPUT) if name)
    out = bytearray()
    for index, (number, _, payload, raw) in enumerate(fields):
        if number == GRAPH_NODE and index not in kept_nodes:
            continue
        if number in (GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER) and _tensor_name(number, payload) not in needed:
            continue
        if number == GRAPH_OUTPUT and _strings(payload, VALUE_INFO_NAME)[0] not in keep:
            continue
        if number == GRAPH_VALUE_INFO and _strings(payload, VALUE_INFO_NAME)[0] not in needed:
            continue
        out += raw
    return bytes(out)


def _has_subgraph(attribute: memoryview) -> bool:
    return any(n in (ATTRIBUTE_G, ATTRIBUTE_GRAPHS) for n, _, _, _ in _fields(attribute))


def cut_model(model: bytes, keep_outputs: Sequence[str]) -> bytes:
    """The serialized model whose graph computes only `keep_outputs`; everything else kept as is.

    Graph inputs stay (the input contract never changes). Tensors stored as external data keep their
    references, so such a model must be loaded from bytes with the original folder as its base path.
    """
    view = memoryview(model)
    out = bytearray()
    for number, _, payload, raw in _fields(view):
        out += _length_delimited(MODEL_GRAPH, _cut_graph(payload, set(keep_outputs))) if number == MODEL_GRAPH else raw
    return bytes(out)


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of a model file, reading only the top-level fields (the graph is skipped, not loaded)."""
    metadata: dict[str, str] = {}
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos < end:
            fh.seek(pos)
            view = memoryview(fh.read(24))
            key, offset = _varint(view, 0)
            number, wire = key >> 3, key & 7
            if wire == 0:
                pos += _varint(view, offset)[1]
            elif wire in (1, 5):
                pos += offset + (8 if wire == 1 else 4)
            elif wire == 2:
                size, offset = _varint(view, offset)
                if number == MODEL_METADATA:
                    fh.seek(pos + offset)
                    entry = memoryview(fh.read(size))
                    keys, values = _strings(entry, ENTRY_KEY), _strings(entry, ENTRY_VALUE)
                    if keys:
                        metadata[keys[0]] = values[0] if values else ""
                pos += offset + size
            else:
                raise ValueError(f"protobuf wire type {wire} at byte {pos}")
    return metadata
