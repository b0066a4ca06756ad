"""What the machine offers for TensorRT: a CUDA GPU (checked first) and the ``tensorrt`` package.

TensorRT objects are never created where CUDA is absent (a ``Runtime`` without a GPU can
segfault), so :func:`require_trt_env` probes the GPU *before* importing ``tensorrt``.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass
from typing import Any

from trtforge.pipeline.errors import MissingDependencyError

TRT_INSTALL_HINT = (
    "install TensorRT from NVIDIA's index "
    "(pip install tensorrt-cu13 --extra-index-url https://pypi.nvidia.com) "
    "or run inside NVIDIA's TensorRT container (nvcr.io/nvidia/tensorrt), or build with --target onnxruntime"
)
GPU_HINT = "run on a machine with an NVIDIA GPU and driver (or pass --gpus all to docker run)"


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device TensorRT would build for."""

    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        """``"sm86"`` for compute capability 8.6."""
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "compute_capability": ".".join(map(str, self.compute_capability))}


def probe_gpu(device: int = 0) -> GpuInfo | None:
    """The CUDA device ``device``, or None. Uses torch when installed, else the CUDA driver directly."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() <= device:
            return None
        cc = torch.cuda.get_device_capability(device)
        return GpuInfo(torch.cuda.get_device_name(device), (int(cc[0]), int(cc[1])))
    return _probe_driver(device)


def _probe_driver(device: int) -> GpuInfo | None:
    # torch is optional for building; the driver API answers the same two questions without it.
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= device:
        return None
    handle = ctypes.c_int(0)
    cuda.cuDeviceGet(ctypes.byref(handle), device)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, handle)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, handle)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, handle)  # ..._MINOR
    return GpuInfo(name.value.decode(errors="replace"), (major.value, minor.value))


def trt_installed() -> bool:
    """True when a ``tensorrt`` package is importable (looked up, not imported)."""
    return importlib.util.find_spec("tensorrt") is not None


def missing_message(gpu: GpuInfo | None, have_trt: bool, purpose: str) -> str | None:
    """One line naming what is missing for ``purpose`` and how to get it; None when nothing is."""
    missing = []
    if gpu is None:
        missing.append("no CUDA GPU was found")
    if not have_trt:
        missing.append("the tensorrt package is not installed")
    if not missing:
        return None
    hints = [GPU_HINT] if gpu is None else []
    if not have_trt:
        hints.append(TRT_INSTALL_HINT)
    return f"{purpose} needs TensorRT and an NVIDIA GPU: {' and '.join(missing)}; {'; '.join(hints)}"


def require_trt_env(purpose: str = "building a TensorRT engine", device: int = 0) -> tuple[Any, GpuInfo]:
    """Return ``(tensorrt module, GpuInfo)`` or raise ``MissingDependencyError`` (exit 3) in one line."""
    gpu = probe_gpu(device)
    message = missing_message(gpu, trt_installed(), purpose)
    if message is not None or gpu is None:
        raise MissingDependencyError(message or f"{purpose}: no CUDA GPU; {GPU_HINT}")
    try:
        import tensorrt as trt
    except ImportError as exc:  # a broken install (missing libnvinfer) lands here
        raise MissingDependencyError(
            f"{purpose}: tensorrt does not import ({exc}); {TRT_INSTALL_HINT}"
        ) from exc
    from trtforge.pipeline.engine.version import check_supported

    check_supported(trt.__version__)
    return trt, gpu


_TRT_DISTS = (
    "tensorrt",
    "tensorrt-cu13",
    "tensorrt-cu12",
    "tensorrt-cu13-bindings",
    "tensorrt-cu12-bindings",
)


def installed_trt_version() -> str | None:
    """TensorRT's version from package metadata (no import), for cache keys; None when not installed."""
    from importlib import metadata

    for dist in _TRT_DISTS:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
