"""The public Python API: ``import trtforge`` re-exports the verbs of ``trtforge.pipeline.api``."""

from __future__ import annotations

import inspect as pyinspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

import trtforge
from tests.conftest import sha, tiny_mlp
from trtforge.pipeline import api
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.errors import ConfigError, InputError
from trtforge.pipeline.onnx_io import save_onnx
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.runner import PipelineConfig
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult
from trtforge.pipeline.stages.bench import BenchResult
from trtforge.pipeline.stages.fuse import FuseConfig


@dataclass(frozen=True)
class GateConfig:
    passed: bool = True


@register_stage("gate_for_test")
class GateStage(Stage[GateConfig]):
    """Test stage: copies the model and reports one gate, passed or not as configured."""

    config_cls: ClassVar[type] = GateConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        import onnx

        out = ctx.out_dir / "model.onnx"
        save_onnx(onnx.load(str(artifact.path)), out)
        gate = Gate("planted", self.config.passed, detail="" if self.config.passed else "planted failure")
        return StageResult(Artifact.from_onnx_path(out), {}, False, (gate,))


def test_trtforge_exports_exactly_the_api_verbs_typed_and_documented() -> None:
    verbs = sorted(
        name
        for name, fn in vars(api).items()
        if pyinspect.isfunction(fn) and fn.__module__ == api.__name__ and fn.__name__ == name
        if not name.startswith("_")
    )
    assert sorted(trtforge.__all__) == verbs
    for name in trtforge.__all__:
        fn = getattr(trtforge, name)
        assert fn is getattr(api, name) and callable(fn) and fn.__doc__, name
        sig = pyinspect.signature(fn)
        assert sig.return_annotation is not pyinspect.Signature.empty, name
        untyped = [p for p in sig.parameters.values() if p.annotation is pyinspect.Parameter.empty]
        assert not untyped, (name, untyped)
    with pytest.raises(AttributeError, match="public names: bench, inspect"):
        trtforge.no_such_verb  # noqa: B018
    assert api.run_single is api.run_stage  # the older name keeps working


def test_stage_names_lists_the_registered_stages() -> None:
    names = trtforge.stage_names()
    assert {"export", "fuse", "prune", "quantize", "convert_fp16", "build", "validate", "bench"} <= set(names)
    assert names == sorted(names)


def test_run_stage_takes_a_mapping_a_dataclass_or_none(tmp_path: Path) -> None:
    model = tiny_mlp(tmp_path / "m.onnx")
    before = sha(model)
    result = trtforge.run_stage("fuse", {"atol": 1e-3, "use_onnxslim": False}, model, tmp_path / "a.onnx")
    assert result and result.artifact.path == tmp_path / "a.onnx" and (tmp_path / "a.onnx").is_file()
    assert result.gates[0].name == "fuse_parity" and result.gates[0].threshold == 1e-3
    assert trtforge.run_stage("fuse", FuseConfig(seed=1), model, tmp_path / "b.onnx")
    assert trtforge.run_stage("fuse", None, str(model), str(tmp_path / "c.onnx"))
    assert sha(model) == before and not list(tmp_path.glob(".trtforge-*"))


def test_run_stage_errors(tmp_path: Path) -> None:
    model = tiny_mlp(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="fuse: unknown key 'atoll'; valid keys are: atol"):
        trtforge.run_stage("fuse", {"atoll": 1.0}, model, tmp_path / "o.onnx")
    with pytest.raises(ConfigError, match="config is a GateConfig; pass a FuseConfig"):
        trtforge.run_stage("fuse", GateConfig(), model, tmp_path / "o.onnx")
    with pytest.raises(ConfigError, match="unknown stage 'fusee'"):
        trtforge.run_stage("fusee", None, model, tmp_path / "o.onnx")
    with pytest.raises(InputError, match="overwrite the input model"):
        trtforge.run_stage("fuse", None, model, model)
    assert not (tmp_path / "o.onnx").exists()


def test_validate_stage_with_a_reference_path(tmp_path: Path) -> None:
    ref = tiny_mlp(tmp_path / "ref.onnx")
    cand = tiny_mlp(tmp_path / "cand.onnx", perturb=0.5)
    result = trtforge.run_stage("validate", {"random_data": True}, cand, None, reference=ref)
    assert not result and result.metrics["reference"] == str(ref)
    assert trtforge.run_stage("validate", {"random_data": True}, ref, None, reference=ref)


def _pipeline(tmp: Path, gate_passes: bool = True) -> Path:
    tiny_mlp(tmp / "m.onnx")
    cfg = tmp / "trtforge.toml"
    cfg.write_text(
        '[pipeline]\nmodel = "m.onnx"\nworkdir = "w"\n\n[[stage]]\ntype = "fuse"\n\n'
        f'[[stage]]\ntype = "gate_for_test"\npassed = {str(gate_passes).lower()}\n'
    )
    return cfg


def test_run_writes_the_report_and_caches(tmp_path: Path) -> None:
    result = trtforge.run(_pipeline(tmp_path))
    assert isinstance(result, api.RunResult) and result.passed and result.failed_gates == []
    assert result.workdir == tmp_path / "w" and result.final is not None and result.final.path.is_file()
    assert json.loads(result.report_json.read_text())["passed"] is True and result.report_md.is_file()
    assert [s["name"] for s in result.report["stages"]] == ["fuse", "gate_for_test"]
    again = trtforge.run(str(_pipeline(tmp_path)))
    assert [s.cached for s in again.stages] == [True, True]
    forced = trtforge.run(_pipeline(tmp_path), force=True)
    assert [s.cached for s in forced.stages] == [False, False]


