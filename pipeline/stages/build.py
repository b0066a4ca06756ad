"""The ``build`` stage: ONNX -> TensorRT engine (``--target tensorrt``) or a pre-optimized ONNX Runtime
model (``--target onnxruntime``), each with a JSON record beside it (``<artifact>.json``).

TensorRT: the GPU and TensorRT are looked for first (exit 3 with one line when missing, before any
TensorRT object exists); then custom ops are matched to plugins, profiles derived, legacy flags gated
on the version, and the engine built with the timing cache keyed by GPU + TensorRT version.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.artifact import Artifact, IOSpec, sha256_file, sha256_model_files
from pipeline.engine.profiles import ShapeProfile, derive_profiles
from pipeline.errors import ConfigError, InputError, StageError
from pipeline.registry import register_stage
from pipeline.stage import Stage, StageContext, StageResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    target: Literal["tensorrt", "onnxruntime"] = "tensorrt"
    #: one ``--shapes`` value per optimization profile (see pipeline.engine.profiles)
    shapes: tuple[str, ...] = ()
    workspace_mib: int | None = None
    opt_level: int = 3
    timing_cache_dir: Path | None = None  # default: TRTFORGE_CACHE_DIR (pipeline.config.env_cache_dir)
    sparse_weights: bool = False
    version_compatible: bool = False
    hardware_compatible: bool = False
    legacy_fp16: bool = False  # TensorRT 10 only
    legacy_calibration_file: Path | None = None  # TensorRT 10 only: implicit INT8 from this cache
    device: int = 0
    provider: Literal["cpu", "cuda"] = "cpu"  # onnxruntime target
    ort_format: Literal["onnx", "ort"] = "onnx"
    ort_opt_level: Literal["basic", "extended", "all"] = "extended"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.opt_level <= 5:
            raise ConfigError(f"build.opt_level: {self.opt_level} is not in 0..5 (TensorRT's default is 3)")
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise ConfigError(f"build.workspace_mib: {self.workspace_mib} must be a positive number of MiB")
        trt_only = [
            f.name
            for f in dataclasses.fields(self)
            if f.name in _TRT_ONLY and getattr(self, f.name) != f.default
        ]
        if self.target == "onnxruntime" and trt_only:
            raise ConfigError(
                f"build.{trt_only[0]} applies to --target tensorrt only; drop it or change target"
            )


_TRT_ONLY = (
    "shapes",
    "workspace_mib",
    "opt_level",
    "sparse_weights",
    "version_compatible",
    "hardware_compatible",
    "legacy_fp16",
    "legacy_calibration_file",
)


def check_custom_ops(model: Any, source: Path) -> list[str]:
    """Plugin ids for the model's custom ops; ``InputError`` naming each node that has no plugin."""
    from plugins.registry import list_plugins, missing_plugins, plugins_used

    missing = missing_plugins(model)
    if missing:
        nodes = ", ".join(f"{n.name or '?'!r} ({n.domain}::{n.op_type})" for n in missing)
        have = ", ".join(p.trt_id for p in list_plugins()) or "none"
        raise InputError(
            f"{source}: custom op node(s) {nodes} have no plugin; registered plugins: {have} "
            "(see trtforge plugins list)"
        )
    return [p.trt_id for p in plugins_used(model)]


def plan_profiles(artifact: Artifact, cfg: BuildConfig, model: Any) -> list[ShapeProfile]:
    iospec = artifact.iospec or IOSpec.from_onnx(model)
    return derive_profiles(iospec, cfg.shapes)


@register_stage("build")
class BuildStage(Stage[BuildConfig]):
    config_cls = BuildConfig
    input_kinds = ("onnx",)
    output_kind = "engine"
    smoke_run = False

    def __init__(self, config: BuildConfig) -> None:
        super().__init__(config)
        kind = "engine" if config.target == "tensorrt" else config.ort_format
        self.output_kind = kind  # type: ignore[misc]

    def ensures(self, result: StageResult, ctx: StageContext) -> None:
        # ORT's optimized graphs hold ORT-internal ops the ONNX checker does not know; the ORT target
        # is checked in _run instead (reloaded and compared with the input model).
        path = result.artifact.path
        if not path.is_file() or not path.with_name(path.name + ".json").is_file():
            raise StageError(f"stage 'build' wrote no {path.name} with its .json record{self._after(ctx)}")

    def cache_inputs(self, ctx: StageContext) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.config.legacy_calibration_file is not None and self.config.legacy_calibration_file.is_file():
            out["legacy_calibration_file"] = sha256_file(self.config.legacy_calibration_file)
        if self.config.target == "tensorrt":
            from pipeline.engine.env import installed_trt_version, probe_gpu

            gpu = probe_gpu(self.config.device)
            out["gpu"] = gpu.sm if gpu else "none"
            out["tensorrt"] = installed_trt_version() or "none"
        return out

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        if self.config.target == "onnxruntime":
            return self._run_ort(artifact, ctx)
        from pipeline.engine.run_build import run_tensorrt

        return run_tensorrt(self.config, artifact, ctx)

    def _run_ort(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from pipeline.engine.ort_target import OrtBuildOptions, build_ort_model
        from pipeline.onnx_io import load_onnx
        from pipeline.workspace import write_json_atomic

        cfg = self.config
        check_custom_ops(load_onnx(artifact.path, load_external=False), artifact.path)
        out = ctx.out_dir / f"model.{cfg.ort_format}"
        opts = OrtBuildOptions(cfg.provider, cfg.ort_opt_level, cfg.ort_format, cfg.threads)
        record = build_ort_model(artifact.path, out, opts)
        write_json_atomic(out.with_name(out.name + ".json"), record)
        result_artifact = Artifact(
            out,
            cfg.ort_format,
            sha256_model_files(out),
            artifact.iospec,
            (*artifact.provenance, {"stage": "build", "target": "onnxruntime"}),
        )
        metrics = {
            k: record[k] for k in ("providers", "format", "nodes_before", "nodes_after", "smoke_max_abs_diff")
        }
        return StageResult(result_artifact, metrics, modified=True)
