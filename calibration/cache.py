"""Calibration tables: JSON (tensor -> amax, method, samples) and TensorRT's legacy text cache.

Legacy cache (TensorRT 8/10 implicit INT8 only): first line ``TRT-<version>-EntropyCalibration2``
(8.6.1 -> ``8601``, 10.3.0 -> ``100300``), then ``<tensor>: <8 hex digits>``, the big-endian
float32 bits of ``scale = amax / 127``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trtforge.calibration.errors import CalibrationError
from trtforge.common.files import write_text_atomic

ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "EntropyCalibration2",
    "mse": "EntropyCalibration2",
}


def trt_version_code(version: str) -> str:
    """``8.6.1`` -> ``8601``; ``10.3.0`` -> ``100300`` (major, then two digits each of minor and patch)."""
    try:
        parts = [int(p) for p in version.split(".")[:3]]
    except ValueError as exc:
        raise CalibrationError(f"TensorRT version {version!r} is not like 10.3.0") from exc
    parts += [0] * (3 - len(parts))
    major, minor, patch = parts
    return f"{major}{minor:02d}{patch:02d}" if major >= 10 else f"{major}{minor}{patch:02d}"


def scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def hex_scale(text: str) -> float:
    return float(struct.unpack(">f", bytes.fromhex(text))[0])


def format_trt_cache(amax: Mapping[str, float], version: str = "10.3.0", method: str = "entropy") -> str:
    header = f"TRT-{trt_version_code(version)}-{ALGORITHMS.get(method, 'EntropyCalibration2')}"
    lines = [header] + [f"{name}: {scale_hex(max(a, 1e-8) / 127.0)}" for name, a in amax.items()]
    return "\n".join(lines) + "\n"


def write_trt_cache(
    path: str | Path, amax: Mapping[str, float], version: str = "10.3.0", method: str = "entropy"
) -> Path:
    return write_text_atomic(path, format_trt_cache(amax, version, method))


def read_trt_cache(path: str | Path) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale) of a legacy cache; errors name the file and the line."""
    p = Path(path)
    lines = p.read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise CalibrationError(f"{p}: not a TensorRT calibration cache (no TRT-<version>-<algo> header)")
    scales: dict[str, float] = {}
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        if not sep or len(value.strip()) != 8:
            raise CalibrationError(f"{p}:{i}: expected '<tensor>: <8 hex digits>', got {line!r}")
        scales[name] = hex_scale(value.strip())
    return lines[0], scales


def table_dict(
    amax: Mapping[str, float],
    ranges: Mapping[str, tuple[float, float]],
    method: str,
    samples: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    tensors = {
        name: {"amax": float(a), "min": float(ranges[name][0]), "max": float(ranges[name][1])}
        if name in ranges
        else {"amax": float(a)}
        for name, a in amax.items()
    }
    return {"method": method, "samples": samples, **(dict(extra) if extra else {}), "tensors": tensors}


def write_table(path: str | Path, table: Mapping[str, Any]) -> Path:
    return write_text_atomic(path, json.dumps(table, indent=2, sort_keys=False) + "\n")


def read_table(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{p}: not a readable calibration table ({exc})") from exc
    if "tensors" not in data:
        raise CalibrationError(f"{p}: calibration table has no 'tensors' key")
    return dict(data)
