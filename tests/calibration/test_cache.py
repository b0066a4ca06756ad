"""Legacy TensorRT calibration cache and the JSON table round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from trtforge.calibration.cache import (
    format_trt_cache,
    read_table,
    read_trt_cache,
    table_dict,
    trt_version_code,
    write_table,
    write_trt_cache,
)
from trtforge.calibration.errors import CalibrationError


def test_version_codes_and_known_scale():
    assert trt_version_code("8.6.1") == "8601"
    assert trt_version_code("10.3.0") == "100300"
    text = format_trt_cache({"x": 1.0}, "8.6.1")
    # big-endian float32 bits of 1/127 = 0.0078740157 (0x3c010a14, sometimes quoted, is 1/126.97)
    assert text.splitlines() == ["TRT-8601-EntropyCalibration2", "x: 3c010204"]


def test_cache_round_trip(tmp_path):
    amax = {"input": 2.5, "conv1.out": 0.125, "/blocks.0/Add_output_0": 37.0}
    path = write_trt_cache(tmp_path / "calib.cache", amax, "10.3.0")
    header, scales = read_trt_cache(path)
    assert header == "TRT-100300-EntropyCalibration2"
    assert set(scales) == set(amax)
    for k, a in amax.items():
        assert scales[k] == pytest.approx(np.float32(a / 127.0), rel=1e-7)


def test_cache_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.cache"
    bad.write_text("hello\n")
    with pytest.raises(CalibrationError, match="not a TensorRT calibration cache"):
        read_trt_cache(bad)
    bad.write_text("TRT-100300-EntropyCalibration2\nx: 12\n")
    with pytest.raises(CalibrationError, match=":2:"):
        read_trt_cache(bad)


def test_json_table(tmp_path):
    table = table_dict({"a": 1.5}, {"a": (-1.0, 1.5)}, "entropy", 123)
    read = read_table(write_table(tmp_path / "t.json", table))
    assert read["method"] == "entropy" and read["samples"] == 123
    assert read["tensors"]["a"] == {"amax": 1.5, "min": -1.0, "max": 1.5}
