"""A library pass that breaks parity is dropped, with the reason, instead of failing the stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from tests.conftest import tiny_mlp
from trtforge.pipeline.api import run_stage
from trtforge.pipeline.graph import fusion
from trtforge.pipeline.stage import DataPaths


def _breaking_onnxslim(model: ir.Model, options: fusion.FusionOptions) -> fusion.PassOutcome:
    """Stands in for an onnxslim rewrite that changes results: it scales the second weight."""
    weight = model.graph.initializers["w2"]
    assert weight.const_value is not None
    weight.const_value = ir.tensor(weight.const_value.numpy() * 1.5, name="w2")
    return fusion.PassOutcome(modified=True, applied=1)


@pytest.fixture
def breaking(monkeypatch: pytest.MonkeyPatch) -> None:
    passes = tuple(
        fusion.FusionPass(p.name, p.enabled, _breaking_onnxslim) if p.name == "onnxslim" else p
        for p in fusion.PASSES
    )
    monkeypatch.setattr(fusion, "PASSES", passes)


def test_a_breaking_onnxslim_is_skipped_with_its_reason(tmp_path: Path, breaking: None) -> None:
    model = tiny_mlp(tmp_path / "m.onnx")
    np.save(tmp_path / "val.npy", np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    data = DataPaths(validation=tmp_path / "val.npy")
    result = run_stage("fuse", None, model, tmp_path / "fused.onnx", data=data)
    assert all(result.gates) and result.metrics["parity"]["passed"]
    guards = [g for g in result.metrics["guards"] if g["pass"] == "onnxslim"]
    assert len(guards) == 1 and "changed the model's results" in guards[0]["reason"]
    assert "onnxslim" not in [n for n, v in result.metrics["removed_by_pass"].items() if v]


def test_without_onnxslim_the_failure_is_reported(tmp_path: Path, breaking: None) -> None:
    model = tiny_mlp(tmp_path / "m.onnx")
    np.save(tmp_path / "val.npy", np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    data = DataPaths(validation=tmp_path / "val.npy")
    result = run_stage("fuse", {"use_onnxslim": False}, model, tmp_path / "fused.onnx", data=data)
    assert all(result.gates) and not result.metrics["guards"]  # the breaking pass never ran
