"""The verbs of trtforge as plain Python functions; the CLI parses flags, calls these, and prints.

``import trtforge`` re-exports (lazily) every public function defined here; a test keeps
``trtforge.__all__`` equal to them::

    import trtforge

    result = trtforge.run("examples/digits/trtforge.toml", workdir="runs/digits")
    print(result.passed, result.final)
    fused = trtforge.run_stage("fuse", {"atol": 1e-5}, "model.onnx", "model.fused.onnx")
    print(trtforge.inspect("model.fused.onnx")["ops"])

A stage's config is its dataclass (``trtforge.pipeline.stages.<stage>.<Name>Config``), a mapping
with the keys of its ``[[stage]]`` table, or None for the defaults. Errors are ``TrtforgeError``
subclasses (``trtforge.pipeline.errors``): bad input, a missing environment, a failed stage contract.
A failed gate is not an error here: results say whether they ``passed``.

``run_stage`` runs one stage standalone: the stage writes into a staging directory beside
the requested output, and only a finished stage's files are moved into place (atomic
rename), so an interrupted or failed call leaves no half-written output.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtforge.pipeline.artifact import Artifact, ArtifactKind
from trtforge.pipeline.errors import ConfigError, InputError
from trtforge.pipeline.onnx_io import check_output_path, has_external_data, load_onnx, save_onnx
from trtforge.pipeline.registry import get_stage
from trtforge.pipeline.stage import DataPaths, ProgressFn, StageContext, StageResult, _no_progress
from trtforge.pipeline.workspace import is_inside

if TYPE_CHECKING:
    from trtforge.pipeline.runner import PipelineConfig, StageRun
    from trtforge.pipeline.stages.bench import BenchResult

TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".zip", ".torchscript")


def load_artifact(model: str | Path, weights: str | Path | None = None) -> Artifact:
    """An Artifact for a user's model: ``.onnx`` file, torch file, ``package.module:factory``, or a
    TensorRT engine (``.engine``/``.plan``/``.trt``; its inputs are read from its metadata when run)."""
    from trtforge.pipeline.artifact import sha256_file
    from trtforge.pipeline.backends.tensorrt import is_engine_path

    text = str(model)
    p = Path(text)
    if is_engine_path(p):
        if not p.is_file():
            raise InputError(f"{p}: engine file not found; build it with trtforge build --target tensorrt")
        return Artifact(p, ArtifactKind.ENGINE, sha256_file(p))
    if p.suffix == ".onnx" or (p.exists() and p.is_file() and _looks_onnx(p)):
        return Artifact.from_onnx_path(p)
    if p.suffix in TORCH_SUFFIXES or (":" in text and not p.exists()):
        from trtforge.pipeline.stages.export import torch_artifact

        return torch_artifact(text, None if weights is None else str(weights))
    if p.is_dir():
        raise InputError(
            f"{p}: is a directory; pass a model file (.onnx, .pt2, TorchScript) or package.module:factory"
        )
    if not p.exists():
        raise InputError(
            f"{p}: file not found; pass an .onnx, .pt2 or TorchScript file or package.module:factory"
        )
    raise InputError(
        f"{p}: unknown model type {p.suffix!r}; pass .onnx, .pt2, a TorchScript file or module:factory"
    )


def _looks_onnx(path: Path) -> bool:
    try:
        load_onnx(path, check=False, load_external=False)
    except InputError:
        return False
    return True


def stage_names() -> list[str]:
    """The registered stages (the ``type`` values a ``[[stage]]`` table takes), sorted."""
    from trtforge.pipeline.registry import stage_names as registered

    return registered()


def _stage_config(stage: str, config: Any = None) -> Any:
    """``config`` as ``stage``'s config dataclass: None -> the defaults, a mapping -> parsed strictly."""
    cls = get_stage(stage).config_cls
    if config is None:
        return cls()
    if isinstance(config, Mapping):
        from trtforge.pipeline.config import from_dict

        return from_dict(cls, config, stage)
    if not isinstance(config, cls):
        raise ConfigError(
            f"{stage}: config is a {type(config).__name__}; pass a {cls.__name__}, a mapping or None"
        )
    return config


