"""Runner: cache hits by content hash, --force, resume after an interrupted stage, gate stops, report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import onnx
import pytest

from tests.conftest import sha, tiny_mlp
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.onnx_io import save_onnx
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.runner import load_pipeline_config, run_pipeline
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult
from trtforge.pipeline.validation.report import build_report, render_markdown

CALLS: list[str] = []


@dataclass(frozen=True)
class RenameConfig:
    suffix: str = "x"
    interrupt: bool = False
    fail_gate: bool = False


@register_stage("rename_for_test")
class RenameStage(Stage[RenameConfig]):
    """Test stage: copies the model with a new graph name (a real, observable modification)."""

    config_cls: ClassVar[type] = RenameConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        CALLS.append(self.config.suffix)
        model = onnx.load(str(artifact.path))
        model.graph.name += self.config.suffix
        out = ctx.out_dir / "model.onnx"
        save_onnx(model, out)
        if self.config.interrupt:
            raise KeyboardInterrupt
        gate = Gate("always", not self.config.fail_gate, detail="planted" if self.config.fail_gate else "")
        return StageResult(Artifact.from_onnx_path(out), {"graph_name": model.graph.name}, True, (gate,))


def _toml(tmp: Path, stages: str) -> Path:
    tiny_mlp(tmp / "m.onnx")
    cfg = tmp / "trtforge.toml"
    cfg.write_text(f'[pipeline]\nmodel = "m.onnx"\nworkdir = "w"\n{stages}')
    return cfg


TWO = '[[stage]]\ntype = "rename_for_test"\nsuffix = "a"\n[[stage]]\ntype = "rename_for_test"\nsuffix = "b"\n'


def test_second_run_hits_cache_and_force_reruns(tmp_path: Path) -> None:
    cfg = load_pipeline_config(_toml(tmp_path, TWO))
    CALLS.clear()
    first = run_pipeline(cfg)
    assert CALLS == ["a", "b"] and [s.cached for s in first.stages] == [False, False]
    assert first.final is not None and onnx.load(str(first.final.path)).graph.name.endswith("ab")
    second = run_pipeline(cfg)
    assert CALLS == ["a", "b"] and [s.cached for s in second.stages] == [True, True]
    assert second.final is not None and second.final.sha256 == first.final.sha256
    run_pipeline(cfg, force=True)
    assert CALLS == ["a", "b", "a", "b"]


def test_changed_input_invalidates_cache(tmp_path: Path) -> None:
    cfg_path = _toml(tmp_path, TWO)
    run_pipeline(load_pipeline_config(cfg_path))
    tiny_mlp(tmp_path / "m.onnx", seed=1)
    CALLS.clear()
    run = run_pipeline(load_pipeline_config(cfg_path))
    assert CALLS == ["a", "b"] and not any(s.cached for s in run.stages)


def test_interrupted_stage_leaves_nothing_and_next_run_resumes(tmp_path: Path) -> None:
    stages = TWO.replace('suffix = "b"\n', 'suffix = "b"\ninterrupt = true\n')
    cfg = load_pipeline_config(_toml(tmp_path, stages))
    CALLS.clear()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg)
    work = tmp_path / "w"
    assert sorted(p.name for p in work.iterdir()) == ["01-rename_for_test"]  # no half-written 02-*
    resumed = run_pipeline(load_pipeline_config(_toml(tmp_path, TWO)))
    assert [s.cached for s in resumed.stages] == [True, False]
    assert CALLS == ["a", "b", "b"]


def test_failed_gate_stops_pipeline_and_report_says_failed(tmp_path: Path) -> None:
    stages = TWO.replace('suffix = "a"\n', 'suffix = "a"\nfail_gate = true\n')
    cfg = load_pipeline_config(_toml(tmp_path, stages))
    run = run_pipeline(cfg)
    assert len(run.stages) == 1 and not run.passed
    report = build_report(run.workdir, [s.record for s in run.stages])
    assert report["passed"] is False and report["gates"][0]["detail"] == "planted"
    assert "FAILED" in render_markdown(report)
    json.dumps(report)


def test_input_model_is_never_modified(tmp_path: Path) -> None:
    cfg_path = _toml(tmp_path, TWO)
    before = sha(tmp_path / "m.onnx")
    run_pipeline(load_pipeline_config(cfg_path))
    assert sha(tmp_path / "m.onnx") == before


@pytest.mark.parametrize(
    "body,match",
    [
        (
            '[[stage]]\ntype = "no_such_stage"\n',
            "unknown stage 'no_such_stage'; valid stages are: .*rename_for_test",
        ),
        (
            '[[stage]]\ntype = "rename_for_test"\nsufix = "a"\n',
            "unknown key 'sufix'; valid keys are: .*suffix",
        ),
        ('[[stage]]\nsuffix = "a"\n', "stage 1 has no type"),
        ("", "no \\[\\[stage\\]\\] tables"),
        ('[extra]\n[[stage]]\ntype = "rename_for_test"\n', "unknown top-level key 'extra'"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        load_pipeline_config(_toml(tmp_path, body))
    assert "trtforge.toml" in str(err.value)


def test_cli_run_bad_config_exit_2(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cfg = _toml(tmp_path, '[[stage]]\ntype = "nope"\n')
    code, _out, err = cli("run", cfg)
    assert code == 2 and "unknown stage 'nope'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_run_dry_run_prints_resolved_config(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cfg = _toml(tmp_path, TWO)
    code, out, _ = cli("run", cfg, "--dry-run", "--json")
    data = json.loads(out)
    assert code == 0 and [s["suffix"] for s in data["stage"]] == ["a", "b"]
    assert data["pipeline"]["model"] == str((tmp_path / "m.onnx").resolve())
    assert not (tmp_path / "w").exists()


def test_cli_run_gate_failure_exit_1_and_report_written(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cfg = _toml(tmp_path, TWO.replace('suffix = "a"\n', 'suffix = "a"\nfail_gate = true\n'))
    code, _out, err = cli("run", cfg, "-q")
    assert code == 1 and "always" in err
    assert json.loads((tmp_path / "w" / "report.json").read_text())["passed"] is False
