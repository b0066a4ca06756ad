"""``trtforge run``: the stages of a ``trtforge.toml`` in order, cached by content hash.

Config format (paths relative to the TOML file)::

    [pipeline]
    model = "model.pt2"                 # .onnx, .pt2, TorchScript, or package.module:factory
    weights = "weights.pt"              # state_dict for module:factory (optional)
    workdir = "runs/digits"             # default work directory (-w overrides)
    calibration_data = "data/calib.npz" # optional
    validation_data = "data/val.npz"    # optional

    [[stage]]
    type = "export"                     # any registered stage; other keys are its config
    [[stage]]
    type = "fuse"

Each stage writes ``WORKDIR/NN-<type>/`` (model + ``stage.json``). A stage whose cache key
(input hash + stage + config + data hashes + tool versions) matches its ``stage.json`` is
skipped. A stage whose gate fails stops the pipeline (exit 1); the report is still written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trtforge.pipeline.artifact import Artifact, ArtifactKind, kind_of_path, sha256_file
from trtforge.pipeline.config import from_dict, read_toml, to_dict
from trtforge.pipeline.errors import ConfigError, InputError, TrtforgeError
from trtforge.pipeline.registry import get_stage
from trtforge.pipeline.stage import (
    DataPaths,
    Gate,
    ProgressFn,
    Stage,
    StageContext,
    StageOutput,
    StageResult,
    _no_progress,
)
from trtforge.pipeline.workspace import STAGE_RECORD, Workspace, is_inside, write_json_atomic

log = logging.getLogger(__name__)

PATH_KEYS_SUFFIXES = ("_data", "_path", "_file", "_dir")
PATH_KEYS = {"plan", "weights", "tolerances", "plan_out"}


@dataclass(frozen=True)
class PipelineSection:
    model: str
    weights: str | None = None
    workdir: str = "runs/trtforge"
    calibration_data: str | None = None
    validation_data: str | None = None
    name: str = "trtforge"


@dataclass(frozen=True)
class StageSpec:
    type: str
    config: Any


@dataclass(frozen=True)
class PipelineConfig:
    pipeline: PipelineSection
    stages: tuple[StageSpec, ...]
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": to_dict(self.pipeline),
            "stage": [{"type": s.type, **to_dict(s.config)} for s in self.stages],
        }


def load_pipeline_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a trtforge.toml; relative paths resolve against its directory."""
    p = Path(path)
    raw = read_toml(p)
    return pipeline_config_from_dict(raw, base=p.parent, where=str(p), overrides=overrides)


