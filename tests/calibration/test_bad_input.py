"""Bad input: one clear error (or a listed note), nothing half-written."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.calibration import tiny
from trtforge.calibration.errors import CalibrationError, DataError
from trtforge.calibration.quantizer import QuantizeOptions, calibrate
from trtforge.calibration.sources import open_batches
from trtforge.common.tensors import TensorSpec

SPECS = [TensorSpec("x", "float32", ("N", 16))]


def _data(n=2):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(8, 16)).astype(np.float32)} for _ in range(n)]


def test_already_quantized_model_is_refused():
    cal = calibrate(tiny.mlp(), _data(), QuantizeOptions(target="tensorrt"))
    with pytest.raises(CalibrationError, match="already quantized"):
        calibrate(cal.build(), _data(), QuantizeOptions(target="tensorrt"))


def test_nan_in_calibration_data(tmp_path):
    x = np.ones((4, 16), np.float32)
    x[1, 3] = np.nan
    np.save(tmp_path / "c.npy", x)
    with pytest.raises(DataError, match="NaN or Inf"):
        list(open_batches(tmp_path / "c.npy", SPECS, 2))


def test_shape_mismatch_names_the_axis(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((4, 15), np.float32))
    with pytest.raises(DataError, match="axis 1: 15 != 16"):
        list(open_batches(tmp_path / "c.npy", [TensorSpec("x", "float32", ("N", 16))], 2))


def test_fewer_samples_than_asked():
    with pytest.raises(DataError, match="asked for 100 samples but the data holds 16"):
        calibrate(tiny.mlp(), _data(), QuantizeOptions(target="tensorrt", num_samples=100))


def test_random_data_is_refused():
    with pytest.raises(DataError, match="random calibration data is refused"):
        list(open_batches("random", SPECS, 2))


def test_empty_data_is_refused():
    with pytest.raises(DataError, match="no samples"):
        calibrate(tiny.mlp(), [], QuantizeOptions(target="tensorrt"))


def test_unknown_op_and_control_flow_are_listed_and_kept_float():
    m = tiny.mlp()
    g = m.graph
    then = helper.make_graph(
        [helper.make_node("Identity", ["relu2"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["relu2"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    g.initializer.append(onnx.numpy_helper.from_array(np.array(True), "cond"))
    g.node.insert(
        4, helper.make_node("If", ["cond"], ["branch"], name="maybe", then_branch=then, else_branch=other)
    )
    g.node.insert(5, helper.make_node("Hardmax", ["branch"], ["hm"], name="odd"))
    g.node.insert(6, helper.make_node("Add", ["hm", "branch"], ["mixed_in"], name="join"))
    g.node[-1].input[0] = "mixed_in"
    cal = calibrate(m, _data(), QuantizeOptions(target="tensorrt"))
    assert cal.plan.control_flow == ["maybe"]
    assert cal.plan.float_ops == {"Hardmax": ["odd"]}
    notes = " ".join(cal.plan.notes)
    assert "control flow left in float" in notes and "Hardmax" in notes
    q = cal.build()
    assert {n.op_type for n in q.graph.node if n.name in ("maybe", "odd")} == {"If", "Hardmax"}
    assert cal.plan.nodes == ["fc1", "fc2", "fc3"]  # everything outside the If is still quantized
    x = _data(1)[0]
    np.testing.assert_allclose(tiny.run(q, x)[0], tiny.run(m, x)[0], atol=0.5)


def _concat_head():
    """Linear features -> (boxes x 1000 || scores in [0, 1]) -> Concat output, the mixed-range case."""
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(1000 * rng.normal(size=(16, 4)).astype(np.float32), "wb"),
        onnx.numpy_helper.from_array(rng.normal(size=(16, 6)).astype(np.float32), "ws"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "wb"], ["boxes"], name="box"),
        helper.make_node("MatMul", ["x", "ws"], ["s0"], name="cls"),
        helper.make_node("Sigmoid", ["s0"], ["scores"], name="sig"),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], name="cat", axis=1),
        helper.make_node("Relu", ["y"], ["out"], name="post"),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_mixed_range_concat_keeps_scores_alive():
    m = _concat_head()
    cal = calibrate(m, _data(4), QuantizeOptions(target="onnxruntime-cpu", method="minmax"))
    assert "y" in cal.mixed and "cat" in cal.forced_float
    x = _data(1)[0]
    ref, out = tiny.run(m, x)[0], tiny.run(cal.build(), x)[0]
    np.testing.assert_allclose(out[:, 4:], ref[:, 4:], atol=0.05)  # scores survive quantization
    blind = calibrate(
        m, _data(4), QuantizeOptions(target="onnxruntime-cpu", method="minmax", mixed_range_ratio=1e9)
    )
    assert not blind.forced_float  # without the check, one scale for both ...
    assert np.abs(tiny.run(blind.build(), x)[0][:, 4:] - ref[:, 4:]).max() > 0.2  # ... crushes the scores
