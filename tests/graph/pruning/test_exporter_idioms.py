"""Pruning through what tf2onnx, JAX and torch exporters emit around convolutions: pads computed
by subgraphs and pads of a time axis, channel-preserving Reshapes with dynamic sizes, NHWC
layouts between Transposes, L2-normalised embeddings, run-time sizes of Resize, recurrent layers.

Each model is pruned end to end and run on ONNX Runtime against a reference with the removed
channels masked out of the unpruned model; whatever cannot be mapped stays pinned with the reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtforge.pipeline.graph.pruning import analyze_model, macs
from trtforge.pipeline.graph.pruning.plan import resolve

from .conftest import check_valid, masked_reference, prune, run
from .models import RNG, G, head
from .test_couplings import weight_shape

INT_MAX = 2**63 - 1


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def conv1d(
    g: G, x: str, cin: int, cout: int, k: int = 3, name: str | None = None, pads: list[int] | None = None
) -> str:
    w = g.const(RNG.standard_normal((cout, cin, k)).astype(np.float32) * 0.3, "w")
    b = g.const(RNG.standard_normal(cout).astype(np.float32) * 0.1, "b")
    return g.op("Conv", [x, w, b], name, pads=pads if pads is not None else [k // 2] * 2)


def group_of(model: onnx.ModelProto, source: str):
    return next(g for g in analyze_model(model).groups if source in g.sources)


def zeroed_reference(model: onnx.ModelProto, plan) -> onnx.ModelProto:
    """The unpruned model with every weight and bias slice of the removed channels zeroed: the
    producers' rows (the channel is exactly 0 everywhere: through ReLU, a norm's sum, a division
    by it) and the consumers' columns. Where a removed channel also enters a sum that is no
    weight (an L2 norm), structured pruning must give exactly these outputs."""
    an = analyze_model(model).analysis
    remove = resolve(an, plan, "test")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    for s in an.spaces:
        if s.kind != "param" or s.role not in ("weight", "bias"):
            continue
        gone = np.flatnonzero(np.isin(an.labels_of(s), remove))
        if gone.size:
            w = numpy_helper.to_array(inits[s.tensor]).copy()
            idx: list[slice | np.ndarray] = [slice(None)] * w.ndim
            idx[s.axis] = gone
            w[tuple(idx)] = 0.0
            inits[s.tensor].CopyFrom(numpy_helper.from_array(w, s.tensor))
    return out


def assert_pruned_like(
    model: onnx.ModelProto, x: np.ndarray, reference=masked_reference, **kw
) -> onnx.ModelProto:
    plan, pruned = prune(model, ratio=0.5, **kw)
    assert plan.removed_units > 0
    check_valid(pruned)
    got, want = run(pruned, x), run(reference(model, plan), x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(want, run(model, x), atol=1e-3)  # something was actually removed
    return pruned


# -- Pad ------------------------------------------------------------------------------------


def torch_pads(g: G, left: int, right: int, rank: int = 3) -> str:
    """torch's opset-11 ``F.pad(x, (left, right))`` pads, unfolded: ConstantOfShape, Concat,
    Reshape to pairs, reversed Slice, Transpose, Reshape, Cast."""
    zeros = g.op(
        "ConstantOfShape",
        [g.const(i64(2 * rank - 2))],
        value=helper.make_tensor("v", TensorProto.INT64, [1], [0]),
    )
    pairs = g.op("Reshape", [g.op("Concat", [g.const(i64(left, right)), zeros], axis=0), g.const(i64(-1, 2))])
    rev = g.op("Slice", [pairs, g.const(i64(-1)), g.const(i64(-INT_MAX)), g.const(i64(0)), g.const(i64(-1))])
    flat = g.op("Reshape", [g.op("Transpose", [rev], perm=[1, 0]), g.const(i64(-1))])
    return g.op("Cast", [flat], to=TensorProto.INT64)


def causal_tcn() -> onnx.ModelProto:
    """[N, C, T] convs with causal left padding of the time axis through torch's pads subgraph."""
    g = G()
    a = g.op("Relu", [conv1d(g, "x", 3, 16, name="c1", pads=[0, 0])])
    p = g.op("Pad", [a, torch_pads(g, 2, 0)])
    b = g.op("Relu", [conv1d(g, p, 16, 16, name="c2", pads=[0, 0])])
    p2 = g.op("Pad", [b, torch_pads(g, 1, 1), g.const(np.array(0.0, np.float32))], mode="constant")
    y = conv1d(g, p2, 16, 4, name="c3", pads=[0, 0])
    return g.model({"x": ["N", 3, "T"]}, [y])


