"""The validate stage: gates, pass-through artifact, data handling, and use inside a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.validation import _models as m
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.config import from_dict
from trtforge.pipeline.errors import ConfigError, InputError, StageError
from trtforge.pipeline.registry import get_stage
from trtforge.pipeline.stage import DataPaths, StageContext
from trtforge.pipeline.stages.validate import ValidateConfig, ValidateStage


def _run(tmp: Path, cand: Path, data: Path | None, **cfg: object):
    ref = Artifact.from_onnx_path(m.classifier(tmp / "ref.onnx"))
    art = Artifact.from_onnx_path(cand)
    ctx = StageContext(out_dir=tmp, reference=ref, data=DataPaths(validation=data))
    stage = ValidateStage(from_dict(ValidateConfig, cfg, "test"))
    return art, stage.run(art, ctx)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    x = m.samples(30)
    np.savez(tmp_path / "val.npz", x=x, labels=m.reference_labels(x))
    return tmp_path / "val.npz"


def test_registered_and_passes_through_unchanged(tmp_path: Path, data: Path) -> None:
    assert get_stage("validate") is ValidateStage
    cand = m.classifier(tmp_path / "cand.onnx")
    before = cand.read_bytes()
    art, result = _run(tmp_path, cand, data, metric="top1")
    assert result and result.artifact == art and result.modified is False
    assert cand.read_bytes() == before
    assert [g.name for g in result.gates] == ["parity", "top1"] and all(result.gates)
    assert result.metrics["samples"] == 30 and result.metrics["accuracy"]["reference"] == 1.0
    assert result.metrics["random_data"] is False


def test_perturbed_candidate_fails_parity_gate(tmp_path: Path, data: Path) -> None:
    _, result = _run(tmp_path, m.perturbed(tmp_path / "cand.onnx", 0.05), data, max_samples=10, batch_size=4)
    assert not result
    parity = result.gates[0]
    assert parity.name == "parity" and not parity.passed and parity.value and parity.value > 0
    assert result.metrics["samples"] == 10 and result.metrics["batches"] == 3


def test_loose_per_output_tolerances_pass(tmp_path: Path, data: Path) -> None:
    cand = m.perturbed(tmp_path / "cand.onnx", 1e-3)
    _, strict = _run(tmp_path, cand, data, atol=1e-7, rtol=0.0)
    assert not strict
    table = {"logits": {"atol": 0.1}, "probs": {"atol": 0.1}}
    _, loose = _run(tmp_path, cand, data, atol=1e-7, rtol=0.0, tolerances=table)
    assert loose and loose.metrics["outputs"][0]["atol"] == 0.1


def test_missing_data_and_random_data(tmp_path: Path) -> None:
    cand = m.classifier(tmp_path / "cand.onnx")
    with pytest.raises(InputError, match=r"no validation data.*--random-data"):
        _run(tmp_path, cand, None)
    _, result = _run(tmp_path, cand, None, random_data=True, max_samples=5)
    assert result and result.metrics["random_data"] is True and "RANDOM" in result.metrics["warning"]
    assert result.metrics["samples"] == 5


def test_needs_an_onnx_reference_and_valid_config(tmp_path: Path, data: Path) -> None:
    cand = Artifact.from_onnx_path(m.classifier(tmp_path / "cand.onnx"))
    ctx = StageContext(out_dir=tmp_path, reference=None, data=DataPaths(validation=data))
    with pytest.raises(StageError, match="needs an ONNX reference"):
        ValidateStage(ValidateConfig()).run(cand, ctx)
    with pytest.raises(ConfigError, match="not one of 'none', 'top1'"):
        from_dict(ValidateConfig, {"metric": "top5"}, "test")
    with pytest.raises(ConfigError, match="atol must be"):
        from_dict(ValidateConfig, {"atol": -1.0}, "test")


def test_in_a_pipeline_with_a_tolerance_file(tmp_path: Path, data: Path) -> None:
    from trtforge.pipeline.runner import load_pipeline_config, run_pipeline

    m.classifier(tmp_path / "model.onnx")
    (tmp_path / "tol.toml").write_text("[outputs.probs]\natol = 0.5\n")
    cfg = tmp_path / "trtforge.toml"
    cfg.write_text(
        '[pipeline]\nmodel = "model.onnx"\nworkdir = "w"\nvalidation_data = "val.npz"\n'
        '[[stage]]\ntype = "validate"\nmetric = "top1"\ntolerances = "tol.toml"\n'
    )
    run = run_pipeline(load_pipeline_config(cfg))
    assert run.passed and run.final is not None and run.final.path == tmp_path / "model.onnx"
    record = json.loads((tmp_path / "w" / "01-validate" / "stage.json").read_text())
    assert record["modified"] is False and record["metrics"]["outputs"][1]["atol"] == 0.5
    assert run_pipeline(load_pipeline_config(cfg)).stages[0].cached
    (tmp_path / "tol.toml").write_text("[outputs.probs]\natol = 0.25\n")  # tolerance file is in the cache key
    assert not run_pipeline(load_pipeline_config(cfg)).stages[0].cached
