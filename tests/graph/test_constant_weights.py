"""Weights held in Constant nodes (a DB-style text detector export): counted, lifted, and MACs on
real shapes (the data's; unknown, not 1x1, where H and W are dynamic and no data says them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import trtforge
from trtforge.common.graphs import iter_graphs
from trtforge.common.ort import SessionConfig, create_session
from trtforge.pipeline.graph.constants import lift_constant_weights, parameter_count
from trtforge.pipeline.graph.pruning import macs
from trtforge.pipeline.stage import DataPaths

#: float elements of the detector's weights: conv1 8x3x3x3 + 8, conv2 16x8x3x3 + 16, conv3 1x16x1x1
WEIGHTS = 8 * 3 * 9 + 8 + 16 * 8 * 9 + 16 + 16


def _macs(h: int, w: int) -> int:
    """Conv MACs of the detector on one HxW image: |y| * C/g * kh * kw per Conv."""
    return 8 * h * w * 3 * 9 + 16 * h * w * 8 * 9 + 1 * h * w * 16


def detector(dynamic: bool = True) -> onnx.ModelProto:
    """Conv-ReLU-Conv-ReLU-Conv-Sigmoid with every weight in a Constant node, and an int64 Constant
    (a shape, not a parameter); input ``[N, 3, H, W]`` (dynamic) or ``[1, 3, 32, 32]``."""
    rng = np.random.default_rng(0)

    def const(name: str, array: np.ndarray) -> onnx.NodeProto:
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(array), name=f"{name}_const"
        )

    def f32(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    nodes = [
        const("w1", f32(8, 3, 3, 3)),
        const("b1", f32(8)),
        const("w2", f32(16, 8, 3, 3)),
        const("b2", f32(16)),
        const("w3", f32(1, 16, 1, 1)),
        const("flat", np.array([0, -1], np.int64)),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], name="conv3"),
        helper.make_node("Sigmoid", ["c3"], ["prob"], name="sigmoid"),
        helper.make_node("Reshape", ["prob", "flat"], ["y"], name="flatten"),
    ]
    shape: list[int | str] = ["N", 3, "H", "W"] if dynamic else [1, 3, 32, 32]
    out: list[int | str | None] = ["N", None] if dynamic else [1, 1024]
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _with_branch_constant() -> onnx.ModelProto:
    """An If whose then branch multiplies by a 4-element Constant of its own."""
    then = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["k"], value=numpy_helper.from_array(np.arange(4, dtype=np.float32))
            ),
            helper.make_node("Mul", ["x", "k"], ["t"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(create_session(model, SessionConfig(graph_optimization="disable")).run(None, feed)[0])


def test_inspect_counts_weights_held_in_constant_nodes(tmp_path: Path) -> None:
    path = tmp_path / "det.onnx"
    onnx.save(detector(), path)
    info = trtforge.inspect(path)
    assert info["parameters"] == WEIGHTS  # the int64 shape Constant is not a parameter
    assert info["ops"]["Constant"] == 6
    assert parameter_count(_with_branch_constant()) == 4  # a Constant inside an If branch counts


def test_lift_constant_weights_makes_initializers_of_float_constants_only() -> None:
    model = detector()
    lifted = lift_constant_weights(model)
    assert lifted.lifted == 5
    inits = {t.name: t for t in lifted.model.graph.initializer}
    assert set(inits) == {"w1", "b1", "w2", "b2", "w3"}
    assert [n.op_type for n in lifted.model.graph.node].count("Constant") == 1  # the int64 shape stays
    assert numpy_helper.to_array(inits["w2"]).shape == (16, 8, 3, 3)
    assert [n.op_type for n in model.graph.node].count("Constant") == 6  # the caller's model is untouched
    assert parameter_count(lifted.model) == parameter_count(model) == WEIGHTS
    onnx.checker.check_model(lifted.model, full_check=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 12)).astype(np.float32)
    np.testing.assert_array_equal(_run(lifted.model, {"x": x}), _run(model, {"x": x}))


def test_lift_puts_a_branch_constant_into_its_branch() -> None:
    lifted = lift_constant_weights(_with_branch_constant())
    then = next(g for g in iter_graphs(lifted.model.graph) if g.name == "then")
    assert lifted.lifted == 1 and [t.name for t in then.initializer] == ["k"]
    assert [n.op_type for n in then.node] == ["Mul"] and not lifted.model.graph.initializer
    onnx.checker.check_model(lifted.model, full_check=True)
    x = np.ones(4, np.float32)
    np.testing.assert_array_equal(
        _run(lifted.model, {"x": x, "c": np.array(True)}), np.arange(4, dtype=np.float32)
    )


def test_macs_of_dynamic_hw_without_shapes_are_unknown_not_counted_on_1x1() -> None:
    counted = macs.count(detector())
    assert counted["macs"] is None and counted["macs_by_op"] == {}
    assert "'x'" in counted["macs_unknown"] and "dimension 2 (H)" in counted["macs_unknown"]
    assert counted["params"] == WEIGHTS


def test_macs_on_the_given_shapes_and_on_static_shapes() -> None:
    counted = macs.count(detector(), shapes={"x": [1, 3, 32, 48]})
    assert counted["macs"] == _macs(32, 48) and counted["macs_by_op"] == {"Conv": _macs(32, 48)}
    assert counted["input_shapes"] == {"x": [1, 3, 32, 48]} and counted["macs_unknown"] is None
    static = macs.count(detector(dynamic=False))
    assert static["macs"] == _macs(32, 32) and static["params"] == WEIGHTS


def test_prune_counts_macs_on_the_datas_shapes(tmp_path: Path) -> None:
    src = tmp_path / "det.onnx"
    onnx.save(detector(), src)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(2).standard_normal((8, 3, 40, 24)).astype(np.float32))
    result = trtforge.run_stage(
        "prune",
        {"ratio": 0.5, "round_to": 1, "latency_runs": 2},
        src,
        tmp_path / "pruned.onnx",
        data=DataPaths(calibration=calib),
    )
    m = result.metrics
    assert m["params"]["before"] == WEIGHTS and m["params"]["after"] < WEIGHTS
    assert m["macs"]["before"] == _macs(40, 24)  # not 1x1: 4.3 M MACs for a 28 ms model was the bug
    assert m["macs"]["input_shapes"] == {"x": [1, 3, 40, 24]} and m["macs"]["shapes_from"] == "inputs"
    assert 0 < m["macs"]["after"] < m["macs"]["before"] and m["macs"]["unknown"] is None
    assert m["latency_ms"]["before"] > 0
