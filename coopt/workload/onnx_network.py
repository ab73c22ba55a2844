"""A network from an ONNX model: its convolutions and matrix products as Timeloop CONV layers.

Shapes come from ONNX shape inference (``--input-shape NAME=1x3x224x224``
fixes dynamic inputs; ``--batch`` sets the first size of the inputs it does
not name); weights are never loaded (``coopt.workload.onnx_read``).

Every mapped node becomes Timeloop's CNN layer, the form the templates'
dataflow constraints are written for, with exact MACs and exact tensor
volumes:
- ``Conv`` (1-D/2-D): R,S kernel width/height, P,Q output width/height,
  strides and dilations as coefficients, padding implicit in P,Q; groups G
  are G independent convolutions of C/G -> M/G channels (count x G), as the
  built-in MobileNet-V2 models depthwise layers.
- ``Gemm``, ``MatMul``, ``Einsum`` (one contraction of two operands):
  Z[m,n] = sum_k A[m,k] B[k,n] is the CONV layer C=k, M=n, P=m (rows), R=S=Q=1:
  the right operand takes the Weights' place, the left the Inputs'.  Tile
  sizes, and so every access count Timeloop computes, equal those of the
  einsum form for the same loop nest.  Batch ranks that the right operand
  shares (it is broadcast) join N; batch ranks along which both operands
  vary (attention's heads) are independent products: count x size.
- ``ConvTranspose``: the CNN layer's ranks with the affine projection on
  the Outputs (each input pixel scatters a kernel's worth of products):
  exact MACs; the output's dense box includes the border that pads crop.
Every other node is listed as not mapped with its count and element
operations (output elements; x kernel size for pooling; input elements
for reductions).
"""
from __future__ import annotations

import re
from math import prod
from pathlib import Path

from coopt.errors import SpecError
from coopt.workload.network_types import Network, NotMapped, merge_layers
from coopt.workload.problem import MAX_BOUND, DataSpace, Problem, compact, conv_problem, gemm_problem

MIN_OPSET = 7
_POOLS = ("MaxPool", "AveragePool", "LpPool")
_REDUCTIONS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum", "ReduceMax",
               "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
               "ReduceSumSquare")


class _Skip(Exception):
    """A node of a mapped kind that Timeloop's CNN layer cannot express: why."""


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Shapes:
    """Static shapes of the graph's values after shape inference."""

    def __init__(self, model):
        self.known: dict[str, tuple | None] = {}
        g = model.graph
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            self.known[vi.name] = self._dims(vi)
        for t in g.initializer:
            self.known[t.name] = tuple(t.dims)

    @staticmethod
    def _dims(vi):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        return None if any(d is None or d < 0 for d in dims) else tuple(dims)

    def of(self, name: str):
        return self.known.get(name)

    def need(self, node, name: str) -> tuple:
        s = self.known.get(name)
        if s is None:
            raise _Skip(f"the shape of {name!r} is unknown after ONNX shape inference")
        return s


def _check(v: int, what: str) -> int:
    if not 1 <= v <= MAX_BOUND:
        raise _Skip(f"{what} {v:,} is outside 1..{MAX_BOUND:,}")
    return v


def _gemm(name: str, m: int, k: int, n: int, batch: int = 1) -> Problem:
    """Z[m,n] = A[m,k] B[k,n] (x batch shared-weight rows) as Timeloop's CNN layer."""
    return gemm_problem(name, _check(m, "rows"), _check(k, "K"), _check(n, "N"), _check(batch, "batch"))


def _conv_geometry(node, shapes: _Shapes, kind: str):
    """(groups, weights, spatial tensor (output for Conv, input for ConvTranspose), coefficients) in
    two spatial ranks (a 1-D convolution has height 1)."""
    a = _attrs(node)
    w = shapes.need(node, node.input[1])
    t = shapes.need(node, node.output[0] if kind == "convolution" else node.input[0])
    if len(w) not in (3, 4):
        raise _Skip(f"{len(w) - 2}-D {kind}: Timeloop's CNN layer has one or two spatial ranks")
    strides = list(a.get("strides", [1] * (len(w) - 2)))
    dil = list(a.get("dilations", [1] * (len(w) - 2)))
    if len(w) == 3:                                   # 1-D: the width only
        w, t, strides, dil = (*w[:2], 1, w[2]), (*t[:2], 1, t[2]), [1, strides[0]], [1, dil[0]]
    coefs = dict(Wstride=_check(strides[1], "stride"), Hstride=_check(strides[0], "stride"),
                 Wdilation=_check(dil[1], "dilation"), Hdilation=_check(dil[0], "dilation"))
    return int(a.get("group", 1)), w, t, coefs


