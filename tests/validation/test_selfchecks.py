"""Every stage's self-check goes through the one parity rule and the one gate builder.

The fuse check passes a legitimate BatchNormalization fold whose error is beyond ``atol`` on large
outputs but within ``rtol`` (and fails it with ``rtol = 0``), fails a perturbed model with a failed
gate and exit 1; the gates of export, fuse, prune (lossless), the ONNX Runtime build target and
validate are the ones :func:`parity_gate` built, with the same metric keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests import models_onnx as mo
from tests.graph.pruning import models as prune_models
from tests.validation import _models as m
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.stage import DataPaths, Gate, StageContext, StageResult
from trtforge.pipeline.stages.build import BuildConfig, BuildStage
from trtforge.pipeline.stages.fuse import FuseConfig, FuseStage
from trtforge.pipeline.stages.prune import PruneConfig, PruneStage
from trtforge.pipeline.stages.validate import ValidateConfig, ValidateStage
from trtforge.pipeline.validation import parity, rule, selfcheck

#: the parity metrics every stage's self-check reports (SelfCheckResult.to_dict)
SHARED_KEYS = {"passed", "source", "batches", "samples", "atol", "rtol", "count", "violations"}
SHARED_KEYS |= {"max_abs_err", "max_rel_err"}

Calls = list[tuple[str, Gate]]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every gate parity_gate builds, by name (the self-checks and validate call it through these)."""
    calls: Calls = []
    real = rule.parity_gate

    def spy(name: str, outputs: Any, what: str = "") -> Gate:
        gate = real(name, outputs, what)
        calls.append((name, gate))
        return gate

    monkeypatch.setattr(selfcheck, "parity_gate", spy)
    monkeypatch.setattr(parity, "parity_gate", spy)
    return calls


def _run(stage: Any, src: Path, out: Path, **ctx: Any) -> StageResult:
    out.mkdir()
    result: StageResult = stage.run(Artifact.from_onnx_path(src), StageContext(out_dir=out, **ctx))
    return result


def _assert_shared_gate(result: StageResult, name: str, built: Calls, metrics: dict[str, Any] | None) -> Gate:
    gate = next(g for g in result.gates if g.name == name)
    assert (name, gate) in built, f"{name} was not built by rule.parity_gate"
    assert gate.value is not None and gate.threshold is not None
    assert (gate.value <= gate.threshold) == gate.passed  # the rule at the worst element
    if metrics is not None:
        assert set(metrics) >= SHARED_KEYS, SHARED_KEYS - set(metrics)
        assert metrics["passed"] == gate.passed
    return gate


def big_conv_bn(path: Path, scale: float = 10.0) -> Path:
    """x[N,16,8,8] -> Conv(32 out, weights ~ N(0, scale^2)) -> BN: outputs in the hundreds, so the
    float32 rounding of a correct BN fold is a few 1e-4 in absolute terms, ~1e-6 relative."""
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((32, 16, 3, 3)) * scale).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        mo.bn_node("bn", "c", "y"),
    ]
    model = mo.make(
        nodes,
        [mo.vi("x", ["N", 16, 8, 8])],
        [mo.vi("y", ["N", 32, 8, 8])],
        [mo.init("w", w), *mo.bn_params("bn", 32, 4)],
    )
    onnx.save(model, str(path))
    return path


def test_fuse_passes_a_bn_fold_within_rtol_but_beyond_atol(tmp_path: Path, built: Calls) -> None:
    src = big_conv_bn(tmp_path / "big.onnx")
    result = _run(FuseStage(FuseConfig()), src, tmp_path / "default")
    assert result.metrics["nodes_after"] == {"Conv": 1}  # BN was folded
    par = result.metrics["parity"]
    assert par["max_abs_err"] > 1e-4, "the fold error must exceed atol for this test to mean anything"
    assert par["max_rel_err"] < 1e-2 and par["atol"] == 1e-4 and par["rtol"] == 1e-3
    gate = _assert_shared_gate(result, "fuse_parity", built, par)
    assert gate.passed and result
    # the same fold with the relative part switched off: atol alone rejects it, so fuse leaves the
    # fold out (the model stays exact, BN unfolded) and says why
    strict = _run(FuseStage(FuseConfig(rtol=0.0)), src, tmp_path / "strict")
    (gate,) = strict.gates
    assert gate.passed and strict.metrics["parity"]["max_abs_err"] == 0
    assert strict.metrics["nodes_after"].get("BatchNormalization") == 1
    (guard,) = [g for g in strict.metrics["guards"] if g["pass"] == "fold_batchnorm"]
    assert "changed the model's results" in guard["reason"] and f"{par['max_abs_err']:.3g}" in guard["reason"]


