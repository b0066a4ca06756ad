"""A fused model must not run slower than its input: the CREPE-like 1-D CNN case.

A pitch estimator written with Conv2d kernels ``(k, 1)`` on ``[N, 1, 1024, 1]`` pads before every
Conv. Merged into the Conv (onnxslim's FusionPadConv, or ONNX Runtime's own PadFusion once the
fuse passes dropped the Pad's empty ``constant_value`` input), the padding sends ONNX Runtime's
CPU Conv down a slow path: the fused model ran 2x slower (``rules/_pads.py`` has the numbers).
The structural checks run always; the timing check is a benchmark (``-m slow``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtforge.common.ort import SessionConfig, create_session
from trtforge.pipeline.graph.fusion import fuse_model

#: (filters, kernel height, stride) of the six conv blocks (CREPE "tiny" widths)
BLOCKS = ((128, 512, 4), (16, 64, 1), (16, 64, 1), (16, 64, 1), (32, 64, 1), (64, 64, 1))


def crepe_like() -> onnx.ModelProto:
    """``[N, 1024] -> Reshape [N, 1, 1024, 1] -> 6 x (Pad, Conv (k, 1), Relu, BN, MaxPool (2, 1))
    -> Transpose, Reshape -> Gemm -> Sigmoid``, each Pad written ``Pad(x, pads, "")`` as the
    TorchScript exporter writes ``F.pad``."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 1024, 1], np.int64), "to_2d"),
        numpy_helper.from_array(np.array([-1, 64 * 4], np.int64), "to_flat"),
        numpy_helper.from_array((rng.standard_normal((64 * 4, 360)) * 0.05).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(360, np.float32), "fc_b"),
    ]
    nodes = [helper.make_node("Reshape", ["audio", "to_2d"], ["h0"], name="to_2d")]
    x, channels, height = "h0", 1, 1024
    for i, (filters, k, stride) in enumerate(BLOCKS):
        before, after = ((k - 2) // 2, (k - 2) // 2) if i == 0 else (k // 2 - 1, k // 2)
        inits += [
            numpy_helper.from_array(np.array([0, 0, before, 0, 0, 0, after, 0], np.int64), f"pads{i}"),
            numpy_helper.from_array(
                (rng.standard_normal((filters, channels, k, 1)) / np.sqrt(channels * k)).astype(np.float32),
                f"w{i}",
            ),
            numpy_helper.from_array(np.zeros(filters, np.float32), f"b{i}"),
            numpy_helper.from_array(np.ones(filters, np.float32), f"g{i}"),
            numpy_helper.from_array(np.zeros(filters, np.float32), f"be{i}"),
            numpy_helper.from_array(rng.uniform(-0.1, 0.1, filters).astype(np.float32), f"m{i}"),
            numpy_helper.from_array(rng.uniform(0.5, 2.0, filters).astype(np.float32), f"v{i}"),
        ]
        nodes += [
            helper.make_node("Pad", [x, f"pads{i}", ""], [f"p{i}"], mode="constant", name=f"pad{i}"),
            helper.make_node(
                "Conv",
                [f"p{i}", f"w{i}", f"b{i}"],
                [f"c{i}"],
                kernel_shape=[k, 1],
                strides=[stride, 1],
                name=f"conv{i}",
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
            helper.make_node(
                "BatchNormalization",
                [f"r{i}", f"g{i}", f"be{i}", f"m{i}", f"v{i}"],
                [f"n{i}"],
                epsilon=1e-3,
                name=f"bn{i}",
            ),
            helper.make_node(
                "MaxPool", [f"n{i}"], [f"h{i + 1}"], kernel_shape=[2, 1], strides=[2, 1], name=f"pool{i}"
            ),
        ]
        x, channels, height = f"h{i + 1}", filters, (height + before + after - k) // stride // 2 + 1
    nodes += [
        helper.make_node("Transpose", [x], ["t"], perm=[0, 2, 1, 3], name="transpose"),
        helper.make_node("Reshape", ["t", "to_flat"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="classifier"),
        helper.make_node("Sigmoid", ["logits"], ["pitch"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "crepe_like",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["n", 1024])],
        [helper.make_tensor_value_info("pitch", TensorProto.FLOAT, ["n", 360])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def square_conv_after_pad() -> onnx.ModelProto:
    """``Pad`` then a 3x3 Conv on a 16x16 image: merging is a gain here, so it still happens."""
    rng = np.random.default_rng(1)
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant", name="pad"),
            helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3], name="conv"),
        ],
        "square",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [
            numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
            numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_pads_stay_apart_from_1d_convs() -> None:
    model = crepe_like()
    result = fuse_model(model)
    fused = result.model
    pads = [n for n in fused.graph.node if n.op_type == "Pad"]
    assert len(pads) == len(BLOCKS)
    assert all(list(n.input)[2:] == [""] for n in pads)  # ONNX Runtime's PadFusion leaves these alone
    for conv in (n for n in fused.graph.node if n.op_type == "Conv"):
        assert all(v == 0 for a in conv.attribute if a.name == "pads" for v in a.ints)
    passes = {g["pass"] for g in result.guards}
    assert passes == {"onnxslim", "keep_pads_apart"}
    assert "FusionPadConv" in next(g["reason"] for g in result.guards if g["pass"] == "onnxslim")
    feed = {"audio": np.random.default_rng(2).standard_normal((2, 1024)).astype(np.float32)}
    config = SessionConfig(graph_optimization="disable")
    expected = create_session(model, config).run(None, feed)[0]
    np.testing.assert_allclose(create_session(fused, config).run(None, feed)[0], expected, atol=1e-5)


def test_pads_written_without_the_empty_input_get_it() -> None:
    model = crepe_like()
    for node in model.graph.node:
        if node.op_type == "Pad":
            del node.input[2:]  # ONNX Runtime merges these already in the input model
    result = fuse_model(model)
    kept = next(p for p in result.passes if p.name == "keep_pads_apart")
    assert kept.modified and kept.applied == len(BLOCKS)
    assert all(list(n.input)[2:] == [""] for n in result.model.graph.node if n.op_type == "Pad")
    unchanged = next(p for p in fuse_model(crepe_like()).passes if p.name == "keep_pads_apart")
    assert not unchanged.modified and unchanged.applied == 0  # the input had them: nothing new


def test_pad_before_a_square_3x3_conv_still_merges() -> None:
    result = fuse_model(square_conv_after_pad())
    assert [n.op_type for n in result.model.graph.node] == ["Conv"]
    conv = result.model.graph.node[0]
    assert [list(a.ints) for a in conv.attribute if a.name == "pads"] == [[1, 1, 1, 1]]
    assert result.guards == []


@pytest.mark.slow
def test_fused_crepe_like_model_is_not_slower_on_onnxruntime_cpu(tmp_path: Path) -> None:
    from trtforge.pipeline.validation.throughput import measure_latency

    source, fused = tmp_path / "crepe.onnx", tmp_path / "crepe.fused.onnx"
    onnx.save(crepe_like(), source)
    onnx.save(fuse_model(crepe_like()).model, fused)
    feed = {"audio": np.random.default_rng(3).standard_normal((1, 1024)).astype(np.float32)}
    before, after = measure_latency([source, fused], [feed, feed], threads=1, warmup=10, iters=60)
    # was 2x (1.97 paired ratio); interleaved timing on one thread keeps the noise within 10%
    assert after.paired_ratio <= 1.10, (before.latency.p50_ms, after.latency.p50_ms)
