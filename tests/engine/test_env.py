"""The environment check: GPU first, then TensorRT; one line naming what is missing (exit 3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trtforge.pipeline.engine import env
from trtforge.pipeline.engine.env import GpuInfo, missing_message, require_trt_env
from trtforge.pipeline.errors import EXIT_MISSING_ENV, MissingDependencyError

HAVE_GPU = env.probe_gpu() is not None
HAVE_TRT = env.trt_installed()


def test_missing_message_names_each_missing_piece() -> None:
    both = missing_message(None, False, "building")
    assert both is not None
    assert "no CUDA GPU was found and the tensorrt package is not installed" in both
    assert "pypi.nvidia.com" in both and "nvcr.io/nvidia/tensorrt" in both and "\n" not in both
    no_trt = missing_message(GpuInfo("L4", (8, 9)), False, "building")
    assert no_trt is not None and "GPU" not in no_trt.split(":", 1)[1].split(";")[0]
    no_gpu = missing_message(None, True, "building")
    assert no_gpu is not None and "tensorrt package" not in no_gpu
    assert missing_message(GpuInfo("L4", (8, 9)), True, "building") is None


def test_gpu_info_sm() -> None:
    assert GpuInfo("L4", (8, 9)).sm == "sm89"
    assert GpuInfo("L4", (8, 9)).to_dict() == {"name": "L4", "compute_capability": "8.9"}


@pytest.mark.skipif(
    HAVE_GPU and HAVE_TRT, reason="TensorRT and a GPU are present; the exit-3 path cannot occur"
)
def test_require_trt_env_exits_3_without_touching_tensorrt() -> None:
    before = "tensorrt" in sys.modules
    with pytest.raises(MissingDependencyError) as info:
        require_trt_env("building a TensorRT engine")
    assert info.value.exit_code == EXIT_MISSING_ENV
    assert "needs TensorRT and an NVIDIA GPU" in str(info.value)
    assert ("tensorrt" in sys.modules) == before  # nothing TensorRT was imported


def test_no_gpu_stops_before_tensorrt_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env, "probe_gpu", lambda device=0: None)
    monkeypatch.setattr(env, "trt_installed", lambda: True)  # even with TensorRT installed
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # importing it would raise ImportError
    with pytest.raises(MissingDependencyError, match="no CUDA GPU was found;"):
        require_trt_env()


def test_driver_probe_without_driver_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path("/dev/nvidiactl").exists():
        pytest.skip("an NVIDIA driver is present")
    assert env._probe_driver(0) is None