def test_run_reports_a_failed_gate_without_raising(tmp_path: Path) -> None:
    result = trtforge.run(_pipeline(tmp_path, gate_passes=False), tmp_path / "elsewhere")
    assert not result.passed and result.failed_gates == ["gate_for_test.planted"]
    assert result.workdir == tmp_path / "elsewhere" and (tmp_path / "elsewhere" / "report.md").is_file()


def test_load_config_from_a_file_a_mapping_and_with_overrides(tmp_path: Path) -> None:
    path = _pipeline(tmp_path)
    cfg = trtforge.load_config(path)
    assert isinstance(cfg, PipelineConfig) and [s.type for s in cfg.stages] == ["fuse", "gate_for_test"]
    assert cfg.pipeline.model == str((tmp_path / "m.onnx").resolve())
    other = tiny_mlp(tmp_path / "other.onnx")
    assert trtforge.load_config(path, {"model": other}).pipeline.model == str(other.resolve())
    tables: dict[str, Any] = {"pipeline": {"model": str(other)}, "stage": [{"type": "fuse", "atol": 0.01}]}
    from_mapping = trtforge.load_config(tables)
    assert from_mapping.stages[0].config == FuseConfig(atol=0.01)
    with pytest.raises(ConfigError, match="unknown key 'atoll'"):
        trtforge.load_config({"pipeline": {"model": str(other)}, "stage": [{"type": "fuse", "atoll": 1}]})


def test_run_takes_a_loaded_config_and_overrides(tmp_path: Path) -> None:
    cfg = trtforge.load_config(_pipeline(tmp_path))
    other = tiny_mlp(tmp_path / "other.onnx", seed=3)
    result = trtforge.run(cfg, overrides={"model": other, "workdir": tmp_path / "w2"})
    assert result.passed and result.workdir == (tmp_path / "w2").resolve()
    assert result.report["stages"][0]["input"]["sha256"] == Artifact.from_onnx_path(other).sha256


def test_report_rebuilds_the_files(tmp_path: Path) -> None:
    result = trtforge.run(_pipeline(tmp_path))
    result.report_json.unlink()
    result.report_md.unlink()
    rebuilt = trtforge.report(result.workdir)
    assert rebuilt["passed"] is True and [s["name"] for s in rebuilt["stages"]] == ["fuse", "gate_for_test"]
    assert result.report_json.is_file() and result.report_md.is_file()
    with pytest.raises(InputError, match="not a work directory"):
        trtforge.report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no finished stages"):
        trtforge.report(tmp_path / "empty")


def test_inspect(tmp_path: Path) -> None:
    info = trtforge.inspect(tiny_mlp(tmp_path / "m.onnx"))
    assert info["ops"] == {"Gemm": 2, "Relu": 1} and info["nodes"] == 3
    assert info["parameters"] == 8 * 4 + 3 * 8 and info["opset"] == {"ai.onnx": 17}
    assert [t["name"] for t in info["io"]["inputs"]] == ["x"] and len(info["sha256"]) == 64
    with pytest.raises(InputError, match=r"nope\.onnx"):
        trtforge.inspect(tmp_path / "nope.onnx")


def test_bench_times_models_and_gates_on_the_ratio(tmp_path: Path) -> None:
    a = tiny_mlp(tmp_path / "a.onnx")
    b = tiny_mlp(tmp_path / "b.onnx", seed=1)
    result = trtforge.bench([a, b], {"batches": [1, 2], "warmup": 0, "iters": 3})
    assert isinstance(result, BenchResult) and result.passed and result.gates == ()
    out = result.to_dict()
    assert out["models"] == ["a.onnx", "b.onnx"] and len(out["results"]) == 4
    slow = trtforge.bench([a, b], {"warmup": 0, "iters": 3, "max_latency_ratio": 1e-9})
    assert not slow.passed and "b.onnx" in slow.gates[0].detail and "the first model" in slow.gates[0].detail
    alone = trtforge.bench(a, {"warmup": 0, "iters": 3, "max_latency_ratio": 1.0})
    assert alone.passed and "nothing to compare" in alone.gates[0].detail
    with pytest.raises(ConfigError, match="batches must be positive"):
        trtforge.bench([a], {"batches": [0]})


def test_bench_verb_and_bench_stage_share_one_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    from trtforge.pipeline.stages import bench as bench_stage

    calls: list[list[str]] = []
    real = bench_stage.measure

    def spy(models: Any, config: Any, **kw: Any) -> BenchResult:
        calls.append([getattr(m, "name", Path(str(m)).name) for m in models])
        return real(models, config, **kw)

    monkeypatch.setattr(bench_stage, "measure", spy)
    a = tiny_mlp(tmp_path / "a.onnx")
    code, out, err = cli("bench", a, "--iters", "3", "--warmup", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["models"] == ["a.onnx"]
    trtforge.run_stage("bench", {"iters": 3, "warmup": 0}, a, None)
    assert calls == [["a.onnx"], ["current"]]
