"""Calibration sources (images, callables, memory-mapped .npy, bounded memory) and FP16 conversion."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from tests.calibration import tiny
from trtforge.calibration.errors import CalibrationError, DataError
from trtforge.calibration.fp16 import Fp16Options, convert_fp16
from trtforge.calibration.quantizer import QuantizeOptions, calibrate
from trtforge.calibration.sources import ImagePreprocess, open_batches, source_kind
from trtforge.common.tensors import TensorSpec


def test_callable_source():
    specs = [TensorSpec("x", "float32", ("N", 16))]
    text = "tests.calibration._feeds_fixture:feeds"
    assert source_kind(text) == "callable"
    feeds = list(open_batches(text, specs, 4, limit=10))
    assert [f["x"].shape[0] for f in feeds] == [4, 4, 2]
    with pytest.raises(DataError, match="cannot import"):
        list(open_batches("tests.calibration.nope:feeds", specs, 4))


def test_image_directory_with_declared_preprocessing(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((10, 12, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    specs = [TensorSpec("x", "float32", ("N", 3, 8, 8))]
    with pytest.raises(DataError, match="declared preprocessing"):
        list(open_batches(tmp_path, specs, 2))
    pre = ImagePreprocess(layout="NCHW", mean=(0.5,), std=(0.5,))
    batches = list(open_batches(tmp_path, specs, 2, preprocess=pre))
    assert [b["x"].shape for b in batches] == [(2, 3, 8, 8), (1, 3, 8, 8)]
    assert batches[0]["x"][1, 0, 0, 0] == pytest.approx((60 / 255 - 0.5) / 0.5, abs=1e-5)
    nhwc = list(
        open_batches(
            tmp_path,
            [TensorSpec("x", "float32", ("N", 8, 8, 3))],
            4,
            preprocess=ImagePreprocess(layout="NHWC"),
        )
    )
    assert nhwc[0]["x"].shape == (3, 8, 8, 3)


def test_npy_is_streamed_in_batches(tmp_path):
    np.save(tmp_path / "c.npy", np.arange(10 * 16, dtype=np.float32).reshape(10, 16))
    feeds = list(open_batches(tmp_path / "c.npy", [TensorSpec("x", "float32", ("N", 16))], 4, limit=9))
    assert [f["x"].shape[0] for f in feeds] == [4, 4, 1]
    assert not isinstance(feeds[0]["x"], np.memmap)


def test_histogram_memory_does_not_grow_with_samples():
    model = tiny.mlp()
    rng = np.random.default_rng(0)
    small = calibrate(
        model,
        ({"x": rng.normal(size=(8, 16)).astype(np.float32)} for _ in range(2)),
        QuantizeOptions(target="tensorrt"),
    )
    big = calibrate(
        model,
        ({"x": rng.normal(size=(64, 16)).astype(np.float32)} for _ in range(40)),
        QuantizeOptions(target="tensorrt"),
    )
    assert big.stats.samples == 2560 and small.stats.samples == 16
    size = {n: s.hist.counts.nbytes for n, s in big.stats.tensors.items()}
    assert size == {n: s.hist.counts.nbytes for n, s in small.stats.tensors.items()}


def test_fp16_keeps_islands_in_fp32():
    m = tiny.attention_block()
    res = convert_fp16(m)
    types = Counter(i.data_type for i in res.model.graph.initializer)
    assert types[onnx.TensorProto.FLOAT16] > 0
    assert {"LayerNormalization", "Softmax"} <= set(res.blocked_ops)
    # the blocked ops see float32 inputs (Casts around them)
    producers = {o: n for n in res.model.graph.node for o in n.output}
    for n in res.model.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax") and n.input[0] in producers:
            p = producers[n.input[0]]
            assert p.op_type != "Cast" or any(a.i == onnx.TensorProto.FLOAT for a in p.attribute)
    x = {"x": np.random.default_rng(0).normal(size=(2, 6, 16)).astype(np.float32)}
    np.testing.assert_allclose(tiny.run(res.model, x)[0], tiny.run(m, x)[0], atol=2e-2)


def test_fp16_overflow_nodes_stay_fp32():
    m = tiny.mlp()
    big = [{"x": np.full((4, 16), 3e4, np.float32)}]
    res = convert_fp16(m, Fp16Options(), big)
    assert "fc1" in res.overflow_nodes
    with pytest.raises(CalibrationError, match="already holds FP16"):
        convert_fp16(convert_fp16(tiny.attention_block()).model)