def pipeline_config_from_dict(
    raw: Mapping[str, Any], base: Path, where: str, overrides: Mapping[str, Any] | None = None
) -> PipelineConfig:
    unknown = sorted(set(raw) - {"pipeline", "stage"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {unknown[0]!r}; valid keys are: pipeline, stage")
    if "pipeline" not in raw:
        raise ConfigError(f'{where}: missing [pipeline] table; add one with at least model = "..."')
    section = dict(raw["pipeline"])
    section.update({k: v for k, v in (overrides or {}).items() if v is not None})
    section = _resolve_paths(
        section, base, keys={"model", "weights", "workdir", "calibration_data", "validation_data"}
    )
    pipe = from_dict(PipelineSection, section, f"{where}: [pipeline]")
    tables = raw.get("stage", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f'{where}: no [[stage]] tables; add at least one, e.g. [[stage]] type = "fuse"')
    stages = []
    for i, table in enumerate(tables, start=1):
        table = dict(table)
        kind = table.pop("type", None)
        if not isinstance(kind, str):
            raise ConfigError(f'{where}: stage {i} has no type; add type = "fuse" (or another stage)')
        cls = _stage_class(kind, f"{where}: stage {i}")
        table = _resolve_paths(table, base, keys=None)
        stages.append(StageSpec(kind, from_dict(cls.config_cls, table, f"{where}: stage {i} ({kind})")))
    check_chain(pipe.model, stages, where)
    return PipelineConfig(pipe, tuple(stages), Path(where) if Path(where).exists() else None)


def check_chain(model: str, stages: Sequence[StageSpec], where: str) -> list[ArtifactKind]:
    """The artifact kind after each stage; ``ConfigError`` naming both stages where one cannot take
    what the one before it produces (checked at load, so ``--dry-run`` refuses it too)."""
    kind = kind_of_path(model)
    made_by = f"the input model {model}"
    kinds = []
    for i, spec in enumerate(stages, start=1):
        cls = get_stage(spec.type)
        if kind not in cls.input_kinds:
            takes = " or ".join(str(k) for k in cls.input_kinds)
            raise ConfigError(
                f"{where}: stage {i} ({spec.type}) takes {takes} models, but {made_by} is {_a(kind)} model; "
                "reorder the stages or change the options that decide that kind"
            )
        produced = cls.produces(spec.config, kind)
        if cls.output_kind is not None:  # pass-through stages (validate, bench) keep the source
            options = cls.kind_options(spec.config)
            made_by = f"the output of stage {i} ({spec.type}{', ' + options if options else ''})"
        kind = produced
        kinds.append(kind)
    return kinds


def _stage_class(kind: str, where: str) -> type[Stage[Any]]:
    try:
        return get_stage(kind)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _resolve_paths(table: dict[str, Any], base: Path, keys: set[str] | None) -> dict[str, Any]:
    out = dict(table)
    for k, v in table.items():
        is_path = k in keys if keys is not None else (k in PATH_KEYS or k.endswith(PATH_KEYS_SUFFIXES))
        if is_path and isinstance(v, str) and v and not _is_module_spec(v) and not Path(v).is_absolute():
            out[k] = str((base / v).resolve())
    return out


def _is_module_spec(v: str) -> bool:
    return ":" in v and not Path(v).exists() and not v.endswith((".onnx", ".pt2", ".pt"))


def _a(kind: ArtifactKind) -> str:
    return f"{'a' if kind == ArtifactKind.TORCH else 'an'} {kind}"


def tool_versions() -> dict[str, str]:
    """Versions of the tools that shape outputs (from package metadata; imports nothing heavy)."""
    from importlib import metadata

    out = {}
    for dist in (
        "trtforge",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxslim",
        "onnx-ir",
        "polygraphy",
        "numpy",
        "torch",
        "tensorrt",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _hash_path(p: Path | None) -> str | None:
    if p is None:
        return None
    if p.is_dir():  # subdirectories too: sequences of step files
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode())
            h.update(sha256_file(f).encode())
        return h.hexdigest()
    if p.suffix == ".txt" and p.is_file():  # a list of data files: the files it names count too
        from trtforge.calibration.data import data_files
        from trtforge.calibration.errors import DataError

        h = hashlib.sha256(sha256_file(p).encode())
        try:
            for f in data_files(p):
                h.update(sha256_file(f).encode())
        except DataError:
            pass  # the stage reports the broken list
        return h.hexdigest()
    return sha256_file(p) if p.is_file() else None


def cache_key(stage: Stage[Any], artifact: Artifact, ctx: StageContext, versions: Mapping[str, str]) -> str:
    payload = {
        "stage": stage.name,
        "config": to_dict(stage.config),
        "input": artifact.sha256,
        "reference": ctx.reference.sha256 if ctx.reference else None,
        "data": {
            "calibration": _hash_path(ctx.data.calibration),
            "validation": _hash_path(ctx.data.validation),
        },
        "extra": stage.cache_inputs(ctx),
        "tools": dict(versions),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageRun:
    index: int
    name: str
    cached: bool
    duration_s: float
    record: dict[str, Any]

    @property
    def gates(self) -> list[Gate]:
        return [Gate(**g) for g in self.record.get("gates", [])]


@dataclass
class PipelineRun:
    workdir: Path
    config: PipelineConfig
    stages: list[StageRun] = field(default_factory=list)
    final: Artifact | None = None
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(g.passed for s in self.stages for g in s.gates)


def run_pipeline(
    cfg: PipelineConfig,
    workdir: str | Path | None = None,
    *,
    force: bool = False,
    progress: ProgressFn = _no_progress,
) -> PipelineRun:
    """Run every stage in order (skipping cache hits); stop after a stage whose gate failed."""
    from trtforge.pipeline.api import load_artifact

    t0 = time.perf_counter()
    ws = Workspace(workdir or cfg.pipeline.workdir)
    ws.ensure()
    data = DataPaths(
        calibration=_existing(cfg.pipeline.calibration_data, "calibration_data"),
        validation=_existing(cfg.pipeline.validation_data, "validation_data"),
    )
    artifact = load_artifact(cfg.pipeline.model, cfg.pipeline.weights)
    reference = artifact if artifact.kind == "onnx" else None
    versions = tool_versions()
    run = PipelineRun(ws.root, cfg)
    done: list[str] = []
    history: list[StageOutput] = []
    for index, spec in enumerate(cfg.stages, start=1):
        stage = get_stage(spec.type)(spec.config)
        progress(f"stage {index}/{len(cfg.stages)}: {spec.type}", index - 1, len(cfg.stages))
        ctx = StageContext(
            out_dir=ws.root,
            reference=reference,
            data=data,
            progress=progress,
            previous=tuple(done),
            history=tuple(history),
        )
        key = cache_key(stage, artifact, ctx, versions)
        try:
            stage_run, artifact = _run_or_reuse(ws, index, stage, artifact, ctx, _Cache(key, force, versions))
        except TrtforgeError as exc:
            _name_stage(exc, index, spec.type)
            raise
        run.stages.append(stage_run)
        done.append(spec.type)
        history.append(StageOutput(index, spec.type, artifact))
        if reference is None and artifact.kind == "onnx":
            reference = artifact
        if not all(stage_run.gates):
            log.warning("stage %s: a gate failed; stopping the pipeline", spec.type)
            break
    progress("pipeline", len(cfg.stages), len(cfg.stages))
    run.final = artifact
    run.wall_s = time.perf_counter() - t0
    return run


def _name_stage(exc: TrtforgeError, index: int, stage: str) -> None:
    """Prefix ``exc``'s message with the stage it stopped (in place: type and exit code stay), so a
    refusal about a workdir file (``NN-fuse/model.onnx``) says which stage of the config refused."""
    label = f"stage {index} ({stage})"
    text = str(exc)
    if not text.startswith(label) and not text.startswith(f"stage '{stage}'"):
        exc.args = (f"{label}: {text}", *exc.args[1:])


def _existing(path: str | None, key: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {key} not found; fix [pipeline].{key} in the config")
    return p


@dataclass(frozen=True)
class _Cache:
    """How one stage run consults the cache: its key, ``--force``, the tool versions it records."""

    key: str
    force: bool
    versions: Mapping[str, str]


def _run_or_reuse(
    ws: Workspace,
    index: int,
    stage: Stage[Any],
    artifact: Artifact,
    ctx: StageContext,
    cache: _Cache,
    previous: Path | None = None,
) -> tuple[StageRun, Artifact]:
    """Reuse the stage's record in ``previous`` (default: its folder in ``ws``) when the key matches,
    else run it in a staging folder that replaces ``ws``'s ``NN-<stage>/`` when it succeeded."""
    final_dir = ws.stage_dir(index, stage.name)
    hit = None if cache.force else _reuse(previous or final_dir, final_dir, stage, artifact, cache.key)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    with ws.staging(index, stage.name) as tmp:
        steps = _SubSteps(tmp / "steps", final_dir / "steps", cache, stage.name)
        ctx.out_dir, ctx.sub_runner, ctx.steps = tmp, steps, 0
        result = stage.run(artifact, ctx)
        duration = time.perf_counter() - t0
        out_art, rel = _published_artifact(result.artifact, artifact, stage, tmp, final_dir)
        record = {
            "schema": "trtforge.stage/1",
            "stage": stage.name,
            "index": index,
            "cache_key": cache.key,
            "config": to_dict(stage.config),
            "input": {"path": str(artifact.path), "sha256": artifact.sha256, "kind": str(artifact.kind)},
            "output": {**out_art.to_dict(), "relpath": rel},
            "modified": result.modified,
            "metrics": _jsonable(dict(result.metrics)),
            "gates": [g.to_dict() for g in result.gates],
            "steps": steps.done,
            "tools": dict(cache.versions),
            "duration_s": round(duration, 4),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(tmp / STAGE_RECORD, record)
    return StageRun(index, stage.name, False, duration, record), out_art


def _reuse(
    where: Path, final_dir: Path, stage: Stage[Any], upstream: Artifact, key: str
) -> tuple[StageRun, Artifact] | None:
    """A cache hit from the record in ``where`` (copied to ``final_dir`` when elsewhere), or None."""
    rec = Workspace.read_record(where)
    if not rec or rec.get("cache_key") != key:
        return None
    if where != final_dir:  # a sub-step recorded by the parent's previous run
        if _artifact_from_record(where, rec, upstream) is None:
            return None
        shutil.copytree(where, final_dir)
    cached = _artifact_from_record(final_dir, rec, upstream)
    if cached is None:
        return None
    log.info("stage %s: cache hit", stage.name)
    return StageRun(int(rec.get("index", 0)), stage.name, True, 0.0, rec), cached


def _published_artifact(
    out_art: Artifact, upstream: Artifact, stage: Stage[Any], tmp: Path, final_dir: Path
) -> tuple[Artifact, str | None]:
    """The output artifact as it will be once the staging folder is renamed, and its relative path."""
    produced = is_inside(out_art.path, tmp)
    rel = str(out_art.path.resolve().relative_to(tmp.resolve())) if produced else None
    prov = ({"stage": stage.name, "config": to_dict(stage.config), "input_sha256": upstream.sha256},)
    path = (final_dir / rel) if rel else out_art.path
    return replace(out_art, provenance=upstream.provenance + prov, path=path), rel


class _SubSteps:
    """``StageContext.sub_runner`` of one running stage: its sub-steps go to ``root`` (inside its
    staging folder) as ``KK-<stage>/`` and are cached against the same folders in ``previous``
    (the parent's last finished run)."""

    def __init__(self, root: Path, previous: Path, cache: _Cache, parent: str) -> None:
        self.root, self.previous, self.cache, self.parent = root, previous, cache, parent
        self.done: list[dict[str, Any]] = []

    def __call__(self, stage: Stage[Any], artifact: Artifact, parent: StageContext) -> StageResult:
        ws = Workspace(self.root)
        self.root.mkdir(exist_ok=True)
        k = parent.steps
        ctx = replace(parent, out_dir=self.root, previous=(*parent.previous, self.parent), sub_runner=None)
        key = cache_key(stage, artifact, ctx, self.cache.versions)
        cache = _Cache(key, self.cache.force, self.cache.versions)
        where = self.previous / ws.stage_dir(k, stage.name).name
        run, out = _run_or_reuse(ws, k, stage, artifact, ctx, cache, previous=where)
        self.done.append({"index": k, "stage": stage.name, "cached": run.cached})
        rec = run.record
        return StageResult(out, rec.get("metrics") or {}, bool(rec.get("modified")), tuple(run.gates))


def _artifact_from_record(stage_dir: Path, rec: Mapping[str, Any], upstream: Artifact) -> Artifact | None:
    """Rebuild the output artifact of a cached stage, or None when its file is gone or changed."""
    out = rec.get("output") or {}
    rel = out.get("relpath")
    if rel is None:  # pass-through stage (validate, bench): output is the input
        return upstream if out.get("sha256") == upstream.sha256 else None
    path = stage_dir / rel
    if not path.is_file():
        return None
    from trtforge.pipeline.artifact import sha256_model_files

    if sha256_model_files(path) != out.get("sha256"):
        return None
    if out.get("kind") == "onnx":
        art = Artifact.from_onnx_path(path)
    else:
        art = Artifact(path, ArtifactKind(str(out.get("kind"))), str(out.get("sha256")))
    prov = tuple(out.get("provenance") or ())
    return replace(art, provenance=prov)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)