def _spatial(w, t) -> dict:
    return dict(R=_check(w[3], "kernel width"), S=_check(w[2], "kernel height"), P=_check(t[3], "width"),
                Q=_check(t[2], "height"), N=_check(t[0], "batch"))


def _conv(node, shapes: _Shapes, name: str) -> tuple[Problem, int]:
    g, w, y, coefs = _conv_geometry(node, shapes, "convolution")
    x = shapes.need(node, node.input[0])
    m, cg = w[0], w[1]
    if y[1] % g or m % g or x[1] != cg * g:
        raise _Skip(f"groups {g} do not divide the channels (input {x[1]}, weights {tuple(w)})")
    return conv_problem(name, **_spatial(w, y), C=_check(cg, "channels"), M=_check(m // g, "channels"),
                        **coefs), g


def _conv_transpose(node, shapes: _Shapes, name: str) -> tuple[Problem, int]:
    g, w, x, coefs = _conv_geometry(node, shapes, "transposed convolution")
    cin, mg = w[0], w[1]
    if cin % g:
        raise _Skip(f"groups {g} do not divide the {cin} input channels")
    bounds = dict(**_spatial(w, x), C=_check(cin // g, "channels"), M=_check(mg, "channels"))
    spaces = (DataSpace("Weights", (((None, "C"),), ((None, "M"),), ((None, "R"),), ((None, "S"),))),
              DataSpace("Inputs", (((None, "N"),), ((None, "C"),), ((None, "Q"),), ((None, "P"),))),
              DataSpace("Outputs", (((None, "N"),), ((None, "M"),),
                                    (("Wdilation", "R"), ("Wstride", "P")), (("Hdilation", "S"), ("Hstride", "Q"))),
                        read_write=True))
    return Problem(name, ("C", "M", "R", "S", "N", "P", "Q"), spaces, bounds, coefs, "CNN_Layer_Transposed"), g


def _matmul_dims(a: tuple, b: tuple) -> tuple[int, int, int, int, int]:
    """numpy matmul of shapes a @ b -> (rows m, k, n, shared-weight batch, independent count)."""
    a1, b1 = len(a) == 1, len(b) == 1
    a = (1, *a) if a1 else a
    b = (*b, 1) if b1 else b
    m, k, k2, n = a[-2], a[-1], b[-2], b[-1]
    if k != k2:
        raise _Skip(f"inner sizes differ ({k} and {k2})")
    ba, bb = a[:-2], b[:-2]
    width = max(len(ba), len(bb))
    ba, bb = (1,) * (width - len(ba)) + ba, (1,) * (width - len(bb)) + bb
    shared = prod(x for x, y in zip(ba, bb) if y == 1)
    count = prod(max(x, y) for x, y in zip(ba, bb) if y != 1)
    return m, k, n, shared, count


def _matmul(node, shapes: _Shapes, name: str) -> tuple[Problem, int]:
    m, k, n, shared, count = _matmul_dims(shapes.need(node, node.input[0]), shapes.need(node, node.input[1]))
    return _gemm(name, m, k, n, shared), count


def _gemm_node(node, shapes: _Shapes, name: str) -> tuple[Problem, int]:
    a_attr = _attrs(node)
    a = shapes.need(node, node.input[0])
    b = shapes.need(node, node.input[1])
    a = a[::-1] if a_attr.get("transA", 0) else a
    b = b[::-1] if a_attr.get("transB", 0) else b
    if a[1] != b[0]:
        raise _Skip(f"inner sizes differ ({a[1]} and {b[0]})")
    return _gemm(name, 1, a[1], b[1], a[0]), 1      # rows on N, like the built-in networks' FC layers


_EINSUM = re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]*)$")


def _einsum(node, shapes: _Shapes, name: str) -> tuple[Problem, int]:
    eq = _attrs(node).get("equation", b"")
    eq = (eq.decode("utf-8", "replace") if isinstance(eq, bytes) else str(eq)).replace(" ", "")
    mt = _EINSUM.match(eq)
    if not mt or len(node.input) != 2:
        raise _Skip(f"equation {eq!r} is not one contraction of two operands with explicit output "
                    "(no ellipsis)")
    ia, ib, io = mt.groups()
    if any(len(set(s)) != len(s) for s in (ia, ib, io)):
        raise _Skip(f"equation {eq!r} repeats an index within an operand (a diagonal)")
    sa, sb = shapes.need(node, node.input[0]), shapes.need(node, node.input[1])
    if len(sa) != len(ia) or len(sb) != len(ib):
        raise _Skip(f"equation {eq!r} does not match the operand ranks {len(sa)} and {len(sb)}")
    size = {**dict(zip(ia, sa)), **dict(zip(ib, sb))}
    if any(i in ib and size[i] != dict(zip(ib, sb))[i] for i in ia):
        raise _Skip(f"equation {eq!r}: an index has two sizes")
    lone = [i for i in set(ia) ^ set(ib) if i not in io] + [i for i in io if i not in ia and i not in ib]
    if lone:
        raise _Skip(f"equation {eq!r}: index {lone[0]} is summed within one operand or appears only in the output")
    batch = prod(size[i] for i in io if i in ia and i in ib)
    m = prod(size[i] for i in io if i in ia and i not in ib)
    n = prod(size[i] for i in io if i in ib and i not in ia)
    k = prod(size[i] for i in ia if i in ib and i not in io)
    return _gemm(name, m, k, n), batch


_MAPPED = {"Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm_node, "MatMul": _matmul,
           "Einsum": _einsum}


def _elements(node, shapes: _Shapes) -> int:
    """Element operations of a node that is not mapped (see the module note)."""
    if node.op_type in _REDUCTIONS and node.input:
        s = shapes.of(node.input[0])
    else:
        s = shapes.of(node.output[0]) if node.output else None
    if s is None:
        return 0
    n = prod(s)
    if node.op_type in _POOLS:
        n *= prod(_attrs(node).get("kernel_shape", [1]))
    return int(n)


def _check_opset(model, file: str) -> None:
    import onnx
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not MIN_OPSET <= imp.version <= newest:
            raise SpecError(f"opset {imp.version} is not supported", file=file, key="opset_import",
                            expected=f"ONNX opset {MIN_OPSET} to {newest}")


def _fix_inputs(model, weights: set, batch: int, input_shapes: dict, file: str) -> None:
    """Give every user input a static shape: --input-shape, else the model's own with --batch first."""
    from onnx import TensorShapeProto

    inits = {t.name for t in model.graph.initializer} | weights
    inputs = [i for i in model.graph.input if i.name not in inits]
    unknown = set(input_shapes) - {i.name for i in inputs}
    if unknown:
        raise SpecError(f"no input named {sorted(unknown)[0]!r}", file=file, key="--input-shape",
                        expected=f"one of {[i.name for i in inputs]}")
    for vi in inputs:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in input_shapes:
            new = list(input_shapes[vi.name])
        else:
            if not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
                shown = "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                                 for d in dims) or "unknown"
                example = "x".join(str(d.dim_value) if d.HasField("dim_value") else "1" for d in dims) or "1x3x224x224"
                raise SpecError(f"input {vi.name!r} has a dynamic shape ({shown})", file=file, key="--input-shape",
                                expected=f"its sizes, e.g. --input-shape {vi.name}={example}")
            new = [d.dim_value for d in dims]
            if batch != 1 and new:
                new[0] = batch
        shape = TensorShapeProto()
        for v in new:
            shape.dim.add().dim_value = v
        vi.type.tensor_type.shape.CopyFrom(shape)


def _infer(model, file: str):
    import onnx
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:              # onnx raises InferenceError/ValidationError and RuntimeErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"ONNX shape inference failed: {first}", file=file,
                        expected="a model whose shapes ONNX can infer (check --input-shape)") from None