def test_time_axis_pad_computed_by_a_subgraph_is_pruned_through():
    model = causal_tcn()
    for src in ("c1", "c2"):
        g = group_of(model, src)
        assert not g.blocked, g.reasons
    x = RNG.standard_normal((2, 3, 12)).astype(np.float32)
    pruned = assert_pruned_like(model, x)
    assert weight_shape(pruned, "c1")[0] == 8 and weight_shape(pruned, "c2") == (8, 8, 3)


def test_pad_of_the_channel_axis_and_run_time_pads_say_so():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    p = g.op("Pad", [a, g.const(i64(0, 1, 0, 0, 0, 2, 0, 0))])
    y1 = g.conv(p, 19, 8, name="c2")
    b = g.op("Relu", [g.conv("x", 3, 16, name="c3")])
    dyn = g.op("Concat", [g.const(i64(0, 0)), g.op("Shape", [b], start=2), g.const(i64(0, 0, 0, 0))], axis=0)
    y2 = g.conv(g.op("Pad", [b, dyn]), 16, 8, name="c4")
    model = g.model({"x": ["N", 3, 8, 8]}, [y1, y2])
    assert group_of(model, "c1").reasons == ("Pad node 'pad6' pads the channel axis 1 by [1, 2]",)
    (why,) = group_of(model, "c3").reasons
    assert "pads are computed at run time from activations" in why and "pads the channel axis" not in why


def tf2onnx_conv1d_nhwc() -> onnx.ModelProto:
    """tf2onnx: [N, T, C] activations, each Conv1D wrapped in Transposes, the time padding
    (a Keras ZeroPadding1D / 'causal' Conv1D) done in NTC layout on axis 1."""
    g = G()
    t = g.op("Transpose", ["x"], perm=[0, 2, 1])
    a = g.op("Transpose", [g.op("Relu", [conv1d(g, t, 3, 16, name="c1")])], perm=[0, 2, 1])
    p = g.op("Pad", [a, g.const(i64(0, 2, 0, 0, 1, 0))])
    b = g.op("Relu", [conv1d(g, g.op("Transpose", [p], perm=[0, 2, 1]), 16, 8, name="c2", pads=[0, 0])])
    m = g.op("ReduceMean", [g.op("Transpose", [b], perm=[0, 2, 1])], axes=[1], keepdims=0)
    return g.model({"x": ["N", 10, 3]}, [g.gemm(m, 8, 4, name="fc")])


def test_channels_last_time_pad_between_transposes():
    model = tf2onnx_conv1d_nhwc()
    assert not group_of(model, "c1").blocked and not group_of(model, "c2").blocked
    x = RNG.standard_normal((2, 10, 3)).astype(np.float32)
    pruned = assert_pruned_like(model, x)
    assert weight_shape(pruned, "c2") == (4, 8, 3) and weight_shape(pruned, "fc") == (4, 4)


# -- Reshape that keeps the channel axis ------------------------------------------------------


