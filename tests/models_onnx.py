"""Tiny ONNX models built with ``onnx.helper`` for the graph tests: plain builder functions.

Every builder returns a checked ``onnx.ModelProto`` (opset 17 unless told otherwise) with
seeded random weights, so tests are deterministic. BatchNormalization statistics are drawn
away from the identity (mean != 0, var != 1) so a wrong fold shows in the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
F32 = TensorProto.FLOAT


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def vi(name: str, shape: Sequence[int | str | None], dtype: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape))


def make(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    inits: Sequence[TensorProto] = (),
    opset: int = OPSET,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def bn_params(prefix: str, channels: int, seed: int) -> list[TensorProto]:
    rng = _rng(seed)
    return [
        init(f"{prefix}.gamma", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
        init(f"{prefix}.beta", rng.uniform(-0.5, 0.5, channels).astype(np.float32)),
        init(f"{prefix}.mean", rng.uniform(-1.0, 1.0, channels).astype(np.float32)),
        init(f"{prefix}.var", rng.uniform(0.5, 2.0, channels).astype(np.float32)),
    ]


def bn_node(prefix: str, x: str, y: str, **attrs: float) -> onnx.NodeProto:
    ins = [x, f"{prefix}.gamma", f"{prefix}.beta", f"{prefix}.mean", f"{prefix}.var"]
    return helper.make_node("BatchNormalization", ins, [y], name=f"{prefix}", epsilon=1e-3, **attrs)


def conv_bn(
    bias: bool = True,
    group: int = 1,
    bn_output_is_graph_output: bool = True,
    weight_via: str = "",
) -> onnx.ModelProto:
    """x[1,4,8,8] -> Conv(3x3, 6 out) -> BN -> Relu -> y. ``weight_via``: '' | 'Identity' | 'Transpose'."""
    rng = _rng(1)
    w = rng.standard_normal((6, 4 // group, 3, 3)).astype(np.float32)
    inits = [*bn_params("bn", 6, 2)]
    nodes = []
    w_name = "w"
    if weight_via == "Identity":
        nodes.append(helper.make_node("Identity", ["w"], ["w_id"], name="w_identity"))
        w_name = "w_id"
    elif weight_via == "Transpose":  # stored as [in, out, kh, kw]; a Transpose restores [out, in, kh, kw]
        w = np.ascontiguousarray(w.transpose(1, 0, 2, 3))
        nodes.append(helper.make_node("Transpose", ["w"], ["w_t"], name="w_transpose", perm=[1, 0, 2, 3]))
        w_name = "w_t"
    inits.append(init("w", w))
    conv_in = ["x", w_name]
    if bias:
        inits.append(init("b", rng.standard_normal(6).astype(np.float32)))
        conv_in.append("b")
    nodes.append(helper.make_node("Conv", conv_in, ["c"], name="conv", pads=[1, 1, 1, 1], group=group))
    nodes.append(bn_node("bn", "c", "n"))
    outputs = [vi("y", [1, 6, 8, 8])]
    nodes.append(helper.make_node("Relu", ["n"], ["y"], name="relu"))
    if bn_output_is_graph_output:
        outputs.append(vi("n", [1, 6, 8, 8]))
    return make(nodes, [vi("x", [1, 4, 8, 8])], outputs, inits)


def conv_bn_shared_weight() -> onnx.ModelProto:
    """Two Convs read the same weight, each followed by its own BN; outputs added."""
    rng = _rng(3)
    inits = [
        init("w", rng.standard_normal((4, 4, 3, 3)).astype(np.float32)),
        *bn_params("bn1", 4, 4),
        *bn_params("bn2", 4, 5),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        bn_node("bn1", "c1", "n1"),
        helper.make_node("Conv", ["n1", "w"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        bn_node("bn2", "c2", "n2"),
    ]
    return make(nodes, [vi("x", [1, 4, 8, 8])], [vi("n2", [1, 4, 8, 8])], inits)


def conv_output_consumed_twice() -> onnx.ModelProto:
    """Conv output feeds BN and also a Relu: the BN must not fold (the Relu needs the raw value)."""
    rng = _rng(6)
    inits = [init("w", rng.standard_normal((4, 4, 1, 1)).astype(np.float32)), *bn_params("bn", 4, 7)]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        bn_node("bn", "c", "n"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["n", "r"], ["y"], name="add"),
    ]
    return make(nodes, [vi("x", [1, 4, 5, 5])], [vi("y", [1, 4, 5, 5])], inits)


def bn_output_consumed_twice() -> onnx.ModelProto:
    """BN output feeds a Relu and a Sigmoid: folding is valid, both read the fused Conv."""
    rng = _rng(8)
    inits = [init("w", rng.standard_normal((4, 4, 1, 1)).astype(np.float32)), *bn_params("bn", 4, 9)]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        bn_node("bn", "c", "n"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["n"], ["s"], name="sigmoid"),
        helper.make_node("Add", ["r", "s"], ["y"], name="add"),
    ]
    return make(nodes, [vi("x", [1, 4, 5, 5])], [vi("y", [1, 4, 5, 5])], inits)


def conv_transpose_bn(group: int = 2) -> onnx.ModelProto:
    """x[1,4,5,5] -> ConvTranspose(stride 2, 6 out, ``group``) -> BN -> y."""
    rng = _rng(10)
    w = rng.standard_normal((4, 6 // group, 3, 3)).astype(np.float32)
    inits = [init("w", w), init("b", rng.standard_normal(6).astype(np.float32)), *bn_params("bn", 6, 11)]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], name="deconv", strides=[2, 2], group=group),
        bn_node("bn", "c", "y"),
    ]
    return make(nodes, [vi("x", [1, 4, 5, 5])], [vi("y", [1, 6, 11, 11])], inits)


def gemm_bn(trans_b: int = 1, bias: bool = True, beta: float = 0.5) -> onnx.ModelProto:
    """x[N,5] -> Gemm(7 out) -> BN over [N, 7] (BatchNorm1d) -> y; dynamic batch."""
    rng = _rng(12)
    w = rng.standard_normal((7, 5) if trans_b else (5, 7)).astype(np.float32)
    inits = [init("w", w), *bn_params("bn", 7, 13)]
    ins = ["x", "w"]
    if bias:
        inits.append(init("b", rng.standard_normal(7).astype(np.float32)))
        ins.append("b")
    nodes = [
        helper.make_node("Gemm", ins, ["g"], name="gemm", transB=trans_b, alpha=1.5, beta=beta),
        bn_node("bn", "g", "y"),
    ]
    return make(nodes, [vi("x", ["batch", 5])], [vi("y", ["batch", 7])], inits)


def matmul_add(
    a_shape: Sequence[int | str] = ("batch", 5), bias_shape: Sequence[int] = (7,), bias_first: bool = False
) -> onnx.ModelProto:
    """x @ W[5,7] + b; ``a_shape`` of rank 3 or a bias that does not broadcast one way is rejected."""
    rng = _rng(14)
    inits = [
        init("w", rng.standard_normal((5, 7)).astype(np.float32)),
        init("b", rng.standard_normal(tuple(bias_shape)).astype(np.float32)),
    ]
    add_in = ["b", "m"] if bias_first else ["m", "b"]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
        helper.make_node("Add", add_in, ["y"], name="add"),
    ]
    out_shape = [*a_shape[:-1], 7]
    if len(bias_shape) == 2 and bias_shape[0] != 1:
        out_shape = [bias_shape[0], 7]
    return make(nodes, [vi("x", list(a_shape))], [vi("y", out_shape)], inits)


def identity_dropout_chain(training_mode: bool | None = None, mask_used: bool = False) -> onnx.ModelProto:
    """x -> Relu -> Identity -> Dropout -> Identity -> y (graph output). Optionally a used mask."""
    inits = [init("ratio", np.array(0.5, dtype=np.float32))]
    drop_in = ["i1", "ratio"]
    if training_mode is not None:
        inits.append(init("train", np.array(training_mode)))
        drop_in.append("train")
    drop_out = ["d", "mask"] if mask_used else ["d"]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["i1"], name="id1"),
        helper.make_node("Dropout", drop_in, drop_out, name="dropout"),
        helper.make_node("Identity", ["d"], ["y"], name="id2"),
    ]
    outputs = [vi("y", [2, 3])]
    if mask_used:
        outputs.append(vi("mask", [2, 3], TensorProto.BOOL))
    return make(nodes, [vi("x", [2, 3])], outputs, inits)


def dead_nodes() -> onnx.ModelProto:
    """y = Relu(x); a dead Sigmoid -> Tanh branch and an unused initializer hang off x."""
    inits = [init("unused", np.ones(3, dtype=np.float32))]
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["s"], name="dead_sigmoid"),
        helper.make_node("Tanh", ["s"], ["t"], name="dead_tanh"),
    ]
    return make(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], inits)


def shape_chain(batch: int | str = "batch") -> onnx.ModelProto:
    """``x.view(x.size(0), -1)`` as torch writes it: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    inits = [
        init("zero", np.array(0, dtype=np.int64)),
        init("axes0", np.array([0], dtype=np.int64)),
        init("minus_one", np.array([-1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["dim0"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["dim0", "axes0"], ["dim0_1d"], name="unsqueeze"),
        helper.make_node("Concat", ["dim0_1d", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["y"], name="reshape"),
    ]
    return make(nodes, [vi("x", [batch, 3, 4, 4])], [vi("y", [batch, 48])], inits)


def shape_chain_other_dim() -> onnx.ModelProto:
    """Reshape(x, [x.size(1), -1]) with dynamic dim 1: a dynamic dimension moved, so not foldable."""
    inits = [
        init("one", np.array(1, dtype=np.int64)),
        init("axes0", np.array([0], dtype=np.int64)),
        init("minus_one", np.array([-1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "one"], ["dim1"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["dim1", "axes0"], ["dim1_1d"], name="unsqueeze"),
        helper.make_node("Concat", ["dim1_1d", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    return make(nodes, [vi("x", [2, "n", 4])], [vi("y", ["n", 8])], inits)


def shape_chain_two_dynamic() -> onnx.ModelProto:
    """``x.view(*x.shape[:2], -1)`` with dynamic batch and sequence: Shape -> Slice -> Concat -> Reshape."""
    inits = [
        init("start", np.array([0], dtype=np.int64)),
        init("end", np.array([2], dtype=np.int64)),
        init("minus_one", np.array([-1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Slice", ["shape", "start", "end"], ["lead"], name="slice"),
        helper.make_node("Concat", ["lead", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    return make(nodes, [vi("x", ["batch", "seq", 4, 2])], [vi("y", ["batch", "seq", 8])], inits)