def run_stage(
    stage: str,
    config: Any,
    model: str | Path | Artifact,
    output: str | Path | None,
    *,
    data: DataPaths | None = None,
    reference: str | Path | Artifact | None = None,
    extra_outputs: Mapping[str, str | Path] | None = None,
    progress: ProgressFn = _no_progress,
) -> StageResult:
    """Run one stage on ``model`` and move its model (and ``extra_outputs``) into place.

    ``config``: the stage's config dataclass, a mapping of its keys, or None (defaults).
    ``output``: where the stage's model goes (None: it stays in a temporary directory, for stages
    that only measure, like validate). ``reference``: the model parity is measured against
    (default: ``model`` when it is ONNX). ``extra_outputs``: other files of the stage
    (name in its output directory -> destination), e.g. ``{"plan.json": "prune-plan.json"}``.
    When a gate of the stage failed, nothing is written (the result still carries the metrics and
    gates; its artifact path then names a folder that no longer exists).
    """
    cfg = _stage_config(stage, config)
    stage_obj = get_stage(stage)(cfg)
    artifact = model if isinstance(model, Artifact) else load_artifact(model)
    out = check_output_path(output) if output is not None else None
    if out is not None and out.resolve() == artifact.path.resolve():
        raise InputError(f"{out}: the output would overwrite the input model; choose another -o")
    extras = {k: check_output_path(v) for k, v in (extra_outputs or {}).items()}
    ref = _reference(reference) if reference is not None else (artifact if artifact.kind == "onnx" else None)
    with tempfile.TemporaryDirectory(prefix=".trtforge-", dir=out.parent if out is not None else None) as tmp:
        ctx = StageContext(out_dir=Path(tmp), reference=ref, data=data or DataPaths(), progress=progress)
        result = stage_obj.run(artifact, ctx)
        if not all(result.gates):
            return result  # a failed gate publishes nothing: the staging folder goes, -o is untouched
        if out is not None and is_inside(result.artifact.path, Path(tmp)):
            result = _publish(result, out)
        for name, dest in extras.items():
            src = Path(tmp) / name
            if src.exists():
                os.replace(src, dest)
    return result


#: the name older code (benchmarks, tests) calls ``run_stage`` by
run_single = run_stage


def _reference(reference: str | Path | Artifact) -> Artifact:
    """A reference model: an Artifact as given, an engine by its metadata, else an ONNX file."""
    if isinstance(reference, Artifact):
        return reference
    from trtforge.pipeline.backends.tensorrt import is_engine_path

    return load_artifact(reference) if is_engine_path(reference) else Artifact.from_onnx_path(reference)