def reshape_roundtrips(dynamic: bool) -> onnx.ModelProto:
    """[N, C, T] -> [N, C, T, 1] (target [0, 0, -1, 1]) -> 2-D conv -> [N, C, T] again, computed the
    way torch's ``x.view(x.size(0), x.size(1), -1)`` exports it; with ``dynamic`` T is symbolic."""
    g = G()
    a = g.op("Relu", [conv1d(g, "x", 3, 16, name="c1")])
    a4 = g.op("Reshape", [a, g.const(i64(0, 0, -1, 1))])
    w = g.const(RNG.standard_normal((16, 16, 3, 1)).astype(np.float32) * 0.3, "w")
    b = g.op("Relu", [g.op("Conv", [a4, w, g.const(np.zeros(16, np.float32))], "c2", pads=[1, 0, 1, 0])])
    s = g.op("Shape", [b])
    target = g.op("Concat", [g.op("Slice", [s, g.const(i64(0)), g.const(i64(2))]), g.const(i64(-1))], axis=0)
    b3 = g.op("Reshape", [b, target])
    y = conv1d(g, b3, 16, 4, name="c3")
    return g.model({"x": ["N", 3, "T" if dynamic else 10]}, [y])


@pytest.mark.parametrize("dynamic", [True, False])
def test_reshapes_that_keep_the_channel_axis(dynamic):
    model = reshape_roundtrips(dynamic)
    for src in ("c1", "c2"):
        assert not group_of(model, src).blocked, group_of(model, src).reasons
    x = RNG.standard_normal((2, 3, 10)).astype(np.float32)
    pruned = assert_pruned_like(model, x)
    assert weight_shape(pruned, "c2") == (8, 8, 3, 1) and weight_shape(pruned, "c3") == (4, 8, 3)


def test_flatten_spatial_axes_keeps_channels_and_literal_counts_are_rewritten():
    """[N, C, H, W] -> [N, C, H·W] with the channel count spelled out ([0, 16, -1]: rewritten to the
    kept count), a 1-D conv, then back to [N, C, 4, 4] ([0, 0, 4, 4])."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    flat = g.op("Reshape", [a, g.const(i64(0, 16, -1))])
    b = g.op("Relu", [conv1d(g, flat, 16, 16, k=1, name="c2")])
    img = g.op("Reshape", [b, g.const(i64(0, 0, 4, 4))])
    model = g.model({"x": ["N", 3, 4, 4]}, [head(g, g.op("Relu", [g.conv(img, 16, 8, name="c3")]), 8)])
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    pruned = assert_pruned_like(model, x)
    shape_inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    reshape = next(n for n in pruned.graph.node if n.op_type == "Reshape")
    assert shape_inits[reshape.input[1]].tolist() == [0, 8, -1]


def test_reshape_that_mixes_channels_with_earlier_axes_stays_pinned():
    g = G()
    a = g.op("Relu", [conv1d(g, "x", 3, 16, name="c1")])
    mixed = g.op("Reshape", [a, g.const(i64(-1, 10))])  # [N, 16, 10] -> [N*16, 10]
    model = g.model({"x": ["N", 3, 10]}, [g.gemm(mixed, 10, 4, name="fc")])
    (why,) = group_of(model, "c1").reasons
    assert "mixes the channel axis with the axes before it" in why or "computed at run time" in why


# -- L2-normalised embeddings ------------------------------------------------------------------


def l2_normalised(style: str) -> onnx.ModelProto:
    """conv -> ReLU -> x / ‖x‖₂ over the channels -> conv -> GAP -> Gemm. ``style``: ReduceL2 + Div
    (JAX), torch's ``F.normalize`` (ReduceL2, Clip, Expand to Shape(x), Div), or LpNormalization."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    if style == "lpnorm":
        n = g.op("LpNormalization", [a], axis=1, p=2)
    else:
        norm = g.op("ReduceL2", [a], axes=[1], keepdims=1)
        if style == "torch":
            norm = g.op("Clip", [norm, g.const(np.array(1e-12, np.float32))])
            norm = g.op("Expand", [norm, g.op("Shape", [a])])
            n = g.op("Div", [a, norm])
        else:
            n = g.op("Mul", [a, g.op("Reciprocal", [norm])])
    y = g.op("Relu", [g.conv(n, 16, 8, name="c2")])
    return g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 8)])


