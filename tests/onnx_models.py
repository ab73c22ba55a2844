"""ONNX models built with onnx.helper for tests and benchmarks: shapes only, no weights.

Weights are initializers whose data lie in an external file that does not
exist: coopt must never open it.  ``weights_inline=True`` stores real bytes
instead (the benchmark's 500 MB model).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper


class Graph:
    """Collects nodes and weight initializers; ``model()`` returns the ModelProto."""

    def __init__(self, name: str, inputs: dict, *, opset: int = 17, weights_inline: bool = False):
        self.name, self.opset, self.inline = name, opset, weights_inline
        self.nodes, self.inits, self.n = [], [], 0
        self.inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()]
        self.offset = 0

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def weight(self, name: str, dims) -> str:
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
        size = int(np.prod(dims)) * 4
        if self.inline:
            t.raw_data = np.random.default_rng(0).bytes(size)
        else:
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", "weights_not_here.bin"), ("offset", str(self.offset)), ("length", str(size))):
                e = t.external_data.add()
                e.key, e.value = k, v
            self.offset += size
        self.inits.append(t)
        return name

    def const(self, name: str, values) -> str:
        self.inits.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values)))
        return name

    def op(self, op: str, inputs: list, name: str | None = None, **attrs) -> str:
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or out, **attrs))
        return out

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
        w = self.weight(f"{name}.weight", [cout, cin // group, k, k])
        return self.op("Conv", [x, w], name, kernel_shape=[k, k], strides=[stride, stride],
                       pads=[k // 2] * 4, group=group)

    def bn(self, x: str, c: int, name: str) -> str:
        ps = [self.weight(f"{name}.bn.{p}", [c]) for p in ("scale", "bias", "mean", "var")]
        return self.op("BatchNormalization", [x, *ps])

    def model(self, output: str):
        g = helper.make_graph(self.nodes, self.name, self.inputs,
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])


def resnet50(batch: int = 1, **kw):
    """torchvision ResNet-50 v1.5 as torch.onnx exports it (Conv, BN, Relu, MaxPool, Add, GAP, Flatten, Gemm)."""
    g = Graph("resnet50", {"input": [batch, 3, 224, 224]}, **kw)
    x = g.op("Relu", [g.bn(g.conv("input", "conv1", 3, 64, 7, 2), 64, "bn1")])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    inplanes = 64
    for stage, (n, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for i in range(n):
            s = 2 if (i == 0 and stage > 1) else 1
            pre = f"layer{stage}.{i}"
            y = g.op("Relu", [g.bn(g.conv(x, f"{pre}.conv1", inplanes, width, 1), width, pre + "1")])
            y = g.op("Relu", [g.bn(g.conv(y, f"{pre}.conv2", width, width, 3, s), width, pre + "2")])
            y = g.bn(g.conv(y, f"{pre}.conv3", width, width * 4, 1), width * 4, pre + "3")
            short = x
            if s != 1 or inplanes != width * 4:
                short = g.bn(g.conv(x, f"{pre}.downsample", inplanes, width * 4, 1, s), width * 4, pre + "d")
            x = g.op("Relu", [g.op("Add", [y, short])])
            inplanes = width * 4
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    x = g.op("Gemm", [x, g.weight("fc.weight", [1000, 2048]), g.weight("fc.bias", [1000])], "fc", transB=1)
    return g.model(x)


_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(batch: int = 1, **kw):
    """torchvision MobileNetV2 (width 1.0): ReLU6 as Clip, depthwise convs as Conv with group = channels."""
    g = Graph("mobilenet_v2", {"input": [batch, 3, 224, 224]}, **kw)
    g.inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    g.inits.append(helper.make_tensor("six", TensorProto.FLOAT, [], [6.0]))

    def relu6(v):
        return g.op("Clip", [v, "zero", "six"])

    x = relu6(g.bn(g.conv("input", "features.0", 3, 32, 3, 2), 32, "f0"))
    cin, idx = 32, 1
    for t, c, n, s in _MBV2:
        for i in range(n):
            stride, hidden, pre = (s if i == 0 else 1), cin * t, f"features.{idx}"
            y = x
            if t != 1:
                y = relu6(g.bn(g.conv(y, f"{pre}.expand", cin, hidden, 1), hidden, pre + "e"))
            y = relu6(g.bn(g.conv(y, f"{pre}.depthwise", hidden, hidden, 3, stride, group=hidden), hidden, pre + "d"))
            y = g.bn(g.conv(y, f"{pre}.project", hidden, c, 1), c, pre + "p")
            x = g.op("Add", [x, y]) if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    x = relu6(g.bn(g.conv(x, f"features.{idx}", cin, 1280, 1), 1280, "last"))
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    x = g.op("Gemm", [x, g.weight("classifier.weight", [1000, 1280]), g.weight("classifier.bias", [1000])],
             "classifier", transB=1)
    return g.model(x)


def transformer_block(seq: int = 128, d: int = 256, heads: int = 4, ff: int = 1024, batch="batch", **kw):
    """One pre-norm encoder block: QKV projections, QK^T as an Einsum, softmax, AV as a batched MatMul,
    output projection, MLP.  The input's batch size is dynamic unless ``batch`` is an integer."""
    g = Graph("block", {"x": [batch, seq, d]}, **kw)
    dh = d // heads
    h = g.op("LayerNormalization", ["x", g.weight("ln1.scale", [d]), g.weight("ln1.bias", [d])], axis=-1)
    q, k, v = (g.op("MatMul", [h, g.weight(f"W{n}", [d, d])], f"{n}_proj") for n in "qkv")
    split = g.const("split_shape", [0, seq, heads, dh])
    q, k, v = (g.op("Transpose", [g.op("Reshape", [t, split])], perm=[0, 2, 1, 3]) for t in (q, k, v))
    s = g.op("Einsum", [q, k], "scores", equation="bhqd,bhkd->bhqk")
    p = g.op("Softmax", [s], axis=-1)
    a = g.op("MatMul", [p, v], "attention_v")
    a = g.op("Reshape", [g.op("Transpose", [a], perm=[0, 2, 1, 3]), g.const("merge_shape", [0, seq, d])])
    x = g.op("Add", ["x", g.op("MatMul", [a, g.weight("Wo", [d, d])], "out_proj")])
    h = g.op("LayerNormalization", [x, g.weight("ln2.scale", [d]), g.weight("ln2.bias", [d])], axis=-1)
    h = g.op("Relu", [g.op("MatMul", [h, g.weight("W1", [d, ff])], "mlp_up")])
    x = g.op("Add", [x, g.op("MatMul", [h, g.weight("W2", [ff, d])], "mlp_down")])
    return g.model(x)


def save(model, path) -> str:
    onnx.save_model(model, str(path))
    return str(path)
