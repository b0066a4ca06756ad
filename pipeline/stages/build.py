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
from typing import Literal

from trtforge.pipeline.artifact import Artifact, ArtifactKind, sha256_file, sha256_model_files
from trtforge.pipeline.errors import ConfigError, StageError
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Stage, StageContext, StageResult
from trtforge.pipeline.validation.rule import ParityCheck

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    target: Literal["tensorrt", "onnxruntime"] = "tensorrt"
    #: one ``--shapes`` value per optimization profile (see pipeline.engine.profiles); for the
    #: onnxruntime target, the sizes of the smoke parity's random inputs (the first OPT shape)
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
    #: onnxruntime target: tolerance of the smoke parity (gate ``build_parity``) of the optimized model
    atol: float = 1e-4
    rtol: float = 1e-3

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise ConfigError(f"build.atol and build.rtol must be >= 0, got {self.atol} and {self.rtol}")
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

    @property
    def parity_check(self) -> ParityCheck:
        """The onnxruntime target's smoke parity: the optimized model against the input, one random sample
        (sizes of dynamic inputs from ``shapes``)."""
        from trtforge.pipeline.engine.ort_target import SMOKE_CHECK

        return dataclasses.replace(SMOKE_CHECK, atol=self.atol, rtol=self.rtol, shapes=self.shapes)


_TRT_ONLY = (
    "workspace_mib",
    "opt_level",
    "sparse_weights",
    "version_compatible",
    "hardware_compatible",
    "legacy_fp16",
    "legacy_calibration_file",
)


@register_stage("build")
class BuildStage(Stage[BuildConfig]):
    config_cls = BuildConfig
    input_kinds = (ArtifactKind.ONNX,)
    output_kind = ArtifactKind.ENGINE
    smoke_run = False

    @classmethod
    def produces(cls, config: BuildConfig, given: ArtifactKind) -> ArtifactKind:
        if config.target == "tensorrt":
            return ArtifactKind.ENGINE
        return ArtifactKind.ORT if config.ort_format == "ort" else ArtifactKind.ONNX

    @classmethod
    def kind_options(cls, config: BuildConfig) -> str:
        if config.target == "tensorrt":
            return 'target = "tensorrt"'
        return f'target = "onnxruntime", ort_format = "{config.ort_format}"'

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
            from trtforge.pipeline.engine.env import installed_trt_version, probe_gpu

            gpu = probe_gpu(self.config.device)
            out["gpu"] = gpu.sm if gpu else "none"
            out["tensorrt"] = installed_trt_version() or "none"
        return out

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        if self.config.target == "onnxruntime":
            return self._run_ort(artifact, ctx)
        from trtforge.pipeline.stages._build_tensorrt import run_tensorrt

        return run_tensorrt(self.config, artifact, ctx)

    def _run_ort(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.common.ort import ORT_DOMAINS
        from trtforge.pipeline.engine.custom_ops import check_custom_ops
        from trtforge.pipeline.engine.ort_target import OrtBuildOptions, build_ort_model
        from trtforge.pipeline.onnx_io import load_onnx
        from trtforge.pipeline.workspace import write_json_atomic

        cfg = self.config
        check_custom_ops(load_onnx(artifact.path, load_external=False), artifact.path, ORT_DOMAINS)
        out = ctx.out_dir / f"model.{cfg.ort_format}"
        check, data = _smoke_check(cfg.parity_check, artifact, ctx)
        opts = OrtBuildOptions(cfg.provider, cfg.ort_opt_level, cfg.ort_format, cfg.threads, check)
        record, parity = build_ort_model(artifact.path, out, opts, data)
        write_json_atomic(out.with_name(out.name + ".json"), record)
        result_artifact = Artifact(
            out,
            self.produces(cfg, artifact.kind),
            sha256_model_files(out),
            artifact.iospec,
            (*artifact.provenance, {"stage": "build", "target": "onnxruntime"}),
        )
        metrics = {
            k: record[k]
            for k in (
                "providers",
                "format",
                "nodes_before",
                "nodes_after",
                "smoke_max_abs_diff",
                "smoke_parity",
            )
        }
        gate = parity.gate("build_parity", " of the input model")
        return StageResult(result_artifact, metrics, modified=True, gates=(gate,))


def _smoke_check(
    check: ParityCheck, artifact: Artifact, ctx: StageContext
) -> tuple[ParityCheck, dict[str, Path | None]]:
    """The smoke parity's check and data: one random sample where every input size is known (fixed,
    batch, or ``shapes``), else the first sample of the validation (or calibration) data."""
    from trtforge.pipeline.validation.feeds import shapes_known

    specs = artifact.iospec.inputs if artifact.iospec else ()
    if shapes_known(specs, check.shapes):
        return check, {}
    data = {"validation": ctx.data.validation, "calibration": ctx.data.calibration}
    return dataclasses.replace(check, data=tuple(data), batch_size=1), data
