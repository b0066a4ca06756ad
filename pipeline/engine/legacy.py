"""The legacy TensorRT calibration cache (implicit INT8, TensorRT 8/10 only): header checks.

The text format (TENSORRT.md): first line ``TRT-<version>-EntropyCalibration2``, where ``<version>``
is TensorRT's integer version (8.6.1 -> ``8601``, 10.3.0 -> ``100300``). TensorRT ignores a cache
whose header names another version or algorithm and recalibrates; with no data to calibrate on,
that fails deep inside the build, so the header is checked here first.
"""

from __future__ import annotations

from pathlib import Path

from trtforge.pipeline.engine.version import parse_version
from trtforge.pipeline.errors import ConfigError, InputError

ALGORITHM = "EntropyCalibration2"


def trt_int_version(version: str) -> int:
    """TensorRT's integer version: ``8.6.1`` -> 8601, ``10.3.0`` -> 100300."""
    parts = [*parse_version(version), 0, 0][:3]
    major, minor, patch = parts
    return major * (1000 if major < 10 else 10000) + minor * 100 + patch


def read_calibration_cache(path: Path, trt_version: str) -> bytes:
    """The cache bytes, after checking that its header fits ``trt_version`` and EntropyCalibration2."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: calibration cache not found; write one with trtforge quantize") from exc
    first = data.split(b"\n", 1)[0].decode(errors="replace").strip()
    head, _, algo = first.rpartition("-")
    expected = f"TRT-{trt_int_version(trt_version)}-{ALGORITHM}"
    if not head.startswith("TRT-") or algo != ALGORITHM:
        raise InputError(f"{path}: not a TensorRT {ALGORITHM} calibration cache (first line {first[:60]!r})")
    if first != expected:
        raise ConfigError(
            f"{path}: calibration cache header {first!r} does not match this TensorRT ({trt_version} wants "
            f"{expected!r}); TensorRT would recalibrate without data. Rewrite the cache for {trt_version}"
        )
    return data
