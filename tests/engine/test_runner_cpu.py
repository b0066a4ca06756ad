"""The TensorRT runner's checks that happen before any TensorRT object exists."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trtforge.pipeline.backends.tensorrt import TrtRunner, is_engine_path
from trtforge.pipeline.engine import env
from trtforge.pipeline.engine.metadata import EngineMetadata, write_metadata
from trtforge.pipeline.errors import InputError, MissingDependencyError


def test_engine_suffixes() -> None:
    assert is_engine_path("a/b.engine") and is_engine_path("m.plan") and not is_engine_path("m.onnx")


def test_missing_engine_and_missing_metadata_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="engine file not found"):
        TrtRunner(tmp_path / "none.engine").load()
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"not a plan")
    with pytest.raises(InputError, match=r"no metadata file m\.engine\.json"):
        TrtRunner(plan).load()


def test_no_gpu_rejected_before_deserializing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env, "probe_gpu", lambda device=0: None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"not a plan")
    write_metadata(plan, EngineMetadata("10.16.1", "NVIDIA L4", "8.9", "fp32", (), "0" * 64, 1.0))
    with pytest.raises(
        MissingDependencyError, match="running a TensorRT engine needs TensorRT and an NVIDIA GPU"
    ):
        TrtRunner(plan).load()


def test_engine_check_exit_codes(tmp_path: Path, mlp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trtforge.pipeline.artifact import sha256_model_files
    from trtforge.pipeline.engine.check import main

    engine = tmp_path / "m.engine"
    assert main([str(engine)]) == 1  # nothing built yet: rebuild
    engine.write_bytes(b"plan")
    write_metadata(engine, EngineMetadata("10.16.1", "NVIDIA L4", "8.9", "fp32", (), "0" * 64, 1.0))
    assert main([str(engine), "--onnx", str(mlp)]) == 1  # built from another model
    write_metadata(
        engine, EngineMetadata("10.16.1", "NVIDIA L4", "8.9", "fp32", (), sha256_model_files(mlp), 1.0)
    )
    monkeypatch.setattr(env, "probe_gpu", lambda device=0: None)
    assert main([str(engine), "--onnx", str(mlp)]) == 3  # same model, but no GPU here
