"""The TensorRT half of the ``build`` stage: environment, plan, build, metadata (the building blocks live
in :mod:`trtforge.pipeline.engine`, which never imports stages)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtforge.pipeline.artifact import Artifact, ArtifactKind, IOSpec, sha256_model_files
from trtforge.pipeline.stage import StageContext, StageResult

if TYPE_CHECKING:
    from trtforge.pipeline.stages.build import BuildConfig

ENGINE_NAME = "model.engine"


def _options_record(cfg: BuildConfig) -> dict[str, Any]:
    return {
        "shapes": list(cfg.shapes),
        "workspace_mib": cfg.workspace_mib,
        "opt_level": cfg.opt_level,
        "sparse_weights": cfg.sparse_weights,
        "version_compatible": cfg.version_compatible,
        "hardware_compatible": cfg.hardware_compatible,
        "legacy_fp16": cfg.legacy_fp16,
        "legacy_int8": cfg.legacy_calibration_file is not None,
    }


def run_tensorrt(cfg: BuildConfig, artifact: Artifact, ctx: StageContext) -> StageResult:
    """Build ``artifact`` into ``ctx.out_dir/model.engine`` (+ ``model.engine.json``)."""
    from trtforge.pipeline.config import env_cache_dir
    from trtforge.pipeline.engine.builder import TrtBuildOptions, build_engine, prepare_onnx
    from trtforge.pipeline.engine.cache import engine_cache_key, timing_cache_path
    from trtforge.pipeline.engine.custom_ops import check_custom_ops
    from trtforge.pipeline.engine.env import require_trt_env
    from trtforge.pipeline.engine.legacy import read_calibration_cache
    from trtforge.pipeline.engine.metadata import EngineMetadata, onnx_precision, write_metadata
    from trtforge.pipeline.engine.profiles import derive_profiles
    from trtforge.pipeline.engine.version import check_legacy_allowed
    from trtforge.pipeline.onnx_io import load_onnx

    trt, gpu = require_trt_env("building a TensorRT engine (--target tensorrt)", cfg.device)
    version = str(trt.__version__)
    check_legacy_allowed(version, cfg.legacy_fp16, cfg.legacy_calibration_file is not None)
    model = load_onnx(artifact.path)
    plugin_ids = check_custom_ops(model, artifact.path)
    profiles = derive_profiles(artifact.iospec or IOSpec.from_onnx(model), cfg.shapes)
    calib = (
        read_calibration_cache(Path(cfg.legacy_calibration_file), version)
        if cfg.legacy_calibration_file is not None
        else None
    )
    cache_path = timing_cache_path(cfg.timing_cache_dir or env_cache_dir(), version, gpu)
    cache_hit = cache_path.is_file()
    opts = TrtBuildOptions(
        profiles=tuple(profiles),
        workspace_bytes=cfg.workspace_mib * (1 << 20) if cfg.workspace_mib else None,
        opt_level=cfg.opt_level,
        timing_cache=cache_path,
        sparse_weights=cfg.sparse_weights,
        version_compatible=cfg.version_compatible,
        hardware_compatible=cfg.hardware_compatible,
        legacy_fp16=cfg.legacy_fp16,
        legacy_int8_cache=calib,
        plugins=tuple(plugin_ids),
    )
    out = ctx.out_dir / ENGINE_NAME
    build_s = build_engine(trt, prepare_onnx(model, artifact.path, ctx.out_dir), artifact.path, out, opts)
    iospec = artifact.iospec or IOSpec.from_onnx(model)
    precision = onnx_precision(model)
    if opts.legacy:
        precision += "+legacy-" + "+".join(k for k, on in (("fp16", cfg.legacy_fp16), ("int8", calib)) if on)
    meta = EngineMetadata(
        trt_version=version,
        gpu_name=gpu.name,
        compute_capability=".".join(map(str, gpu.compute_capability)),
        precision=precision,
        profiles=tuple(p.to_dict() for p in profiles),
        onnx_sha256=artifact.sha256,
        build_time_s=round(build_s, 3),
        inputs=tuple(iospec.input_names()),
        outputs=tuple(iospec.output_names()),
        version_compatible=cfg.version_compatible,
        hardware_compatible=cfg.hardware_compatible,
        sparse_weights=cfg.sparse_weights,
        plugins=tuple(plugin_ids),
        options=_options_record(cfg),
        cache_key=engine_cache_key(artifact.sha256, _options_record(cfg), version, gpu),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    write_metadata(out, meta)
    result = Artifact(
        out,
        ArtifactKind.ENGINE,
        sha256_model_files(out),
        iospec,
        (*artifact.provenance, {"stage": "build", "target": "tensorrt"}),
    )
    metrics = {
        "build_time_s": meta.build_time_s,
        "tensorrt": version,
        "gpu": gpu.name,
        "timing_cache": str(cache_path),
        "timing_cache_hit": cache_hit,
        "precision": precision,
        "engine_bytes": out.stat().st_size,
    }
    return StageResult(result, metrics, modified=True)
