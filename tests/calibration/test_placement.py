"""Q/DQ placement per target, checked structurally on tiny graphs, and run on ONNX Runtime CPU."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from tests.calibration import tiny
from trtforge.calibration.budget import cosine
from trtforge.calibration.ortcheck import fusion_summary, optimized_op_counts
from trtforge.calibration.quantizer import QuantizeOptions, calibrate

SHAPES = {"res": (3, 8, 8), "dw": (3, 8, 8), "attn": (6, 16)}
MAKERS = {"res": tiny.conv_bn_relu_residual, "dw": tiny.depthwise_concat, "attn": tiny.attention_block}


def _batches(kind, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(16, *SHAPES[kind])).astype(np.float32)} for _ in range(n)]


def _quantize(kind, target, method="minmax"):
    cal = calibrate(MAKERS[kind](), _batches(kind), QuantizeOptions(target=target, method=method))
    return cal, cal.build()


def _consumers_of_dq(model):
    """node name -> list of (input index, tensor fed by a DequantizeLinear)."""
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name: [i for i, t in enumerate(n.input) if t in dq_out] for n in model.graph.node}


def test_tensorrt_conv_bn_relu_residual():
    _, q = _quantize("res", "tensorrt")
    fed = _consumers_of_dq(q)
    assert fed["conv1"] == [0, 1] and fed["conv2"] == [0, 1] and fed["fc"] == [0, 1]
    assert fed["add"] == [1]  # the residual (identity) input only; bn2.out comes from the conv
    for name in ("bn1", "bn2", "relu1", "relu2", "gap", "flatten"):
        assert fed[name] == [], name
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    inits = {i.name: i for i in q.graph.initializer}
    for n in qs:  # signed INT8, zero point 0, per-tensor activations
        zp = onnx.numpy_helper.to_array(inits[n.input[2]])
        assert zp.dtype == np.int8 and zp.size == 1 and int(zp) == 0
    # relu1 feeds conv2 and the residual add: one shared Q/DQ pair
    assert sum(1 for n in qs if n.input[0] == "relu1") == 1
    wdq = {
        n.input[0]: n
        for n in q.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")
    }
    assert onnx.numpy_helper.to_array(inits["conv1.w_quantized"]).dtype == np.int8
    axes = {k: next(a.i for a in n.attribute if a.name == "axis") for k, n in wdq.items()}
    assert axes["conv1.w_quantized"] == 0 and axes["fc.w_quantized"] == 0  # Gemm transB=1: output rows
    assert onnx.numpy_helper.to_array(inits["conv1.w_scale"]).shape == (8,)


def test_tensorrt_depthwise_concat_leaves_concat_float():
    _, q = _quantize("dw", "tensorrt")
    fed = _consumers_of_dq(q)
    assert fed["dw"] == [0, 1] and fed["pw"] == [0, 1] and fed["mix"] == [0, 1]
    assert fed["cat"] == []  # no Q/DQ on the concat inputs: TensorRT fuses concat itself
    assert onnx.numpy_helper.to_array({i.name: i for i in q.graph.initializer}["dw.w_scale"]).shape == (
        8,
    )  # depthwise: per channel


def test_tensorrt_attention_keeps_softmax_layernorm_gelu_float():
    _, q = _quantize("attn", "tensorrt")
    fed = _consumers_of_dq(q)
    for name in ("q", "k", "v", "o", "fc1", "fc2"):
        assert fed[name] == [0, 1], name
    for name in ("ln1", "ln2", "softmax", "gelu_erf", "gelu_mul", "res1", "res2", "qk", "ctx"):
        assert fed[name] == [], name
    mm_axis = [
        next(a.i for a in n.attribute if a.name == "axis")
        for n in q.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] == "q.w_quantized"
    ]
    assert mm_axis == [1]  # MatMul [K, N]: output channels on axis 1


@pytest.mark.parametrize("kind", ["res", "dw", "attn"])
def test_tensorrt_qdq_runs_in_ort_cpu_within_budget(kind):
    m = MAKERS[kind]()
    _, q = _quantize(kind, "tensorrt", "entropy")
    onnx.checker.check_model(q, full_check=True)
    x = _batches(kind, 1, seed=5)[0]
    assert cosine(tiny.run(m, x)[0], tiny.run(q, x)[0]) > 0.99


def test_onnxruntime_types_and_fusion():
    _, q = _quantize("res", "onnxruntime-cpu")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    act_zp = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(z.dtype == np.uint8 for z in act_zp)  # uint8 activations
    w = [
        inits[n.input[0]]
        for n in q.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4
    ]
    assert w and all(a.dtype == np.int8 for a in w)  # int8 weights
    counts = optimized_op_counts(q)  # the graph ORT actually runs
    assert counts.get("QLinearConv", 0) == 2, counts
    assert counts.get("Conv", 0) == 0 and counts.get("FusedConv", 0) == 0
    assert fusion_summary(counts)["fused_int8_ops"] >= 3


def test_onnxruntime_attention_does_not_wrap_layernorm():
    _, q = _quantize("attn", "onnxruntime-cpu")
    producers = {o: n for n in q.graph.node for o in n.output}
    ln = [n for n in q.graph.node if n.op_type == "LayerNormalization"]
    assert all(
        producers.get(n.input[0]) is None or producers[n.input[0]].op_type != "DequantizeLinear" for n in ln
    )
    assert Counter(n.op_type for n in q.graph.node)["Softmax"] == 1
