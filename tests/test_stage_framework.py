"""Artifact kinds checked along the chain at load; stages that run stages (cached sub-steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tests._nested_stage  # noqa: F401  (registers nested_for_test)
from tests.conftest import tiny_mlp
from trtforge.pipeline.artifact import Artifact, ArtifactKind
from trtforge.pipeline.errors import ConfigError, StageError
from trtforge.pipeline.runner import pipeline_config_from_dict, run_pipeline
from trtforge.pipeline.stage import StageContext


def _config(tmp: Path, model: str, stages: list[dict[str, object]]) -> object:
    raw = {
        "pipeline": {"model": model, "workdir": str(tmp / "work"), "validation_data": "val.npy"},
        "stage": stages,
    }
    return pipeline_config_from_dict(raw, tmp, "test.toml")


@pytest.mark.parametrize(
    ("model", "stages", "message"),
    [
        (
            "m.onnx",
            ["fuse", "export"],
            r"stage 2 \(export\) takes torch models, but the output of stage 1 \(fuse\)",
        ),
        (
            "m.engine",
            ["quantize"],
            r"stage 1 \(quantize\) takes onnx models, but the input model .*m\.engine is an engine model",
        ),
        (
            "m.onnx",
            [{"type": "build", "target": "tensorrt"}, "validate", "fuse"],
            r"stage 3 \(fuse\) takes onnx models, but the output of stage 1 \(build, target = \"tensorrt\"\)",
        ),
    ],
)
def test_chain_is_checked_at_load(tmp_path: Path, model: str, stages: list[object], message: str) -> None:
    tables = [s if isinstance(s, dict) else {"type": s} for s in stages]
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, model, tables)


def test_possible_chains_load(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path, "m.pt2", [{"type": "export"}, {"type": "fuse"}, {"type": "build", "target": "tensorrt"}]
    )
    assert [s.type for s in cfg.stages] == ["export", "fuse", "build"]  # type: ignore[attr-defined]
    cfg = _config(
        tmp_path,
        "m.onnx",
        [{"type": "build", "target": "onnxruntime", "ort_format": "ort"}, {"type": "bench"}],
    )
    assert len(cfg.stages) == 2  # type: ignore[attr-defined]


def _nested_run(tmp: Path, tag: int) -> object:
    tiny_mlp(tmp / "m.onnx")
    np.save(tmp / "val.npy", np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    cfg = _config(tmp, "m.onnx", [{"type": "fuse"}, {"type": "nested_for_test", "tag": tag}])
    return run_pipeline(cfg)  # type: ignore[arg-type]


def test_sub_steps_are_staged_recorded_and_cached(tmp_path: Path) -> None:
    run = _nested_run(tmp_path, tag=0)
    parent = tmp_path / "work" / "02-nested_for_test"
    rec = json.loads((parent / "stage.json").read_text())
    assert rec["steps"] == [
        {"index": 1, "stage": "fuse", "cached": False},
        {"index": 2, "stage": "validate", "cached": False},
    ]
    assert rec["metrics"]["history"] == ["fuse"] and rec["metrics"]["first_is_input"] is True
    assert rec["gates"][0]["passed"] is True and "parity" in rec["gates"][0]["detail"]
    for step in ("01-fuse", "02-validate"):
        sub = json.loads((parent / "steps" / step / "stage.json").read_text())
        assert sub["schema"] == "trtforge.stage/1" and sub["cache_key"]
    final = run.final  # type: ignore[attr-defined]
    assert final.path == parent / "steps" / "01-fuse" / "model.onnx" and final.path.is_file()
    assert not list((tmp_path / "work").glob(".*staging*")) and not list(parent.glob("steps/.*staging*"))

    again = _nested_run(tmp_path, tag=1)  # the parent's key changed; its sub-steps' did not
    rec = json.loads((parent / "stage.json").read_text())
    assert [s.cached for s in again.stages] == [True, False]  # type: ignore[attr-defined]
    assert [s["cached"] for s in rec["steps"]] == [True, True]
    assert (parent / "steps" / "01-fuse" / "model.onnx").is_file()

    third = _nested_run(tmp_path, tag=1)
    assert [s.cached for s in third.stages] == [True, True]  # type: ignore[attr-defined]


def test_run_stage_outside_a_pipeline_and_history_lookups(tmp_path: Path) -> None:
    art = Artifact.from_onnx_path(tiny_mlp(tmp_path / "m.onnx"))
    ctx = StageContext(out_dir=tmp_path / "out", reference=art)
    (tmp_path / "out").mkdir()
    result = ctx.run_stage("fuse", None, art)
    assert result.artifact.path.parent == tmp_path / "out" / "steps" / "01-fuse"
    assert result.artifact.kind == ArtifactKind.ONNX and ctx.steps == 1
    with pytest.raises(StageError, match="no earlier stage 'prune' ran; stages so far: none"):
        ctx.artifact_of("prune")
    with pytest.raises(ConfigError, match="sub-step 'export' takes torch models, not onnx"):
        ctx.run_stage("export", None, art)
