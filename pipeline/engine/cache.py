"""Cache keys for engines and timing caches: both are specific to the GPU's compute capability
and the TensorRT version, so both go into every key (STYLE.md 13)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trtforge.pipeline.engine.env import GpuInfo
from trtforge.pipeline.engine.version import parse_version

log = logging.getLogger(__name__)


def trt_tag(trt_version: str) -> str:
    """``"10.16.1.11"`` -> ``"trt10.16.1"``: major.minor.patch decide engine/timing-cache fit."""
    return "trt" + ".".join(str(p) for p in parse_version(trt_version)[:3])


def timing_cache_path(cache_dir: str | Path, trt_version: str, gpu: GpuInfo) -> Path:
    """``<cache_dir>/timing/trt10.16.1-sm86.cache``."""
    return Path(cache_dir) / "timing" / f"{trt_tag(trt_version)}-{gpu.sm}.cache"


def engine_cache_key(onnx_sha256: str, options: Mapping[str, Any], trt_version: str, gpu: GpuInfo) -> str:
    """Content key of an engine: input model, build options, TensorRT version and compute capability."""
    payload = {
        "onnx": onnx_sha256,
        "options": options,
        "trt": trt_tag(trt_version),
        "gpu": gpu.sm,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_timing_cache(path: Path) -> bytes:
    """The serialized timing cache at ``path`` or ``b""`` (a fresh cache) when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        log.warning("timing cache %s unreadable (%s); starting a fresh one", path, exc.strerror)
        return b""
    log.info("timing cache: loaded %d bytes from %s", len(data), path)
    return data


def save_timing_cache(path: Path, data: bytes) -> None:
    """Write the timing cache atomically (concurrent builds never see a half-written file)."""
    from trtforge.pipeline.onnx_io import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