def _publish(result: StageResult, out: Path) -> StageResult:
    src = result.artifact.path
    if result.artifact.kind == "onnx" and has_external_data(load_onnx(src, check=False, load_external=False)):
        save_onnx(load_onnx(src, check=False), out)  # rewrites external data beside ``out``
    else:
        os.replace(src, out)
    from dataclasses import replace

    return replace(result, artifact=replace(result.artifact, path=out))


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` did: the report (also written as report.json/report.md) and the final model."""

    workdir: Path
    report: dict[str, Any]
    final: Artifact | None
    stages: tuple[StageRun, ...]
    report_json: Path
    report_md: Path

    @property
    def passed(self) -> bool:
        """Every gate of every stage that ran held (the pipeline stops after a failed gate)."""
        return bool(self.report["passed"])

    @property
    def failed_gates(self) -> list[str]:
        """``stage.gate`` for each gate that failed."""
        return [f"{g['stage']}.{g['name']}" for g in self.report["gates"] if not g["passed"]]


def load_config(
    config: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> PipelineConfig:
    """A pipeline config from a trtforge.toml (paths relative to it) or from its tables as a mapping
    (``{"pipeline": {...}, "stage": [{"type": "fuse"}, ...]}``, paths relative to the working directory).

    ``overrides`` replace keys of ``[pipeline]`` (``model``, ``weights``, ``workdir``,
    ``calibration_data``, ``validation_data``); None values are ignored.
    """
    from trtforge.pipeline.runner import load_pipeline_config, pipeline_config_from_dict

    if isinstance(config, Mapping):
        return pipeline_config_from_dict(config, Path.cwd(), "config", _resolved(overrides))
    return load_pipeline_config(config, _resolved(overrides))


def _resolved(overrides: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Override paths given by a caller are relative to the working directory, not to the config."""
    if overrides is None:
        return None
    return {
        k: str(Path(v).resolve()) if isinstance(v, (str, Path)) and _is_local_path(k, v) else v
        for k, v in overrides.items()
        if v is not None
    }


def _is_local_path(key: str, value: str | Path) -> bool:
    text = str(value)
    if key == "model" and ":" in text and not Path(text).exists():
        return False  # package.module:factory
    return key in ("model", "weights", "workdir", "calibration_data", "validation_data")


def run(
    config: str | Path | Mapping[str, Any] | PipelineConfig,
    workdir: str | Path | None = None,
    *,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    progress: ProgressFn = _no_progress,
) -> RunResult:
    """Run a pipeline (a trtforge.toml path, its tables as a mapping, or a loaded config) into
    ``workdir`` (default: its ``[pipeline].workdir``) and write report.json and report.md there.

    Stages whose cache key matches their ``stage.json`` are reused unless ``force``. The pipeline
    stops after a stage whose gate failed; the result then has ``passed`` False.
    """
    from trtforge.pipeline.runner import PipelineConfig, run_pipeline
    from trtforge.pipeline.validation.report import build_report, write_report

    if isinstance(config, PipelineConfig):
        cfg = _with_overrides(config, overrides)
    else:
        cfg = load_config(config, overrides)
    done = run_pipeline(cfg, workdir, force=force, progress=progress)
    data = build_report(
        done.workdir,
        [s.record for s in done.stages],
        {s.index: s.cached for s in done.stages},
        cfg.to_dict(),
        done.wall_s,
    )
    jpath, mpath = write_report(done.workdir, data)
    return RunResult(done.workdir, data, done.final, tuple(done.stages), jpath, mpath)


def _with_overrides(config: PipelineConfig, overrides: Mapping[str, Any] | None) -> PipelineConfig:
    changes = _resolved(overrides)
    if not changes:
        return config
    from trtforge.pipeline.config import from_dict, to_dict
    from trtforge.pipeline.runner import PipelineSection

    section = from_dict(PipelineSection, {**to_dict(config.pipeline), **changes}, "[pipeline] overrides")
    return dataclasses.replace(config, pipeline=section)


def report(workdir: str | Path) -> dict[str, Any]:
    """Rebuild ``workdir``/report.json and report.md from its stage records; return the report."""
    from trtforge.pipeline.validation.report import build_report, records_from_workdir, write_report

    root = Path(workdir)
    if not root.is_dir():
        raise InputError(f"{root}: not a work directory; pass the -w directory of a trtforge run")
    records = records_from_workdir(root)
    if not records:
        raise InputError(f"{root}: no finished stages (no NN-<stage>/stage.json); run `trtforge run` first")
    data = build_report(root, records)
    write_report(root, data)
    return data


def bench(
    models: str | Path | Sequence[str | Path],
    config: Any = None,
    *,
    data: str | Path | None = None,
    progress: ProgressFn = _no_progress,
) -> BenchResult:
    """Time ``models`` (one or several; ONNX on ONNX Runtime CPU, TensorRT engines on their GPU)
    interleaved in one process; ratios are against the first model.

    ``config``: a ``BenchConfig``, a mapping of its keys (``batches``, ``threads``, ``warmup``,
    ``iters``, ``duration``, ``max_latency_ratio``) or None. ``data``: real inputs (.npy/.npz/dir);
    default seeded random inputs. ``result.to_dict()`` is the JSON ``trtforge bench --json`` prints;
    with ``max_latency_ratio`` the ``latency_ratio`` gate says whether every model kept it.
    """
    from trtforge.pipeline.stages.bench import measure

    if isinstance(models, (str, Path)):
        models = [models]
    return measure(list(models), _stage_config("bench", config), data=data, progress=progress)


def inspect(model: str | Path) -> dict[str, Any]:
    """An ONNX model's inputs/outputs, opsets, op counts, parameter count, size and hash.

    Nodes and op counts include the nodes of subgraphs (If branches, Loop/Scan bodies); parameters
    are the weight elements of initializers and of ``Constant`` nodes (some exporters hold every
    weight in one), not the int64 shape and index constants.
    """
    from trtforge.common.graphs import node_count, op_counts
    from trtforge.pipeline.artifact import IOSpec, sha256_model_files
    from trtforge.pipeline.graph.constants import parameter_count

    path = Path(model)
    proto = load_onnx(path)
    return {
        "path": str(path),
        "sha256": sha256_model_files(path),
        "size_bytes": path.stat().st_size,
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "io": IOSpec.from_onnx(proto).to_dict(),
        "nodes": node_count(proto),
        "ops": op_counts(proto),
        "parameters": parameter_count(proto),
    }