@pytest.mark.parametrize("style", ["jax", "torch", "lpnorm"])
def test_l2_normalisation_over_channels_is_a_sink_coupled_through_the_division(style, images):
    model = l2_normalised(style)
    an = analyze_model(model).analysis
    g = next(gr for gr in an.groups if "c1" in gr.sources)
    assert not g.blocked, g.reasons
    c1 = an.space_of("c1_out" if False else next(n.output[0] for n in an.index.nodes if n.name == "c1"), 1)
    relu = next(n for n in an.index.nodes if n.input and n.input[0] == c1.tensor)
    assert an.space_of(relu.output[0], 1).id in an.sinks  # the norm sums over the channels
    pruned = assert_pruned_like(model, images, reference=zeroed_reference)
    assert weight_shape(pruned, "c1")[0] == 8 and weight_shape(pruned, "c2") == (4, 8, 3, 3)


def test_l2_normalised_embedding_head_keeps_its_output_and_frees_the_backbone(images):
    """The embedding itself is the graph output (pinned, with that reason); the layers before it
    are pruned."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    emb = g.gemm(g.op("Flatten", [g.op("GlobalAveragePool", [a])]), 16, 8, name="emb")
    model = g.model({"x": ["N", 3, 8, 8]}, [g.op("LpNormalization", [emb], axis=1, p=2)])
    assert group_of(model, "emb").blocked
    assert any("graph output" in r for r in group_of(model, "emb").reasons)
    pruned = assert_pruned_like(model, images)
    assert weight_shape(pruned, "c1")[0] == 8 and weight_shape(pruned, "emb") == (8, 8)


@pytest.mark.parametrize(
    ("op", "why"),
    [
        ("ReduceMean", "averages over the channel axis"),
        ("ReduceMax", "takes the maximum over the channel axis"),
        ("ReduceLogSumExp", "exp(0) = 1"),
    ],
)
def test_reductions_over_channels_that_are_not_sums_stay_pinned(op, why):
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    s = g.op("Div", [a, g.op(op, [a], axes=[1], keepdims=1)])
    model = g.model({"x": ["N", 3, 8, 8]}, [head(g, g.conv(s, 16, 8, name="c2"), 8)])
    (reason,) = group_of(model, "c1").reasons
    assert why in reason


# -- Resize, Expand, Tile, Slice with run-time sizes --------------------------------------------


def test_resize_to_a_run_time_size_and_nhwc_scales(images):
    """A decoder's ``F.interpolate(x, size=skip.shape[2:])`` (sizes read from Shape at run time),
    a tf2onnx NHWC Resize with scales [1, 2, 2, 1], a Resize with literal sizes spelling C, a
    Slice whose bounds come from Shape, and a Tile along the batch."""
    g = G()
    skip = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    down = g.op("MaxPool", [skip], kernel_shape=[2, 2], strides=[2, 2])
    sizes = g.op("Concat", [g.op("Shape", [down], end=2), g.op("Shape", [skip], start=2)], axis=0)
    up = g.op("Resize", [down, "", "", sizes], mode="linear")
    nhwc = g.op("Transpose", [up], perm=[0, 2, 3, 1])
    big = g.op("Resize", [nhwc, "", g.const(np.array([1, 0.5, 0.5, 1], np.float32))], mode="nearest")
    nchw = g.op("Transpose", [big], perm=[0, 3, 1, 2])
    lit = g.op("Resize", [nchw, "", "", g.const(i64(2, 16, 8, 8))], mode="nearest")
    h = g.op("Gather", [g.op("Shape", [lit]), g.const(np.array(2, np.int64))], axis=0)
    crop = g.op("Slice", [lit, g.const(i64(1)), g.op("Unsqueeze", [h, g.const(i64(0))]), g.const(i64(2))])
    tiled = g.op("Tile", [crop, g.const(i64(1, 1, 1, 1))])
    model = g.model({"x": [2, 3, 8, 8]}, [head(g, g.op("Relu", [g.conv(tiled, 16, 8, name="c2")]), 8)])
    assert not group_of(model, "c1").blocked, group_of(model, "c1").reasons
    pruned = assert_pruned_like(model, images)
    sizes_out = [
        numpy_helper.to_array(t).tolist()
        for t in pruned.graph.initializer
        if t.name == next(n for n in pruned.graph.node if n.name == lit.removesuffix("_out")).input[3]
    ]
    assert sizes_out == [[2, 8, 8, 8]]


def test_resize_of_the_channel_axis_and_channel_tiles_are_pinned():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    r = g.op("Resize", [a, "", g.const(np.array([1, 2, 1, 1], np.float32))], mode="nearest")
    b = g.op("Relu", [g.conv("x", 3, 16, name="c2")])
    t = g.op("Tile", [b, g.const(i64(1, 2, 1, 1))])
    model = g.model({"x": ["N", 3, 8, 8]}, [g.conv(r, 32, 4, name="c3"), g.conv(t, 32, 4, name="c4")])
    assert any("resamples the channel axis (scale 2.0)" in r for r in group_of(model, "c1").reasons)
    assert any("repeats the channel axis 2 times" in r for r in group_of(model, "c2").reasons)


def test_expand_of_a_channel_vector(images):
    """[N, C, 1, 1] gates expanded to [N, C, H, W] (shape from Shape(x) at run time, or literal C)."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    gate = g.op("Sigmoid", [g.op("GlobalAveragePool", [a])])
    e1 = g.op("Expand", [gate, g.op("Shape", [a])])
    e2 = g.op("Expand", [gate, g.const(i64(1, 16, 8, 8))])
    y = g.op("Add", [g.op("Mul", [a, e1]), g.op("Mul", [a, e2])])
    model = g.model({"x": ["N", 3, 8, 8]}, [head(g, g.op("Relu", [g.conv(y, 16, 8, name="c2")]), 8)])
    assert not group_of(model, "c1").blocked, group_of(model, "c1").reasons
    assert_pruned_like(model, images)


