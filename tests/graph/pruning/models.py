"""Tiny ONNX graphs built in code, one per coupling type the pruner understands."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


class G:
    """A small graph builder: ``conv``/``bn``/``op`` append nodes and return their output names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        self.n += 1
        name = f"{prefix}{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], name: str | None = None, n_out: int = 1, **attrs: object) -> str:
        self.n += 1
        name = name or f"{op.lower()}{self.n}"
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else ",".join(outs)

    def conv(self, x: str, cin: int, cout: int, k: int = 3, group: int = 1, name: str | None = None) -> str:
        w = self.const(RNG.standard_normal((cout, cin // group, k, k)).astype(np.float32) * 0.3, "w")
        b = self.const(RNG.standard_normal(cout).astype(np.float32) * 0.1, "b")
        return self.op("Conv", [x, w, b], name, pads=[k // 2] * 4, group=group)

    def bn(self, x: str, c: int, name: str | None = None) -> str:
        scale = self.const((RNG.random(c) + 0.5).astype(np.float32))
        bias = self.const(RNG.standard_normal(c).astype(np.float32) * 0.1)
        mean = self.const(RNG.standard_normal(c).astype(np.float32) * 0.1)
        var = self.const((RNG.random(c) + 0.5).astype(np.float32))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], name)

    def gemm(self, x: str, k: int, n: int, name: str | None = None) -> str:
        w = self.const(RNG.standard_normal((n, k)).astype(np.float32) * 0.2, "w")
        b = self.const(RNG.standard_normal(n).astype(np.float32) * 0.1, "b")
        return self.op("Gemm", [x, w, b], name, transB=1)

    def matmul(self, x: str, k: int, n: int, name: str | None = None, bias: bool = True) -> str:
        w = self.const(RNG.standard_normal((k, n)).astype(np.float32) * 0.2, "w")
        y = self.op("MatMul", [x, w], name)
        if bias:
            y = self.op("Add", [y, self.const(RNG.standard_normal(n).astype(np.float32) * 0.1, "b")])
        return y

    def model(
        self, inputs: dict[str, list[int | str]], outputs: list[str], opset: int = 17
    ) -> onnx.ModelProto:
        ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()]
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "g", ins, outs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(m)
        shapes = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for vi in m.graph.output:
            vi.CopyFrom(shapes[vi.name])
        onnx.checker.check_model(m, full_check=True)
        return m


def head(g: G, x: str, c: int, classes: int = 10) -> str:
    p = g.op("GlobalAveragePool", [x])
    f = g.op("Flatten", [p])
    return g.gemm(f, c, classes, name="fc")


def chain() -> onnx.ModelProto:
    g = G()
    y = g.op("Relu", [g.bn(g.conv("x", 3, 16, name="conv1"), 16)])
    y = g.op("Relu", [g.conv(y, 16, 16, name="conv2")])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 16)])


def residual() -> onnx.ModelProto:
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="stem")])
    b = g.op("Relu", [g.conv(a, 16, 16, name="c1")])
    b = g.conv(b, 16, 16, name="c2")
    y = g.op("Relu", [g.op("Add", [a, b])])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 16)])


def concat() -> onnx.ModelProto:
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="a")])
    b = g.op("Relu", [g.conv("x", 3, 8, name="b")])
    y = g.op("Concat", [a, b], axis=1)
    y = g.op("Relu", [g.conv(y, 24, 16, name="c")])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 16)])


def split() -> onnx.ModelProto:
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="a")])
    s = g.op("Split", [a, g.const(np.array([8, 8], dtype=np.int64))], n_out=2, axis=1).split(",")
    y1 = g.conv(s[0], 8, 8, name="b1")
    y2 = g.conv(s[1], 8, 8, name="b2")
    y = g.op("Relu", [g.op("Add", [y1, y2])])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 8)])


def depthwise() -> onnx.ModelProto:
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="a")])
    d = g.op("Relu", [g.bn(g.conv(a, 16, 16, group=16, name="dw"), 16)])
    y = g.op("Relu", [g.conv(d, 16, 16, k=1, name="pw")])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 16)])


def flatten_gemm() -> onnx.ModelProto:
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="a")])
    p = g.op("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    f = g.op("Reshape", [p, g.const(np.array([-1, 16 * 16], dtype=np.int64))])
    h = g.op("Relu", [g.gemm(f, 256, 32, name="fc1")])
    return g.model({"x": ["N", 3, 8, 8]}, [g.gemm(h, 32, 10, name="fc2")])


def attention(heads: int = 4, dh: int = 8, seq: int = 6) -> onnx.ModelProto:
    g = G()
    d = heads * dh
    shape = g.const(np.array([0, 0, heads, dh], dtype=np.int64))
    back = g.const(np.array([0, 0, d], dtype=np.int64))

    def split_heads(t: str, perm: list[int]) -> str:
        return g.op("Transpose", [g.op("Reshape", [t, shape])], perm=perm)

    q = split_heads(g.matmul("x", d, d, name="wq"), [0, 2, 1, 3])
    k = split_heads(g.matmul("x", d, d, name="wk"), [0, 2, 3, 1])
    v = split_heads(g.matmul("x", d, d, name="wv"), [0, 2, 1, 3])
    s = g.op("Mul", [g.op("MatMul", [q, k]), g.const(np.array(dh**-0.5, dtype=np.float32))])
    p = g.op("Softmax", [s], axis=-1)
    o = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3]), back])
    a = g.op("Add", ["x", g.matmul(o, d, d, name="wo")])
    h = g.op("Relu", [g.matmul(a, d, 4 * d, name="ffn1")])
    y = g.op("Add", [a, g.matmul(h, 4 * d, d, name="ffn2")])
    return g.model({"x": ["N", seq, d]}, [y])


def unknown_op() -> onnx.ModelProto:
    """conv1 feeds an LRN (normalises across channels: no handler), conv2 does not."""
    g = G()
    a = g.op("LRN", [g.op("Relu", [g.conv("x", 3, 16, name="conv1")])], size=3)
    y = g.op("Relu", [g.conv(a, 16, 16, name="conv2")])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 16)])


def dead_channels(dead: tuple[int, ...] = (1, 4, 5, 9)) -> onnx.ModelProto:
    """conv1 -> BN -> ReLU with planted dead channels (zero weights and bias, BN shift < 0), then
    a Gemm head whose hidden units 3 and 7 have zero weights and bias."""
    m = chain()
    inits = {t.name: t for t in m.graph.initializer}
    conv1 = next(n for n in m.graph.node if n.name == "conv1")
    bn = next(n for n in m.graph.node if n.op_type == "BatchNormalization")
    w = numpy_helper.to_array(inits[conv1.input[1]]).copy()
    b = numpy_helper.to_array(inits[conv1.input[2]]).copy()
    beta = numpy_helper.to_array(inits[bn.input[2]]).copy()
    mean = numpy_helper.to_array(inits[bn.input[3]]).copy()
    for i in dead:
        w[i], b[i], beta[i], mean[i] = 0.0, 0.0, -0.5, 0.0
    for name, value in ((conv1.input[1], w), (conv1.input[2], b), (bn.input[2], beta), (bn.input[3], mean)):
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    return m
