"""The bench stage: latency metrics vs the reference and the optional latency-ratio gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.validation import _models as m
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.config import from_dict
from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.registry import get_stage
from trtforge.pipeline.stage import StageContext
from trtforge.pipeline.stages.bench import BenchConfig, BenchStage

FAST = {"warmup": 1, "iters": 10}


def _run(tmp: Path, same: bool, **cfg: object):
    ref = Artifact.from_onnx_path(m.classifier(tmp / "ref.onnx"))
    cand = ref if same else Artifact.from_onnx_path(m.perturbed(tmp / "cand.onnx", 0.1))
    stage = BenchStage(from_dict(BenchConfig, {**FAST, **cfg}, "test"))
    return cand, stage.run(cand, StageContext(out_dir=tmp, reference=ref))


def test_records_latency_and_ratio_vs_reference(tmp_path: Path) -> None:
    assert get_stage("bench") is BenchStage
    cand, result = _run(tmp_path, same=False, batches=[1, 4])
    assert result.artifact == cand and result.modified is False and result.gates == ()
    lat = result.metrics["latency"]
    assert set(lat) == {"1", "4"}
    for entry in lat.values():
        assert entry["p50_ms"] > 0 and entry["reference_p50_ms"] > 0 and 0.2 < entry["p50_ratio"] < 5
    assert result.metrics["bench"]["models"] == ["reference", "current"]


def test_latency_ratio_gate(tmp_path: Path) -> None:
    _, ok = _run(tmp_path, same=False, max_latency_ratio=100.0)
    assert ok and ok.gates[0].name == "latency_ratio" and ok.gates[0].value is not None
    _, bad = _run(tmp_path, same=False, max_latency_ratio=1e-6)
    assert not bad and "the reference" in bad.gates[0].detail


def test_without_a_distinct_reference(tmp_path: Path) -> None:
    _, result = _run(tmp_path, same=True, max_latency_ratio=1.1)
    assert result and "nothing to compare" in result.gates[0].detail
    assert (
        result.metrics["bench"]["models"] == ["current"] and "p50_ratio" not in result.metrics["latency"]["1"]
    )


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="batches must be positive"):
        from_dict(BenchConfig, {"batches": [0]}, "test")
    with pytest.raises(ConfigError, match="unknown key 'iterations'"):
        from_dict(BenchConfig, {"iterations": 3}, "test")