# -- recurrent layers --------------------------------------------------------------------------


def conv_lstm(op: str = "LSTM", hidden: int = 6) -> onnx.ModelProto:
    """CRNN: conv features [N, C, T] -> [T, N, C] -> LSTM/GRU -> last step -> Gemm."""
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    g = G()
    a = g.op("Relu", [conv1d(g, "x", 3, 16, name="c1")])
    seq = g.op("Transpose", [a], perm=[2, 0, 1])
    w = g.const(RNG.standard_normal((1, gates * hidden, 16)).astype(np.float32) * 0.3, "w")
    r = g.const(RNG.standard_normal((1, gates * hidden, hidden)).astype(np.float32) * 0.3, "r")
    bias = g.const(RNG.standard_normal((1, 2 * gates * hidden)).astype(np.float32) * 0.1, "b")
    y = g.op(op, [seq, w, r, bias], "rnn", hidden_size=hidden)
    last = g.op("Gather", [g.op("Squeeze", [y, g.const(i64(1))]), g.const(np.array(-1, np.int64))], axis=0)
    return g.model({"x": ["N", 3, 9]}, [g.gemm(last, hidden, 4, name="fc")])


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_recurrent_input_features_are_a_sink(op):
    model = conv_lstm(op)
    an = analyze_model(model).analysis
    w = next(
        s
        for s in an.spaces
        if s.kind == "param" and s.tensor == next(n for n in an.index.nodes if n.name == "rnn").input[1]
    )
    assert w.axis == 2 and w.role == "weight"  # W[D, G·H, I]: the input features
    x = RNG.standard_normal((2, 3, 9)).astype(np.float32)
    pruned = assert_pruned_like(model, x, reference=zeroed_reference)
    rnn = next(n for n in pruned.graph.node if n.name == "rnn")
    assert tuple(next(t for t in pruned.graph.initializer if t.name == rnn.input[1]).dims)[2] == 8
    torch = pytest.importorskip("torch")
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    with torch.no_grad():  # and the pruned CRNN can be recovered: the interpreter runs it like ORT
        got = TorchFromOnnx(pruned)(x=torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, run(pruned, x), rtol=1e-4, atol=1e-5)