def _perturb_fused_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fuse passes return a wrong model: every float initializer scaled by 1.01."""
    from trtforge.pipeline.graph import fusion

    real = fusion.fuse_model

    def wrong(model: onnx.ModelProto, options: Any = None) -> Any:
        import dataclasses

        result = real(model, options)
        for t in result.model.graph.initializer:
            a = numpy_helper.to_array(t)
            if a.dtype == np.float32:
                t.CopyFrom(numpy_helper.from_array(a * np.float32(1.01), t.name))
        # a change no switch of fuse turns off: leaving passes out cannot avoid it
        marker = fusion.PassReport("perturb_weights", True, 1, 0)
        return dataclasses.replace(result, passes=(*result.passes, marker))

    monkeypatch.setattr(fusion, "fuse_model", wrong)


def test_fuse_fails_a_perturbed_model_with_gate_and_exit_1(
    tmp_path: Path,
    built: Calls,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    src = big_conv_bn(tmp_path / "big.onnx")
    _perturb_fused_weights(monkeypatch)
    result = _run(FuseStage(FuseConfig()), src, tmp_path / "out")
    gate = _assert_shared_gate(result, "fuse_parity", built, result.metrics["parity"])
    assert not gate.passed and not result and "outside atol=0.0001 + rtol=0.001*|ref|" in gate.detail
    code, _, err = cli("fuse", src, "-o", tmp_path / "fused.onnx")
    assert code == 1 and "fuse_parity" in err


def test_prune_lossless_gate_is_the_shared_one(tmp_path: Path, built: Calls) -> None:
    src = tmp_path / "dead.onnx"
    onnx.save(prune_models.dead_channels(), str(src))
    cfg = PruneConfig(lossless=True, round_to=1, latency_runs=0)
    result = _run(PruneStage(cfg), src, tmp_path / "out")
    par = result.metrics["parity"]
    gate = _assert_shared_gate(result, "prune_lossless_parity", built, par)
    assert gate.passed and par["atol"] == cfg.lossless_atol and par["rtol"] == 0.0
    assert par["max_abs_diff"] == par["max_abs_err"] and par["source"] == "random"


def test_ort_build_target_smoke_parity_is_a_shared_gate(tmp_path: Path, built: Calls, mlp: Path) -> None:
    result = _run(BuildStage(BuildConfig(target="onnxruntime")), mlp, tmp_path / "out")
    par = result.metrics["smoke_parity"]
    gate = _assert_shared_gate(result, "build_parity", built, par)
    assert gate.passed and par["samples"] == 1 and result.metrics["smoke_max_abs_diff"] == par["max_abs_err"]


def test_validate_parity_gate_is_the_shared_one(tmp_path: Path, built: Calls) -> None:
    ref = Artifact.from_onnx_path(m.classifier(tmp_path / "ref.onnx"))
    x = m.samples(12)
    np.savez(tmp_path / "val.npz", x=x)
    ctx = {"reference": ref, "data": DataPaths(validation=tmp_path / "val.npz")}
    cand = m.perturbed(tmp_path / "cand.onnx", 0.05)
    result = _run(ValidateStage(ValidateConfig()), cand, tmp_path / "out", **ctx)
    gate = _assert_shared_gate(result, "parity", built, None)
    assert not gate.passed and gate.value is not None and gate.threshold is not None
    assert gate.value > gate.threshold


def test_export_gate_is_the_shared_one(tmp_path: Path, built: Calls) -> None:
    pytest.importorskip("torch")
    from trtforge.pipeline.stages.export import ExportConfig, ExportStage, torch_artifact

    cfg = ExportConfig(inputs=("x:2x1x6x6",), exporter="torchscript", opset=17)
    out = tmp_path / "out"
    out.mkdir()
    result = ExportStage(cfg).run(torch_artifact("tests.models_torch:conv_bn"), StageContext(out_dir=out))
    gate = _assert_shared_gate(result, "export_parity", built, result.metrics["parity"])
    assert gate.passed and result.metrics["max_abs_err"] == result.metrics["parity"]["max_abs_err"]
