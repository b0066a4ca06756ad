"""Tiny float models built in code for the calibration tests (no files, no torch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _conv(name, x, cin, cout, rng, k=3, group=1, inits=None):
    w = rng.normal(0, (2.0 / (cin * k * k / group)) ** 0.5, (cout, cin // group, k, k))
    inits += [_init(f"{name}.w", w), _init(f"{name}.b", rng.normal(0, 0.1, cout))]
    return helper.make_node(
        "Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.out"], name=name, pads=[k // 2] * 4, group=group
    )


def _bn(name, x, c, rng, inits):
    inits += [
        _init(f"{name}.s", rng.uniform(0.5, 1.5, c)),
        _init(f"{name}.bias", rng.normal(0, 0.1, c)),
        _init(f"{name}.m", rng.normal(0, 0.1, c)),
        _init(f"{name}.v", rng.uniform(0.5, 1.5, c)),
    ]
    return helper.make_node(
        "BatchNormalization",
        [x, f"{name}.s", f"{name}.bias", f"{name}.m", f"{name}.v"],
        [f"{name}.out"],
        name=name,
    )


def conv_bn_relu_residual(seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """x -> Conv+BN+ReLU -> Conv+BN -> Add(residual) -> ReLU -> GAP -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = [
        _conv("conv1", "x", 3, 8, rng, inits=inits),
        _bn("bn1", "conv1.out", 8, rng, inits),
        helper.make_node("Relu", ["bn1.out"], ["relu1"], name="relu1"),
        _conv("conv2", "relu1", 8, 8, rng, inits=inits),
        _bn("bn2", "conv2.out", 8, rng, inits),
        helper.make_node("Add", ["bn2.out", "relu1"], ["res"], name="add"),
        helper.make_node("Relu", ["res"], ["relu2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    inits += [_init("fc.w", rng.normal(0, 0.5, (classes, 8))), _init("fc.b", np.zeros(classes))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    return _model(nodes, [x], [y], inits)


def depthwise_concat(seed: int = 0) -> onnx.ModelProto:
    """Conv -> ReLU -> (depthwise 3x3 -> ReLU) || (1x1 conv) -> Concat -> 1x1 Conv -> GAP -> Gemm."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = [
        _conv("stem", "x", 3, 8, rng, inits=inits),
        helper.make_node("Relu", ["stem.out"], ["r0"], name="r0"),
        _conv("dw", "r0", 8, 8, rng, group=8, inits=inits),
        helper.make_node("Relu", ["dw.out"], ["r1"], name="r1"),
        _conv("pw", "r0", 8, 8, rng, k=1, inits=inits),
        helper.make_node("Concat", ["r1", "pw.out"], ["cat"], name="cat", axis=1),
        _conv("mix", "cat", 16, 8, rng, k=1, inits=inits),
        helper.make_node("GlobalAveragePool", ["mix.out"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    inits += [_init("fc.w", rng.normal(0, 0.5, (10, 8))), _init("fc.b", np.zeros(10))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    return _model(nodes, [x], [y], inits)


def _linear(name, x, din, dout, rng, inits):
    inits += [
        _init(f"{name}.w", rng.normal(0, din**-0.5, (din, dout))),
        _init(f"{name}.b", rng.normal(0, 0.02, dout)),
    ]
    return [
        helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.mm"], name=name),
        helper.make_node("Add", [f"{name}.mm", f"{name}.b"], [f"{name}.out"], name=f"{name}.bias"),
    ]


def attention_block(seed: int = 0, d: int = 16, t: int = 6) -> onnx.ModelProto:
    """Pre-LN single-head attention + GELU MLP, with residual adds (LayerNorm, Softmax, Erf-GELU)."""
    rng = np.random.default_rng(seed)
    inits: list = [
        _init("ln.g", np.ones(d)),
        _init("ln.b", np.zeros(d)),
        _init("scale", np.array(d**-0.5)),
        _init("half", np.array(0.5)),
        _init("one", np.array(1.0)),
        _init("rsqrt2", np.array(2**-0.5)),
    ]
    nodes = [helper.make_node("LayerNormalization", ["x", "ln.g", "ln.b"], ["ln1"], name="ln1", axis=-1)]
    for p in ("q", "k", "v"):
        nodes += _linear(p, "ln1", d, d, rng, inits)
    nodes += [
        helper.make_node("Transpose", ["k.out"], ["kT"], name="kT", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q.out", "kT"], ["qk"], name="qk"),
        helper.make_node("Mul", ["qk", "scale"], ["qk_s"], name="qk_scale"),
        helper.make_node("Softmax", ["qk_s"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "v.out"], ["ctx"], name="ctx"),
    ]
    nodes += _linear("o", "ctx", d, d, rng, inits)
    nodes += [
        helper.make_node("Add", ["x", "o.out"], ["res1"], name="res1"),
        helper.make_node("LayerNormalization", ["res1", "ln.g", "ln.b"], ["ln2"], name="ln2", axis=-1),
    ]
    nodes += _linear("fc1", "ln2", d, 2 * d, rng, inits)
    nodes += [
        helper.make_node("Mul", ["fc1.out", "rsqrt2"], ["g0"], name="gelu_div"),
        helper.make_node("Erf", ["g0"], ["g1"], name="gelu_erf"),
        helper.make_node("Add", ["g1", "one"], ["g2"], name="gelu_add"),
        helper.make_node("Mul", ["fc1.out", "g2"], ["g3"], name="gelu_mul"),
        helper.make_node("Mul", ["g3", "half"], ["gelu"], name="gelu_half"),
    ]
    nodes += _linear("fc2", "gelu", 2 * d, d, rng, inits)
    nodes += [helper.make_node("Add", ["res1", "fc2.out"], ["y"], name="res2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", t, d])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", t, d])
    return _model(nodes, [x], [y], inits)


def mlp(seed: int = 0, din: int = 16, hidden: int = 32, classes: int = 4, hostile: str | None = None):
    """Gemm-ReLU MLP; ``hostile`` names a layer ('fc2') whose input gets one huge, useless feature."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = []
    x = "x"
    dims = [din, hidden, hidden, classes]
    for i in range(3):
        name = f"fc{i + 1}"
        w = rng.normal(0, (2.0 / dims[i]) ** 0.5, (dims[i + 1], dims[i]))
        b = np.zeros(dims[i + 1])
        if hostile == name:
            w[:, 0] = 0.0  # feature 0 carries no information for the output ...
        if hostile and i + 1 < 3 and f"fc{i + 2}" == hostile:
            b[0] = 5000.0  # ... but it is huge, so one per-tensor scale crushes every other feature
        inits += [_init(f"{name}.w", w), _init(f"{name}.b", b)]
        out = "logits" if i == 2 else f"{name}.out"
        nodes.append(helper.make_node("Gemm", [x, f"{name}.w", f"{name}.b"], [out], name=name, transB=1))
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i + 1}"], name=f"relu{i + 1}"))
            x = f"relu{i + 1}"
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", din])
    yo = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    return _model(nodes, [xi], [yo], inits)


def run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)