def test_recurrent_hidden_units_and_time_axes_are_pinned_with_the_reason():
    g = G()
    a = g.op("Relu", [conv1d(g, "x", 3, 6, name="c1")])  # 6 channels used as the initial hidden state
    h0 = g.op("Transpose", [g.op("ReduceMean", [a], axes=[2], keepdims=1)], perm=[2, 0, 1])
    b = g.op("Relu", [conv1d(g, "x", 3, 5, name="c2")])  # 5 channels feed the LSTM on its time axis
    seq = g.op("Transpose", [b], perm=[1, 0, 2])  # [5, N, T]: channels as time steps
    w = g.const(RNG.standard_normal((1, 24, 9)).astype(np.float32), "w")
    r = g.const(RNG.standard_normal((1, 24, 6)).astype(np.float32), "r")
    y = g.op("LSTM", [seq, w, r, "", "", h0], "lstm", hidden_size=6)
    model = g.model({"x": [1, 3, 9]}, [y])
    assert group_of(model, "c1").reasons == (
        "LSTM node 'lstm': input 5 cannot be pruned (hidden units are not pruned)",
    )
    assert any("time or batch axis" in r for r in group_of(model, "c2").reasons)
    prune(model, ratio=0.5)  # nothing to remove, nothing crashes
    counted = macs.count(model)
    assert counted["macs_by_op"]["LSTM"] == 5 * 1 * 1 * 24 * (9 + 6)


def test_legacy_softmax_over_trailing_axes_pins_the_channels():
    """Before opset 13 Softmax(axis=1) normalises over every axis from 1 on."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 16, name="c1")])
    s = g.op("Softmax", [g.op("Transpose", [a], perm=[0, 2, 3, 1])], axis=1)
    model = g.model({"x": ["N", 3, 8, 8]}, [s], opset=11)
    assert any("normalises over the channel axis" in r for r in group_of(model, "c1").reasons)
    m13 = g.model({"x": ["N", 3, 8, 8]}, [s], opset=13)
    assert not any("normalises" in r for r in group_of(m13, "c1").reasons)


# -- skl2onnx ---------------------------------------------------------------------------------


def test_skl2onnx_mlp_behind_a_scaler_is_pruned_and_its_macs_counted():
    """skl2onnx writes Scaler (ai.onnx.ml) -> Cast -> MatMul + Add -> Relu ...: ONNX's shape inference
    knows no ai.onnx.ml op, so every shape after the Scaler was unknown and no group was found."""
    w1 = numpy_helper.from_array(RNG.standard_normal((6, 16)).astype(np.float32) * 0.4, "coefficient")
    b1 = numpy_helper.from_array(RNG.standard_normal(16).astype(np.float32) * 0.1, "intercepts")
    w2 = numpy_helper.from_array(RNG.standard_normal((16, 3)).astype(np.float32) * 0.4, "coefficient1")
    nodes = [
        helper.make_node(
            "Scaler", ["X"], ["scaled"], name="scaler", domain="ai.onnx.ml", offset=[0.5] * 6, scale=[2.0] * 6
        ),
        helper.make_node("Cast", ["scaled"], ["cast"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["cast", "coefficient"], ["mm"], name="fc1"),
        helper.make_node("Add", ["mm", "intercepts"], ["add"], name="fc1_bias"),
        helper.make_node("Relu", ["add"], ["act"], name="relu"),
        helper.make_node("MatMul", ["act", "coefficient1"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "skl2onnx",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [w1, b1, w2],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    model.ir_version = 8
    group = group_of(model, "fc1")
    assert not group.blocked and group.size == 16
    assert macs.count(model, batch=4)["macs"] == 4 * (6 * 16 + 16 * 3)
    x = RNG.standard_normal((5, 6)).astype(np.float32)
    pruned = assert_pruned_like(model, x)
    assert macs.count(pruned, batch=4)["macs"] == 4 * (6 * 8 + 8 * 3)
