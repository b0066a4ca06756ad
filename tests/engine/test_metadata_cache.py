"""Cache keys, engine metadata, compatibility checks, precision detection, version gates, legacy cache."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtforge.pipeline.engine.cache import (
    engine_cache_key,
    load_timing_cache,
    save_timing_cache,
    timing_cache_path,
    trt_tag,
)
from trtforge.pipeline.engine.env import GpuInfo
from trtforge.pipeline.engine.legacy import read_calibration_cache, trt_int_version
from trtforge.pipeline.engine.metadata import (
    EngineMetadata,
    incompatibility,
    metadata_path,
    onnx_precision,
    read_metadata,
    write_metadata,
)
from trtforge.pipeline.engine.version import (
    check_legacy_allowed,
    check_supported,
    is_trt10,
    is_trt11,
    parse_version,
)
from trtforge.pipeline.errors import ConfigError, InputError, MissingDependencyError

A100 = GpuInfo("NVIDIA A100", (8, 0))
L4 = GpuInfo("NVIDIA L4", (8, 9))
T4 = GpuInfo("Tesla T4", (7, 5))


def meta(**kw: object) -> EngineMetadata:
    base: dict[str, object] = dict(
        trt_version="10.16.1.11",
        gpu_name="NVIDIA L4",
        compute_capability="8.9",
        precision="int8",
        profiles=({"x": {"min": [1, 4], "opt": [8, 4], "max": [32, 4]}},),
        onnx_sha256="ab" * 32,
        build_time_s=12.5,
    )
    base.update(kw)
    return EngineMetadata(**base)  # type: ignore[arg-type]


def test_versions_and_gates() -> None:
    assert parse_version("10.16.1.11") == (10, 16, 1, 11)
    assert parse_version("11.4.0.post1") == (11, 4, 0)
    assert trt_tag("10.16.1.11") == "trt10.16.1"

    class Fake:
        __version__ = "11.4.0.106"

    assert is_trt11(Fake) and not is_trt10(Fake)
    with pytest.raises(MissingDependencyError, match="not supported"):
        check_supported("8.6.1")


def test_legacy_refused_on_11_with_the_reason() -> None:
    check_legacy_allowed("10.16.1", legacy_fp16=True, legacy_int8=True)  # allowed on 10
    with pytest.raises(ConfigError, match=r"--legacy-fp16 needs TensorRT 10; TensorRT 11\.4\.0 removed"):
        check_legacy_allowed("11.4.0", legacy_fp16=True, legacy_int8=False)
    check_legacy_allowed("11.4.0", legacy_fp16=False, legacy_int8=False)


def test_timing_cache_keyed_by_gpu_and_trt(tmp_path: Path) -> None:
    p = timing_cache_path(tmp_path, "10.16.1.11", L4)
    assert p == tmp_path / "timing" / "trt10.16.1-sm89.cache"
    assert timing_cache_path(tmp_path, "10.16.1.11", A100) != p
    assert timing_cache_path(tmp_path, "11.4.0.106", L4) != p
    assert load_timing_cache(p) == b""
    save_timing_cache(p, b"\x01\x02")
    assert load_timing_cache(p) == b"\x01\x02"


def test_engine_key_changes_with_every_input() -> None:
    key = engine_cache_key("a" * 64, {"opt_level": 3}, "10.16.1", L4)
    assert key == engine_cache_key("a" * 64, {"opt_level": 3}, "10.16.1.11", L4)  # build number ignored
    others = {
        engine_cache_key("b" * 64, {"opt_level": 3}, "10.16.1", L4),
        engine_cache_key("a" * 64, {"opt_level": 4}, "10.16.1", L4),
        engine_cache_key("a" * 64, {"opt_level": 3}, "10.15.0", L4),
        engine_cache_key("a" * 64, {"opt_level": 3}, "10.16.1", A100),
    }
    assert key not in others and len(others) == 4


def test_metadata_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    write_metadata(engine, meta(plugins=("trtforge::SwishBeta",)))
    assert metadata_path(engine).name == "m.engine.json"
    back = read_metadata(engine)
    assert back == meta(plugins=("trtforge::SwishBeta",))
    with pytest.raises(InputError, match="no metadata file"):
        read_metadata(tmp_path / "other.engine")


@pytest.mark.parametrize(
    ("m", "trt", "gpu", "needle"),
    [
        (meta(), "10.16.1.11", L4, None),
        (meta(), "10.16.1.2", L4, None),
        (meta(), "10.15.1", L4, "built with TensorRT 10.16.1.11, this machine has 10.15.1"),
        (meta(), "11.4.0", L4, "rebuild the engine here"),
        (
            meta(),
            "10.16.1",
            A100,
            "built for NVIDIA L4 \\(compute capability 8.9\\), this GPU is NVIDIA A100",
        ),
        (meta(version_compatible=True), "10.17.0", L4, None),
        (meta(version_compatible=True), "11.4.0", L4, "runs on TensorRT 10.x"),
        (meta(version_compatible=True), "10.15.0", L4, "runs on TensorRT 10.x"),
        (meta(hardware_compatible=True), "10.16.1", A100, None),
        (meta(hardware_compatible=True), "10.16.1", T4, "Ampere or newer"),
    ],
)
def test_incompatibility(m: EngineMetadata, trt: str, gpu: GpuInfo, needle: str | None) -> None:
    reason = incompatibility(m, trt, gpu)
    if needle is None:
        assert reason is None
    else:
        assert reason is not None
        assert re.search(needle, reason), reason


def _qdq_model(fp16: bool = False) -> onnx.ModelProto:
    dt = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float16 if fp16 else np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", dt, [1, 4])],
        [helper.make_tensor_value_info("y", dt, [1, 4])],
        inits,
    )
    return helper.make_model(graph)


def test_precision_from_graph() -> None:
    assert onnx_precision(_qdq_model()) == "int8"
    assert onnx_precision(_qdq_model(fp16=True)) == "int8+fp16"
    plain = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
    )
    assert onnx_precision(plain) == "fp32"


def test_legacy_calibration_cache_header(tmp_path: Path) -> None:
    assert trt_int_version("8.6.1") == 8601 and trt_int_version("10.3.0.26") == 100300
    scale = struct.unpack(">I", struct.pack(">f", 1.0 / 127))[0]
    cache = tmp_path / "calib.cache"
    cache.write_text(f"TRT-101601-EntropyCalibration2\nx: {scale:08x}\n")
    assert read_calibration_cache(cache, "10.16.1.11").startswith(b"TRT-101601")
    with pytest.raises(ConfigError, match="wants 'TRT-100300-EntropyCalibration2'"):
        read_calibration_cache(cache, "10.3.0")
    cache.write_text("TRT-101601-MinMaxCalibration\n")
    with pytest.raises(InputError, match="not a TensorRT EntropyCalibration2"):
        read_calibration_cache(cache, "10.16.1")