def onnx_network(path: Path, batch: int = 1, input_shapes: dict | None = None) -> Network:
    """The Network of an ONNX model: mapped layers with counts, everything else as not mapped."""
    from coopt.workload.onnx_read import read_model_shapes_only

    file = str(path)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BOUND:
        raise SpecError(f"batch is {batch!r}", key="batch", expected=f"an integer from 1 to {MAX_BOUND:,}")
    model, weights = read_model_shapes_only(path)
    _check_opset(model, file)
    _fix_inputs(model, weights, batch, input_shapes or {}, file)
    model = _infer(model, file)
    shapes = _Shapes(model)
    entries, skipped = [], {}
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        build = _MAPPED.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if build is not None:
            try:
                problem, count = build(node, shapes, name)
                entries.append((name, compact(problem), count))
                continue
            except _Skip as why:
                reason = f"{name}: {why}"
        else:
            reason = ""
        slot = skipped.setdefault((node.op_type, reason), [0, 0])
        slot[0] += 1
        slot[1] += _elements(node, shapes)
    not_mapped = tuple(NotMapped(op, n, el, reason) for (op, reason), (n, el) in skipped.items())
    if not entries:
        why = "; ".join(n.reason for n in not_mapped if n.reason) or \
            f"it has no {', '.join(_MAPPED)} node"
        raise SpecError(f"no layer to map: {why}", file=file, key="graph.node",
                        expected="a model with convolutions or matrix products")
    return Network(Path(file).stem, merge_layers(entries), not_mapped=not_mapped, source=file)
