"""The recovery interpreter against ONNX Runtime, op by op, for what detectors, segmenters and
tf2onnx/JAX/torch exports emit: resampling in every coordinate mode, shape arithmetic at run time
(``Shape``/``Gather``/``ConstantOfShape``/``Range``/``Expand``), dynamic slices, padding modes and
heads (``TopK``, ``GatherND``, ``ScatterND``, ...). Then a segmenter-like model is pruned and
recovered for a few steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtforge.pipeline.errors import InputError

from .conftest import prune
from .models import G

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(0)

Input = tuple[str, np.ndarray | None, bool]  # name, value (None: absent optional input), stored as a constant


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def single_op(op: str, inputs: list[Input], opset: int = 17, n_out: int = 1, **attrs: Any) -> onnx.ModelProto:
    graph_inputs, inits, names = [], [], []
    for name, value, const in inputs:
        if value is None:
            names.append("")
            continue
        names.append(name)
        if const:
            inits.append(numpy_helper.from_array(value, name))
        else:
            dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, dtype, value.shape))
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", **attrs)
    graph = helper.make_graph([node], "single", graph_inputs, [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 8
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {vi.name: vi for vi in inferred.graph.value_info}
    for o in outs:
        vi = known.get(o)
        model.graph.output.append(
            vi if vi is not None else helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
        )
    return model


def feeds_of(inputs: list[Input]) -> dict[str, np.ndarray]:
    return {name: value for name, value, const in inputs if value is not None and not const}


def check_parity(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tol: float = 1e-5) -> list[Any]:
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    with torch.no_grad():
        got = TorchFromOnnx(model)(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = g.numpy() if hasattr(g, "numpy") else np.asarray(g)
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == w.dtype or (g.dtype.kind == w.dtype.kind == "f"), (g.dtype, w.dtype)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol)
    return want


X4 = f32(2, 3, 5, 6)
RESIZE_CASES = {
    "nearest_asymmetric_floor_x2": (
        {"scales": [1, 1, 2, 2]},
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ),
    "nearest_half_pixel_prefer_ceil_down": (
        {"sizes": [2, 3, 3, 4]},
        {"mode": "nearest", "nearest_mode": "round_prefer_ceil"},
    ),
    "nearest_half_pixel_prefer_floor_up": ({"scales": [1, 1, 1.5, 2.5]}, {"mode": "nearest"}),
    "nearest_tf_half_pixel_for_nn": (
        {"sizes": [2, 3, 9, 11]},
        {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"},
    ),
    "nearest_align_corners_ceil": (
        {"sizes": [2, 3, 7, 4]},
        {"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "ceil"},
    ),
    "linear_half_pixel_x2": ({"scales": [1, 1, 2, 2]}, {"mode": "linear"}),
    "linear_half_pixel_down": ({"sizes": [2, 3, 3, 4]}, {"mode": "linear"}),
    "linear_align_corners": (
        {"sizes": [2, 3, 9, 13]},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    ),
    "linear_pytorch_half_pixel": (
        {"sizes": [2, 3, 1, 8]},
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    ),
    "linear_asymmetric": (
        {"scales": [1, 1, 1.6, 0.5]},
        {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
    ),
    "cubic_half_pixel": ({"scales": [1, 1, 2, 1.5]}, {"mode": "cubic"}),
    "cubic_exclude_outside": (
        {"sizes": [2, 3, 8, 4]},
        {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5},
    ),
}


@pytest.mark.parametrize("case", sorted(RESIZE_CASES))
def test_resize_matches_onnxruntime(case):
    given, attrs = RESIZE_CASES[case]
    scales = np.array(given["scales"], dtype=np.float32) if "scales" in given else None
    sizes = np.array(given["sizes"], dtype=np.int64) if "sizes" in given else None
    inputs: list[Input] = [
        ("x", X4, False),
        ("roi", None, True),
        ("scales", scales, True),
        ("sizes", sizes, True),
    ]
    while inputs[-1][1] is None:
        inputs.pop()
    check_parity(single_op("Resize", inputs, **attrs), feeds_of(inputs), tol=1e-4)


def test_resize_axes_opset_18_and_legacy_upsample():
    x3 = f32(2, 4, 5)
    inputs: list[Input] = [
        ("x", x3, False),
        ("roi", None, True),
        ("scales", np.array([2.0], np.float32), True),
    ]
    check_parity(single_op("Resize", inputs, opset=18, mode="linear", axes=[2]), feeds_of(inputs))
    up: list[Input] = [("x", X4, False), ("scales", np.array([1, 1, 2, 3], np.float32), True)]
    check_parity(single_op("Upsample", up, opset=9, mode="nearest"), feeds_of(up))
    check_parity(single_op("Resize", up, opset=10, mode="nearest"), feeds_of(up))
    check_parity(single_op("Resize", up, opset=10, mode="linear"), feeds_of(up))


CASES: dict[str, tuple[str, list[Input], dict[str, Any]]] = {
    "ConstantOfShape": (
        "ConstantOfShape",
        [("s", i64(2, 3), False)],
        {"value": helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])},
    ),
    "ConstantOfShape_int": (
        "ConstantOfShape",
        [("s", i64(4), False)],
        {"value": helper.make_tensor("v", TensorProto.INT64, [1], [7])},
    ),
    "Range_int": (
        "Range",
        [
            ("a", np.array(2, np.int64), False),
            ("b", np.array(11, np.int64), False),
            ("d", np.array(3, np.int64), False),
        ],
        {},
    ),
    "Range_float": (
        "Range",
        [
            ("a", np.array(0.5, np.float32), False),
            ("b", np.array(-2.0, np.float32), False),
            ("d", np.array(-0.75, np.float32), False),
        ],
        {},
    ),
    "Shape_start_end": ("Shape", [("x", X4, False)], {"start": 1, "end": -1, "_opset": 15}),
    "Size": ("Size", [("x", X4, False)], {}),
    "Expand": ("Expand", [("x", f32(3, 1), False), ("s", i64(2, 1, 4), True)], {}),
    "Where": (
        "Where",
        [("c", RNG.random((2, 3)) > 0.5, False), ("a", f32(2, 3), False), ("b", f32(1, 3), False)],
        {},
    ),
    "Equal_int": ("Equal", [("a", i64(1, 2, 3), False), ("b", i64(1, 5, 3), False)], {}),
    "Cast_to_int": ("Cast", [("x", f32(4) * 5, False)], {"to": TensorProto.INT32}),
    "Cast_to_bool": (
        "Cast",
        [("x", np.array([0.0, 2.0, -1.0], np.float32), False)],
        {"to": TensorProto.BOOL},
    ),
    "Pow": ("Pow", [("a", np.abs(f32(2, 3)) + 0.1, False), ("b", np.array(1.7, np.float32), True)], {}),
    "Pow_int_exponent": ("Pow", [("a", f32(2, 3), False), ("b", np.array(3, np.int64), True)], {}),
    "Sqrt": ("Sqrt", [("x", np.abs(f32(2, 3)), False)], {}),
    "ReduceL2_attr": ("ReduceL2", [("x", X4, False)], {"axes": [1], "keepdims": 1, "_opset": 13}),
    "ReduceL2_input": ("ReduceL2", [("x", X4, False), ("a", i64(1, 3), True)], {"keepdims": 0, "_opset": 18}),
    "ReduceSumSquare": ("ReduceSumSquare", [("x", X4, False)], {"axes": [2, 3], "_opset": 13}),
    "ReduceLogSumExp": ("ReduceLogSumExp", [("x", X4, False)], {"axes": [1], "_opset": 13}),
    "ReduceProd": ("ReduceProd", [("x", f32(2, 3, 2), False)], {"axes": [1], "_opset": 13}),
    "ReduceL1_all": ("ReduceL1", [("x", X4, False)], {"keepdims": 0, "_opset": 13}),
    "ReduceMin_noop": (
        "ReduceMin",
        [("x", X4, False), ("a", np.zeros(0, np.int64), True)],
        {"noop_with_empty_axes": 1, "_opset": 18},
    ),
    "Softmax_opset13_axis1": ("Softmax", [("x", f32(2, 3, 4), False)], {"axis": 1, "_opset": 13}),
    "Softmax_opset11_flattens": ("Softmax", [("x", f32(2, 3, 4), False)], {"_opset": 11}),
    "LogSoftmax_opset11_axis2": ("LogSoftmax", [("x", f32(2, 3, 4), False)], {"axis": 2, "_opset": 11}),
    "LogSoftmax_opset13": ("LogSoftmax", [("x", f32(2, 3, 4), False)], {}),
    "Hardmax": ("Hardmax", [("x", f32(2, 5), False)], {}),
    "Tile": ("Tile", [("x", f32(2, 3), False), ("r", i64(2, 3), True)], {}),
    "Slice_dynamic_starts": (
        "Slice",
        [("x", X4, False), ("s", i64(1, -4), False), ("e", i64(5, 10**9), True), ("a", i64(2, 3), True)],
        {},
    ),
    "Slice_negative_step": (
        "Slice",
        [
            ("x", X4, False),
            ("s", i64(-1), True),
            ("e", i64(-(2**63)), True),
            ("a", i64(3), True),
            ("p", i64(-2), True),
        ],
        {},
    ),
    "Slice_step_2": (
        "Slice",
        [
            ("x", X4, False),
            ("s", i64(0), True),
            ("e", i64(6), True),
            ("a", i64(-1), True),
            ("p", i64(2), True),
        ],
        {},
    ),
    "Pad_constant_value": (
        "Pad",
        [("x", X4, False), ("p", i64(0, 0, 1, 2, 0, 0, 3, 0), True), ("v", np.array(0.5, np.float32), True)],
        {},
    ),
    "Pad_negative_crop": ("Pad", [("x", X4, False), ("p", i64(0, 0, -1, 1, 0, 0, 0, -2), True)], {}),
    "Pad_reflect": ("Pad", [("x", X4, False), ("p", i64(0, 0, 2, 1, 0, 0, 1, 3), True)], {"mode": "reflect"}),
    "Pad_edge": ("Pad", [("x", X4, False), ("p", i64(0, 1, 2, 0, 0, 2, 0, 1), True)], {"mode": "edge"}),
    "Pad_axes": (
        "Pad",
        [("x", X4, False), ("p", i64(3, 1), True), ("v", None, True), ("ax", i64(-1), True)],
        {"_opset": 18},
    ),
    "Pad_wrap": (
        "Pad",
        [("x", X4, False), ("p", i64(0, 0, 2, 3, 0, 0, 1, 2), True)],
        {"mode": "wrap", "_opset": 19},
    ),
    "Div_int_truncates": ("Div", [("a", i64(7, -7, 9), False), ("b", i64(2, 2, -4), False)], {}),
    "Mod": ("Mod", [("a", i64(7, -7, 9), False), ("b", i64(3, 3, -4), False)], {}),
    "Mod_fmod": ("Mod", [("a", f32(5), False), ("b", np.full(5, 0.7, np.float32), False)], {"fmod": 1}),
    "Max_3": ("Max", [("a", f32(2, 3), False), ("b", f32(3), False), ("c", f32(2, 1), False)], {}),
    "Mean_3": ("Mean", [("a", f32(2, 3), False), ("b", f32(3), False), ("c", f32(2, 1), False)], {}),
    "Clip_opset6_attrs": ("Clip", [("x", f32(3, 4), False)], {"min": -0.3, "max": 0.4, "_opset": 6}),
    "Clip_min_only": ("Clip", [("x", f32(3, 4), False), ("lo", np.array(-0.2, np.float32), True)], {}),
    "TopK": ("TopK", [("x", f32(3, 7), False), ("k", i64(3), True)], {"axis": 1, "_n_out": 2}),
    "TopK_smallest": (
        "TopK",
        [("x", f32(3, 7), False), ("k", i64(2), True)],
        {"axis": 0, "largest": 0, "_n_out": 2},
    ),
    "ArgMax": ("ArgMax", [("x", f32(3, 7), False)], {"axis": 1, "keepdims": 0}),
    "ArgMin_last": (
        "ArgMin",
        [("x", np.array([[1.0, 0.0, 0.0]], np.float32), False)],
        {"axis": 1, "select_last_index": 1},
    ),
    "GatherElements": (
        "GatherElements",
        [("x", f32(3, 4), False), ("i", np.array([[0, -1], [2, 1], [3, 0]], np.int64), False)],
        {"axis": 1},
    ),
    "GatherND": (
        "GatherND",
        [("x", f32(2, 3, 4), False), ("i", np.array([[[0, 1], [1, 2]], [[1, 0], [0, 2]]], np.int64), False)],
        {},
    ),
    "GatherND_batch": (
        "GatherND",
        [("x", f32(2, 3, 4), False), ("i", np.array([[[1]], [[2]]], np.int64), False)],
        {"batch_dims": 1},
    ),
    "Gather_on_shape": ("Gather", [("s", i64(2, 3, 5, 6), False), ("i", np.array(-2, np.int64), True)], {}),
    "ScatterND": (
        "ScatterND",
        [("x", f32(4, 3), False), ("i", np.array([[1], [3]], np.int64), True), ("u", f32(2, 3), False)],
        {},
    ),
    "ScatterElements": (
        "ScatterElements",
        [("x", f32(3, 3), False), ("i", np.array([[1, 0, 2]], np.int64), True), ("u", f32(1, 3), False)],
        {"axis": 0},
    ),
    "NonZero": ("NonZero", [("x", np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0]], np.float32), False)], {}),
    "DepthToSpace_DCR": ("DepthToSpace", [("x", f32(1, 8, 2, 3), False)], {"blocksize": 2}),
    "DepthToSpace_CRD": ("DepthToSpace", [("x", f32(1, 8, 2, 3), False)], {"blocksize": 2, "mode": "CRD"}),
    "SpaceToDepth": ("SpaceToDepth", [("x", f32(1, 2, 4, 6), False)], {"blocksize": 2}),
    "CumSum_exclusive_reverse": (
        "CumSum",
        [("x", f32(3, 4), False), ("a", np.array(1, np.int64), True)],
        {"exclusive": 1, "reverse": 1},
    ),
    "Einsum": (
        "Einsum",
        [("a", f32(2, 3, 4), False), ("b", f32(2, 4, 5), False)],
        {"equation": "bij,bjk->bik"},
    ),
    "Trilu_lower": ("Trilu", [("x", f32(4, 5), False), ("k", np.array(1, np.int64), True)], {"upper": 0}),
    "LpNormalization": ("LpNormalization", [("x", f32(3, 4), False)], {"axis": 1, "p": 2}),
    "LpNormalization_p1": ("LpNormalization", [("x", f32(3, 4, 2), False)], {"axis": 1, "p": 1}),
    "InstanceNormalization": (
        "InstanceNormalization",
        [("x", X4, False), ("s", f32(3), True), ("b", f32(3), True)],
        {},
    ),
    "GroupNormalization_21": (
        "GroupNormalization",
        [("x", f32(2, 4, 3, 3), False), ("s", f32(4), True), ("b", f32(4), True)],
        {"num_groups": 2, "_opset": 21},
    ),
    "Selu": ("Selu", [("x", f32(3, 4), False)], {"alpha": 1.5, "gamma": 1.1}),
    "Elu": ("Elu", [("x", f32(3, 4), False)], {"alpha": 0.7}),
    "Celu": ("Celu", [("x", f32(3, 4), False)], {"alpha": 0.7}),
    "PRelu": ("PRelu", [("x", X4, False), ("s", f32(3, 1, 1), True)], {}),
    "Mish": ("Mish", [("x", f32(3, 4), False)], {"_opset": 18}),
    "ThresholdedRelu": ("ThresholdedRelu", [("x", f32(3, 4), False)], {"alpha": 0.2}),
    "Softsign": ("Softsign", [("x", f32(3, 4), False)], {}),
    "Round_half_even": ("Round", [("x", np.array([0.5, 1.5, 2.5, -0.5, 1.2], np.float32), False)], {}),
    "Sign": ("Sign", [("x", f32(5), False)], {}),
    "IsInf": ("IsInf", [("x", np.array([np.inf, -np.inf, 1.0], np.float32), False)], {"detect_negative": 0}),
    "Not_And_Xor": (
        "Xor",
        [("a", np.array([True, False, True]), False), ("b", np.array([True, True, False]), False)],
        {},
    ),
    "LessOrEqual": ("LessOrEqual", [("a", f32(4), False), ("b", f32(4), False)], {}),
    "Split_num_outputs_uneven": (
        "Split",
        [("x", f32(7, 2), False)],
        {"axis": 0, "num_outputs": 3, "_opset": 18, "_n_out": 3},
    ),
    "Conv_same_upper_strided": (
        "Conv",
        [("x", X4, False), ("w", f32(4, 3, 3, 2), True)],
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ),
    "MaxPool_same_lower": ("MaxPool", [("x", X4, False)], {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    "AveragePool_asymmetric_excluding_pads": (
        "AveragePool",
        [("x", X4, False)],
        {"kernel_shape": [3, 3], "pads": [0, 1, 2, 0]},
    ),
    "AveragePool_asymmetric_including_pads": (
        "AveragePool",
        [("x", X4, False)],
        {"kernel_shape": [2, 3], "pads": [1, 0, 0, 2], "count_include_pad": 1},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case):
    op_type, inputs, attrs = CASES[case]
    attrs = dict(attrs)
    opset, n_out = attrs.pop("_opset", 17), attrs.pop("_n_out", 1)
    model = single_op(op_type, inputs, opset=opset, n_out=n_out, **attrs)
    check_parity(model, feeds_of(inputs))


def test_shape_arithmetic_chain_follows_the_run_time_shape():
    """torch's ``x.view(x.size(0), x.size(1), -1)`` and ``F.interpolate(x, size=skip.shape[2:])``:
    shapes read and combined at run time, then a second batch size and image size run through
    the same module (nothing was frozen at build time)."""
    g = G()
    s = g.op("Shape", ["x"])
    n_c = g.op("Slice", [s, g.const(i64(0)), g.const(i64(2))])
    flat = g.op("Reshape", ["x", g.op("Concat", [n_c, g.const(i64(-1))], axis=0)])
    half = g.op("Div", [g.op("Gather", [s, g.const(i64(2, 3))], axis=0), g.const(i64(2))])
    small = g.op("Resize", ["x", "", "", g.op("Concat", [n_c, half], axis=0)], mode="linear")
    back = g.op("Resize", [small, "", "", s], mode="nearest")
    w = g.op(
        "Cast",
        [
            g.op(
                "Range",
                [
                    g.const(np.array(0, np.int64)),
                    g.op("Gather", [s, g.const(np.array(3, np.int64))], axis=0),
                    g.const(np.array(1, np.int64)),
                ],
            )
        ],
        to=TensorProto.FLOAT,
    )
    zeros = g.op("ConstantOfShape", [s], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25]))
    y = g.op("Add", [g.op("Add", [back, g.op("Expand", [w, s])]), zeros])
    model = g.model({"x": ["N", 3, "H", "W"]}, [flat, y])
    for shape in ((2, 3, 8, 6), (1, 3, 4, 10)):
        check_parity(model, {"x": RNG.standard_normal(shape).astype(np.float32)})


def test_a_failing_op_names_its_node_and_is_an_input_error():
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    inputs: list[Input] = [
        ("x", X4, False),
        ("roi", None, True),
        ("scales", np.array([1, 1, 0.5, 0.5], np.float32), True),
    ]
    model = single_op("Resize", inputs, opset=18, mode="linear", antialias=1)
    with pytest.raises(InputError, match=r"Resize node 'resize_node'.*antialias"):
        TorchFromOnnx(model, "seg.onnx")(x=torch.from_numpy(X4))


def test_unsupported_op_message_does_not_suggest_fusing():
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    model = single_op("LRN", [("x", X4, False)], size=3)
    with pytest.raises(InputError, match="LRN") as info:
        TorchFromOnnx(model, "m.onnx")
    assert "fuse" not in str(info.value) and "without --recover" in str(info.value)


def segmenter() -> onnx.ModelProto:
    """Encoder-decoder: conv -> strided conv -> Resize back to the skip's run-time size
    (sizes = Shape(skip)) -> Concat with the skip -> conv head; a position map from Range and
    ConstantOfShape is added to the logits."""
    g = G()
    skip = g.op("Relu", [g.conv("x", 3, 8, name="enc1")])
    w = g.const(RNG.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2, "w")
    b = g.const(RNG.standard_normal(16).astype(np.float32) * 0.1, "b")
    down = g.op("Relu", [g.op("Conv", [skip, w, b], "enc2", pads=[1, 1, 1, 1], strides=[2, 2])])
    s = g.op("Shape", [skip])
    up = g.op(
        "Resize",
        [
            down,
            "",
            "",
            g.op(
                "Concat",
                [g.op("Shape", [down], end=2), g.op("Slice", [s, g.const(i64(2)), g.const(i64(4))])],
                axis=0,
            ),
        ],
        mode="linear",
    )
    cat = g.op("Concat", [skip, up], axis=1)
    feat = g.op("Relu", [g.conv(cat, 24, 8, name="dec")])
    logits = g.conv(feat, 8, 2, k=1, name="head")
    width = g.op("Gather", [g.op("Shape", [logits]), g.const(np.array(3, np.int64))], axis=0)
    pos = g.op(
        "Cast",
        [g.op("Range", [g.const(np.array(0, np.int64)), width, g.const(np.array(1, np.int64))])],
        to=TensorProto.FLOAT,
    )
    bias = g.op(
        "Mul",
        [
            g.op(
                "ConstantOfShape",
                [g.op("Shape", [logits])],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.01]),
            ),
            pos,
        ],
    )
    return g.model({"x": ["N", 3, 8, 8]}, [g.op("Add", [logits, bias])])


def test_segmenter_with_resize_constantofshape_range_is_pruned_and_recovered():
    from trtforge.pipeline.graph.recovery import RecoverySettings, TorchFromOnnx, distill

    teacher = segmenter()
    x = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
    check_parity(teacher, {"x": x}, tol=1e-4)
    plan, pruned = prune(teacher, ratio=0.5)
    assert plan.removed_units > 0  # the pruner goes through the Resize, Concat and shape ops
    assert TorchFromOnnx(pruned) is not None
    batches = [{"x": RNG.standard_normal((8, 3, 8, 8)).astype(np.float32)} for _ in range(3)]
    res = distill(teacher, pruned, batches, RecoverySettings(epochs=4, lr=3e-3, seed=0))
    assert res.steps == 12 and all(np.isfinite(res.history))
    assert res.after.mean_abs < res.before.mean_abs


@pytest.mark.parametrize(
    ("op", "attrs", "extra"),
    [
        ("LSTM", {"direction": "forward"}, ("h0", "c0", "p")),
        ("LSTM", {"direction": "bidirectional", "clip": 0.8}, ()),
        ("LSTM", {"direction": "reverse", "input_forget": 1}, ("h0", "c0")),
        ("GRU", {"direction": "bidirectional"}, ("h0",)),
        ("GRU", {"linear_before_reset": 1}, ()),
        ("RNN", {"direction": "reverse"}, ("h0",)),
    ],
)
def test_recurrent_layers_match_onnxruntime(op, attrs, extra):
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    hidden, dirs = 5, 2 if attrs.get("direction") == "bidirectional" else 1
    batch_first = attrs.get("layout", 0)
    x = f32(2, 7, 3) if batch_first else f32(7, 2, 3)
    state = f32(2, dirs, hidden) if batch_first else f32(dirs, 2, hidden)
    inputs: list[Input] = [
        ("x", x, False),
        ("w", f32(dirs, gates * hidden, 3) * 0.5, True),
        ("r", f32(dirs, gates * hidden, hidden) * 0.5, True),
        ("b", f32(dirs, 2 * gates * hidden) * 0.1, True),
        ("seq", None, True),
        ("h0", state if "h0" in extra else None, False),
    ]
    if op == "LSTM":
        inputs += [
            ("c0", state * 0.5 if "c0" in extra else None, False),
            ("p", f32(dirs, 3 * hidden) if "p" in extra else None, True),
        ]
    while inputs[-1][1] is None:
        inputs.pop()
    model = single_op(op, inputs, opset=14, n_out=3 if op == "LSTM" else 2, hidden_size=hidden, **attrs)
    check_parity(model, feeds_of(inputs), tol=1e-5)


def test_batch_first_recurrent_layout_is_the_transposed_sequence():
    """``layout=1`` (batch first; ONNX Runtime's CPU kernels refuse it) equals ``layout=0`` on the
    transposed sequence and states."""
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    x, h0 = f32(7, 2, 3), f32(1, 2, 5)
    weights: list[Input] = [("w", f32(1, 15, 3), True), ("r", f32(1, 15, 5), True), ("b", f32(1, 30), True)]
    outs = {}
    for layout, (xv, hv) in {0: (x, h0), 1: (x.transpose(1, 0, 2), h0.transpose(1, 0, 2))}.items():
        inputs = [("x", xv, False), *weights, ("seq", None, True), ("h0", hv, False)]
        model = single_op("GRU", inputs, opset=14, n_out=2, hidden_size=5, layout=layout)
        with torch.no_grad():
            outs[layout] = [
                t.numpy() for t in TorchFromOnnx(model)(x=torch.from_numpy(xv), h0=torch.from_numpy(hv))
            ]
    np.testing.assert_allclose(outs[1][0], outs[0][0].transpose(2, 0, 1, 3), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outs[1][1], outs[0][1].transpose(1, 0, 2), rtol=1e-6, atol=1e-6)
