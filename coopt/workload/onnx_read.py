"""Read an ONNX model's graph without its weights: a 500 MB model parses in a second, in little memory.

``onnx.load`` would parse every weight into memory.  Here the file is
memory-mapped and the protobuf wire format walked by hand: every field of
the model and its graph is copied as it is, except large initializers
(weights), whose bytes are skipped; their name, element type and dimensions
become graph inputs of that type and shape, which is all shape inference
needs.  Small initializers (shape constants that Reshape reads) are kept.
External data is never opened.  Only the graph's own initializers are
slimmed; subgraphs (If/Loop bodies) are copied whole.
"""
from __future__ import annotations

import mmap
from pathlib import Path

from coopt.errors import SpecError

SMALL_INITIALIZER = 4096          # bytes: initializers up to this size are kept (shape constants)
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_T_DIMS, _T_TYPE, _T_NAME = 1, 2, 8


class _Wire(Exception):
    """The bytes are not a protobuf message of the expected form."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Wire("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf, start: int, end: int):
    """Yield (field number, wire type, value start, value end, field start) over one message."""
    pos = start
    while pos < end:
        first = pos
        key, pos = _varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise _Wire("field number 0")
        if wt == 0:
            _, nxt = _varint(buf, pos, end)
        elif wt == 1:
            nxt = pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            nxt = pos + n
        elif wt == 5:
            nxt = pos + 4
        else:
            raise _Wire(f"wire type {wt}")
        if nxt > end:
            raise _Wire("field runs past the end")
        yield field, wt, pos, nxt, first
        pos = nxt


def _tensor_header(buf, start: int, end: int) -> tuple[str, int, list[int]]:
    """Name, element type and dimensions of a TensorProto, its data skipped."""
    name, dtype, dims = "", 0, []
    for field, wt, a, b, _ in _fields(buf, start, end):
        if field == _T_DIMS:
            if wt == 0:
                dims.append(_varint(buf, a, b)[0])
            elif wt == 2:                               # packed
                pos = a
                while pos < b:
                    v, pos = _varint(buf, pos, b)
                    dims.append(v)
        elif field == _T_TYPE and wt == 0:
            dtype = _varint(buf, a, b)[0]
        elif field == _T_NAME and wt == 2:
            name = bytes(buf[a:b]).decode("utf-8", "replace")
    return name, dtype, dims


def _slim_graph(buf, start: int, end: int) -> tuple[bytes, list[tuple[str, int, list[int]]]]:
    out, weights = bytearray(), []
    for field, _, a, b, first in _fields(buf, start, end):
        if field == _GRAPH_INITIALIZER and b - a > SMALL_INITIALIZER:
            weights.append(_tensor_header(buf, a, b))
        else:
            out += buf[first:b]
    return bytes(out), weights


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def read_model_shapes_only(path: str | Path):
    """``(onnx.ModelProto, weight names)``: ``path``'s model with large initializers turned into typed
    graph inputs (named in the set: they are no inputs of the user's)."""
    import onnx
    from onnx import helper

    file = str(path)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size == 0:
                raise SpecError("empty file", file=file, expected="an ONNX model")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                slim, weights = bytearray(), []
                for field, wt, a, b, first in _fields(mm, 0, size):
                    if field == _MODEL_GRAPH and wt == 2:
                        graph, weights = _slim_graph(mm, a, b)
                        slim += _encode_varint(_MODEL_GRAPH << 3 | 2) + _encode_varint(len(graph)) + graph
                    else:
                        slim += mm[first:b]
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror or exc}", file=file, expected="an ONNX model") from None
    except _Wire as exc:
        raise SpecError(f"not an ONNX model ({exc})", file=file, expected="an ONNX protobuf file") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(bytes(slim))
    except Exception as exc:          # protobuf's DecodeError and friends: the bytes are no ModelProto
        raise SpecError(f"not an ONNX model ({type(exc).__name__})", file=file,
                        expected="an ONNX protobuf file") from None
    if not model.HasField("graph") or not model.graph.node:
        raise SpecError("not an ONNX model (no graph nodes)", file=file, expected="an ONNX model with a graph")
    listed = {i.name for i in model.graph.input}
    for name, dtype, dims in weights:
        if name not in listed:
            model.graph.input.append(helper.make_tensor_value_info(name, dtype or onnx.TensorProto.FLOAT, dims))
    return model, {name for name, _, _ in weights}
