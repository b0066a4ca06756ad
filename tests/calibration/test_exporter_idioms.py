"""Quantizing what tf2onnx/JAX exporters emit: int32 inputs, layout ops around every conv, biases
of shape [1, N] and weights reached through layout ops of an initializer.

ONNX Runtime's quantizer (``--target onnxruntime-cpu``) raises plain ``ValueError``/``IndexError``s
inside ``_adjust_weight_scale_for_int32_bias`` on a Gemm bias that is not 1-D per channel (what
ONNX Runtime's MatMul + Add fusion makes of a JAX/tf2onnx ``[1, N]`` bias): the model is fixed up
before the library sees it, and any node the library still fails on is left float with the
reason recorded, or the model is refused (exit 2), never a traceback with exit 1.
"""

from __future__ import annotations

import json
import traceback

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.calibration import tiny
from trtforge.calibration import qdq
from trtforge.calibration.budget import cosine
from trtforge.calibration.errors import CalibrationError
from trtforge.calibration.placement import plan_onnxruntime
from trtforge.calibration.quantizer import QuantizeOptions, calibrate, prepare, summary

RNG = np.random.default_rng(0)


def _f32(a: np.ndarray, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits, opset: int = 13) -> onnx.ModelProto:
    m = helper.make_model(
        helper.make_graph(nodes, "idioms", inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def tf2onnx_block(bias_shape: tuple[int, ...] = (1, 4), gemm: bool = False) -> onnx.ModelProto:
    """int32 NHWC bytes -> Cast -> /255 -> Transpose to NCHW -> Conv -> Relu -> Transpose back ->
    Reshape -> MatMul + Add with a bias of ``bias_shape`` (a keras/JAX Dense as tf2onnx writes it;
    ``gemm``: one Gemm with that bias instead)."""
    inits = [
        _f32(RNG.normal(size=(8, 3, 3, 3)) * 0.3, "conv.w"),
        _f32(RNG.normal(size=8) * 0.1, "conv.b"),
        _f32(np.array(1 / 255), "inv255"),
        numpy_helper.from_array(np.array([-1, 6 * 6 * 8], dtype=np.int64), "flat_shape"),
        _f32(RNG.normal(size=(288, 4)) * 0.05, "dense.w"),
        _f32(RNG.normal(size=bias_shape), "dense.b"),
    ]
    nodes = [
        helper.make_node("Cast", ["bytes"], ["xf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xf", "inv255"], ["xs"], name="scale"),
        helper.make_node("Transpose", ["xs"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv.w", "conv.b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Transpose", ["relu"], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"], name="flatten"),
    ]
    if gemm:
        nodes.append(helper.make_node("Gemm", ["flat", "dense.w", "dense.b"], ["logits"], name="dense"))
    else:
        nodes.append(helper.make_node("MatMul", ["flat", "dense.w"], ["mm"], name="dense"))
        nodes.append(helper.make_node("Add", ["mm", "dense.b"], ["logits"], name="dense_bias"))
    x = helper.make_tensor_value_info("bytes", TensorProto.INT32, ["N", 6, 6, 3])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    return _model(nodes, [x], [y], inits)


def _bytes(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 6, 6, 3)).astype(np.int32)


def _gemm_nodes(q: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in q.graph.node if n.op_type == "Gemm"]


def _dq_fed(q: onnx.ModelProto, node: onnx.NodeProto) -> list[int]:
    dq = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    return [i for i, t in enumerate(node.input) if t in dq]


def test_tf2onnx_conv_block_quantizes_for_onnxruntime_cpu_through_the_cli(tmp_path, cli):
    model = tf2onnx_block()
    src, calib, out = tmp_path / "tf.onnx", tmp_path / "calib.npy", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    np.save(calib, _bytes())
    code, stdout, stderr = cli(
        "quantize", src, "-o", out, "--calibration-data", calib, "--target", "onnxruntime-cpu", "--json"
    )
    assert code == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    m = json.loads(stdout)
    assert m["excluded"] == {}  # worked around before the library saw it, nothing left float
    assert any("bias of shape [1, 4] stored as [4]" in note for note in m["notes"]), m["notes"]
    q = onnx.load(str(out))
    (gemm,) = _gemm_nodes(q)
    assert _dq_fed(q, gemm) == [0, 1, 2]  # activation, int8 weight and int32 bias all quantized
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    assert _dq_fed(q, conv) == [0, 1, 2]
    x = _bytes(8, seed=3)
    assert cosine(tiny.run(model, {"bytes": x})[0], tiny.run(q, {"bytes": x})[0]) > 0.99


def test_int32_graph_inputs_do_not_seed_the_quantized_domain():
    """A layout op reading an int32 input directly is no quantization group (ints are never quantized)."""
    nodes = [
        helper.make_node("Transpose", ["ids"], ["ids_t"], name="ids_t", perm=[1, 0]),
        helper.make_node("Cast", ["ids_t"], ["xf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["xf", "w"], ["y"], name="mm"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT32, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [_f32(RNG.normal(size=(4, 3)), "w")],
    )
    assert plan_onnxruntime(model).nodes == ["mm"]


def _reproduce_library_failure(model: onnx.ModelProto) -> BaseException:
    """Run ONNX Runtime's own QDQQuantizer on ``model`` prepared as we do minus our bias fix."""
    from onnxruntime.quantization import CalibrationMethod, QDQQuantizer, QuantType, TensorsData

    prepared = prepare(model, "onnxruntime-cpu", "m")
    # undo our fix: the fused Gemm reads the original [1, N] bias again
    (gemm,) = _gemm_nodes(prepared)
    gemm.input[2] = "dense.b"
    ranges = {t: (np.float32(-1.0), np.float32(1.0)) for t in ("flat", "logits", "nhwc", "relu", "conv")}
    ranges |= {t: (np.float32(0.0), np.float32(1.0)) for t in ("nchw", "xs", "xf")}
    quantizer = QDQQuantizer(
        onnx.shape_inference.infer_shapes(prepared),
        True,
        False,
        QuantType.QInt8,
        QuantType.QUInt8,
        TensorsData(CalibrationMethod.MinMax, ranges),
        [gemm.name],
        [],
        ["Gemm"],
        {"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    with pytest.raises(Exception) as info:  # whatever the library raises
        quantizer.quantize_model()
    return info.value


@pytest.mark.parametrize(("bias_shape", "gemm"), [((1, 4), False), ((1,), True), ((1, 1), True)])
def test_adjust_weight_scale_for_int32_bias_failure_is_reproduced_and_avoided(bias_shape, gemm):
    model = tf2onnx_block(bias_shape, gemm)
    exc = _reproduce_library_failure(model)
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert "_adjust_weight_scale_for_int32_bias" in frames, frames
    assert isinstance(exc, (ValueError, IndexError))

    cal = calibrate(model, [{"bytes": _bytes()}], QuantizeOptions(method="minmax"))
    q = cal.build()
    (gemm,) = _gemm_nodes(q)
    assert _dq_fed(q, gemm) == [0, 1, 2] and cal.excluded == {}
    bias_q = next(n for n in q.graph.node if n.output[0] == gemm.input[2]).input[0]
    assert tuple(next(t for t in q.graph.initializer if t.name == bias_q).dims) == (4,)
    x = _bytes(8, seed=4)
    assert cosine(tiny.run(model, {"bytes": x})[0], tiny.run(q, {"bytes": x})[0]) > 0.99


def test_row_dependent_gemm_bias_is_added_in_float_after_the_quantized_gemm():
    inits = [_f32(RNG.normal(size=(16, 4)), "w"), _f32(RNG.normal(size=(5, 4)), "c")]
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", beta=0.5)]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 4])],
        inits,
    )
    x = RNG.normal(size=(5, 16)).astype(np.float32)
    cal = calibrate(model, [{"x": x}], QuantizeOptions(method="minmax"))
    assert any("depends on the row" in note for note in summary(cal)["notes"])
    q = cal.build()
    (gemm,) = _gemm_nodes(q)
    assert len(gemm.input) == 2 and _dq_fed(q, gemm) == [0, 1]  # quantized, without the bias
    add = next(n for n in q.graph.node if n.op_type == "Add")
    assert add.output[0] == "y" and _dq_fed(q, add) == [0]  # the bias itself stays float
    np.testing.assert_allclose(tiny.run(q, {"x": x})[0], tiny.run(model, {"x": x})[0], rtol=0.05, atol=0.1)


def test_a_node_the_library_still_fails_on_is_left_float_with_the_reason(monkeypatch):
    """Without our bias fix the library fails on the dense Gemm: it is found, left float and
    reported; the conv is still quantized and the model still runs."""
    monkeypatch.setattr(qdq, "normalise_gemm_bias", lambda m: [])
    model = tf2onnx_block()
    cal = calibrate(model, [{"bytes": _bytes()}], QuantizeOptions(method="minmax"))
    q = cal.build()
    (name,) = cal.excluded
    assert name.startswith("dense")
    reason = cal.excluded[name]
    assert "_adjust_weight_scale_for_int32_bias" in reason and "left in float" in reason
    assert name not in cal.groups and reason in summary(cal)["notes"]
    (gemm,) = _gemm_nodes(q)
    assert not {1, 2} & set(_dq_fed(q, gemm))  # float weight and bias (its input may come from a Q/DQ)
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    assert _dq_fed(q, conv) == [0, 1, 2]  # the rest is still quantized
    x = _bytes(8, seed=5)
    assert cosine(tiny.run(model, {"bytes": x})[0], tiny.run(q, {"bytes": x})[0]) > 0.99
    calls: list[int] = []
    real = qdq._ort_quantize

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(qdq, "_ort_quantize", counted)
    again = cal.build()  # the next build skips it up front: one quantizer run, no bisection
    assert len(calls) == 1 and not {1, 2} & set(_dq_fed(again, _gemm_nodes(again)[0]))


def test_failure_that_no_single_node_explains_is_refused(monkeypatch):
    real = qdq._ort_quantize

    def fails_together(model, nodes, ranges, reduce_range):
        if len(nodes) > 1:
            raise IndexError("index 1 is out of bounds for axis 0 with size 1")
        return real(model, nodes, ranges, reduce_range)

    monkeypatch.setattr(qdq, "_ort_quantize", fails_together)
    cal = calibrate(tf2onnx_block(), [{"bytes": _bytes()}], QuantizeOptions(method="minmax"))
    with pytest.raises(CalibrationError, match="--target tensorrt") as info:
        cal.build()
    assert "IndexError" in str(info.value) and "\n" not in str(info.value)


def test_library_failure_on_every_node_exits_2_with_one_line(monkeypatch, tmp_path, cli):
    def always(model, nodes, ranges, reduce_range):
        raise ValueError("The truth value of an array with more than one element is ambiguous.")

    monkeypatch.setattr(qdq, "_ort_quantize", always)
    src, calib = tmp_path / "tf.onnx", tmp_path / "calib.npy"
    onnx.save(tf2onnx_block(), str(src))
    np.save(calib, _bytes())
    code, stdout, stderr = cli("quantize", src, "-o", tmp_path / "q.onnx", "--calibration-data", calib)
    assert code == 2, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert str(src) in stderr and "--target tensorrt" in stderr
    assert not (tmp_path / "q.onnx").exists()


def _weights_through_layout_ops() -> onnx.ModelProto:
    """Conv weight stored HWIO and transposed at run time (tf2onnx), MatMul weight reshaped (JAX),
    a Gemm weight stored in fp16 and Cast up."""
    w_oihw = RNG.normal(size=(8, 3, 3, 3)) * 0.3
    inits = [
        _f32(np.transpose(w_oihw, (2, 3, 1, 0)), "conv.w_hwio"),
        _f32(RNG.normal(size=8) * 0.1, "conv.b"),
        _f32(RNG.normal(size=(8 * 16 * 5,)) * 0.05, "mm.w_flat"),
        numpy_helper.from_array(np.array([8 * 16, 5], dtype=np.int64), "mm.shape"),
        numpy_helper.from_array((RNG.normal(size=(3, 5)) * 0.3).astype(np.float16), "fc.w16"),
    ]
    nodes = [
        helper.make_node("Transpose", ["conv.w_hwio"], ["conv.w"], name="w_t", perm=[3, 2, 0, 1]),
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Reshape", ["mm.w_flat", "mm.shape"], ["mm.w"], name="w_r"),
        helper.make_node("MatMul", ["f", "mm.w"], ["h"], name="mm"),
        helper.make_node("Cast", ["fc.w16"], ["fc.w"], name="w_c", to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["h", "fc.w"], ["y"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime-cpu"])
def test_weights_reached_through_layout_ops_are_quantized_as_weights(target):
    model = _weights_through_layout_ops()
    x = RNG.normal(size=(16, 3, 4, 4)).astype(np.float32)
    cal = calibrate(model, [{"x": x}], QuantizeOptions(target=target, method="minmax"))
    ops = {n.op_type for n in cal.model.graph.node}
    assert not ops & {"Transpose", "Reshape", "Cast"}, ops  # folded into initializers
    inits = {i.name: i for i in cal.model.graph.initializer}
    assert tuple(inits["conv.w"].dims) == (8, 3, 3, 3) and inits["fc.w"].data_type == TensorProto.FLOAT
    assert {"conv", "mm", "fc"} <= set(cal.plan.nodes)
    if target == "tensorrt":
        assert {w.node: w.initializer for w in cal.plan.weights} == {
            "conv": "conv.w",
            "mm": "mm.w",
            "fc": "fc.w",
        }
        assert any("folded into an initializer" in note for note in cal.plan.notes)
    q = cal.build()
    for name in ("conv", "mm", "fc"):
        node = next(n for n in q.graph.node if n.name == name)
        assert 1 in _dq_fed(q, node), name  # an int8 weight behind a DequantizeLinear
    xv = RNG.normal(size=(4, 3, 4, 4)).astype(np.float32)
    assert cosine(tiny.run(model, {"x": xv})[0], tiny.run(q, {"x": xv})[0]) > 0.99


def test_a_bias_shared_by_convs_is_copied_under_names_no_tensor_has(tmp_path, cli):
    # tf2onnx names a bias "c;c" and the Convs reading it "c;c", "c;c2": ONNX Runtime's own copy of a
    # shared bias would be named "c;c2" too and the quantized model would not load
    inits = [
        _f32(RNG.normal(size=(4, 3, 3, 3)) * 0.3, "w1"),
        _f32(RNG.normal(size=(4, 4, 3, 3)) * 0.3, "w2"),
        _f32(RNG.normal(size=(4, 4, 3, 3)) * 0.3, "w3"),
        _f32(RNG.normal(size=4) * 0.1, "c;c"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "c;c"], ["c;c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c;c1", "w2", "c;c"], ["c;c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Neg", ["c;c2"], ["neg"], name="neg"),
        helper.make_node("Conv", ["neg", "w3", "c;c"], ["y"], name="conv3", pads=[1, 1, 1, 1]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        inits,
    )
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    assert qdq.unshare_biases(copy) == 2
    names = [n.input[2] for n in copy.graph.node if n.op_type == "Conv"]
    assert len(set(names)) == 3 and not set(names) & {"c;c1", "c;c2", "y"}
    src, calib, out = tmp_path / "m.onnx", tmp_path / "calib.npy", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    np.save(calib, RNG.normal(size=(16, 3, 8, 8)).astype(np.float32))
    code, stdout, stderr = cli(
        "quantize", src, "-o", out, "--calibration-data", calib, "--target", "onnxruntime-cpu", "--json",
        "--max-latency-ratio", "100",  # INT8 of three tiny convs is slower than FP32: not the point here
    )  # fmt: skip
    assert code == 0, stdout + stderr
    q = onnx.load(str(out))
    onnx.checker.check_model(q, full_check=True)
    assert all(_dq_fed(q, n) == [0, 1, 2] for n in q.graph.node if n.op_type == "Conv")
    x = RNG.normal(size=(4, 3, 8, 8)).astype(np.float32)
    assert cosine(tiny.run(model, {"x": x})[0], tiny.run(q, {"x": x})[0]) > 0.99
