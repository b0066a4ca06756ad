"""The ``fuse`` stage: graph optimisation of an ONNX model, checked for parity on ONNX Runtime.

Constant folding, BatchNormalization folding into Conv/ConvTranspose/Gemm, MatMul+Add ->
Gemm, Identity/Dropout/dead-node removal and Reshape-target simplification run as the
ordered passes of ``pipeline.graph.fusion``. The output is compared with the input on ONNX
Runtime CPU (graph optimisations off, so each model runs as written) on seeded random inputs,
or on the validation data when the pipeline has some; the ``fuse_parity`` gate holds when the
largest absolute difference is at most ``atol``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifact import Artifact, IOSpec, TensorSpec, sha256_model_files
from pipeline.errors import ConfigError, InputError, first_line
from pipeline.onnx_io import load_onnx, save_onnx
from pipeline.registry import register_stage
from pipeline.stage import Gate, Stage, StageContext, StageResult

log = logging.getLogger(__name__)

#: samples per batch when the parity check reads validation data
PARITY_BATCH = 8
#: rejections kept in the metrics (the total is always reported)
MAX_REJECTIONS = 50


@dataclass(frozen=True)
class FuseConfig:
    """Which passes run, and the parity tolerance. Defaults are what ``trtforge fuse`` does."""

    fold_constants: bool = True
    fold_batchnorm: bool = True
    matmul_add_to_gemm: bool = True
    remove_identity: bool = True
    simplify_shapes: bool = True
    use_onnxslim: bool = True
    atol: float = 1e-4
    parity_batches: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.atol >= 0:
            raise ConfigError(f"fuse.atol must be >= 0, got {self.atol}; e.g. atol = 1e-4")
        if self.parity_batches < 1:
            raise ConfigError(f"fuse.parity_batches must be >= 1, got {self.parity_batches}")


@dataclass(frozen=True)
class Parity:
    """Largest differences between two models' outputs; ``max_rel_err`` is relative to the
    largest magnitude of the reference output (per output, worst output reported)."""

    max_abs_err: float
    max_rel_err: float
    batches: int
    source: str  # "random" | "validation"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@register_stage("fuse")
class FuseStage(Stage[FuseConfig]):
    config_cls = FuseConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from pipeline.graph.fusion import FusionOptions, fuse_model, op_counts

        cfg = self.config
        model = load_onnx(artifact.path)
        ctx.progress("fuse", 0, 2)
        options = FusionOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(FusionOptions)})
        result = fuse_model(model, options)
        fused = result.model if result.modified else model
        out = save_onnx(fused, ctx.out_dir / "model.onnx")
        ctx.progress("fuse", 1, 2)
        specs = artifact.iospec.inputs if artifact.iospec else IOSpec.from_onnx(model).inputs
        parity = measure_parity(artifact.path, out, _feeds(specs, cfg, ctx))
        ctx.progress("fuse", 2, 2)
        passed = parity.max_abs_err <= cfg.atol
        detail = "" if passed else f"max abs error {parity.max_abs_err:.3g} > atol {cfg.atol:g}"
        gate = Gate("fuse_parity", passed, parity.max_abs_err, cfg.atol, detail)
        before, after = op_counts(model), op_counts(fused)
        rejections = [r.to_dict() for p in result.passes for r in p.rejections]
        metrics = {
            "nodes_before": before,
            "nodes_after": after,
            "node_count_before": sum(before.values()),
            "node_count_after": sum(after.values()),
            "removed_by_pass": _by_pass(result.passes, "nodes_removed"),
            "rewrites_by_rule": _by_pass(result.passes, "applied"),
            "rejections": rejections[:MAX_REJECTIONS],
            "rejections_total": len(rejections),
            "parity": parity.to_dict(),
        }
        spec = IOSpec.from_onnx(fused)
        iospec = IOSpec(spec.inputs, spec.outputs, artifact.iospec.dim_ranges if artifact.iospec else {})
        new = Artifact(out, "onnx", sha256_model_files(out), iospec, artifact.provenance)
        return StageResult(new, metrics, result.modified, (gate,))


def _by_pass(passes: Sequence[Any], attr: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for p in passes:
        if p.name != "infer_shapes":
            totals[p.name] = totals.get(p.name, 0) + int(getattr(p, attr))
    return totals


def _feeds(specs: Sequence[TensorSpec], cfg: FuseConfig, ctx: StageContext) -> tuple[str, Iterator[dict]]:
    """Where the parity inputs come from, and the feeds themselves."""
    from pipeline.backends.onnxruntime import random_feed

    if ctx.data.validation is not None:
        from calibration.data import iter_batches

        path = ctx.data.validation
        limit = PARITY_BATCH * cfg.parity_batches
        return "validation", iter_batches(path, [s.as_input_spec() for s in specs], PARITY_BATCH, limit)
    return "random", (random_feed(specs, batch=2, seed=cfg.seed + i) for i in range(cfg.parity_batches))


def measure_parity(reference: Path, candidate: Path, feeds: tuple[str, Iterator[dict]]) -> Parity:
    """Run both models on ONNX Runtime CPU (no graph optimisation) and compare every output."""
    from calibration.errors import DataError
    from pipeline.backends.onnxruntime import OrtOptions, OrtRunner
    from pipeline.config import env_threads

    options = OrtOptions(graph_optimization="disable", intra_op_threads=env_threads())
    ref, new = OrtRunner(reference, options).load(), OrtRunner(candidate, options).load()
    source, batches = feeds
    worst_abs = worst_rel = 0.0
    count = 0
    try:
        for feed in batches:
            a, b = _run(ref, feed, reference, source), _run(new, feed, candidate, source)
            for name, expected in a.items():
                abs_err, rel_err = _errors(expected, b[name])
                worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel_err)
            count += 1
    except DataError as exc:
        raise InputError(str(exc)) from exc
    return Parity(worst_abs, worst_rel, count, source)


def _run(runner: Any, feed: dict, path: Path, source: str) -> dict[str, np.ndarray]:
    try:
        return dict(runner.run(feed))
    except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidArgument types
        first = first_line(exc)
        hint = "" if source == "validation" else "; pass validation data (--validation-data) with real shapes"
        raise InputError(f"{path}: ONNX Runtime cannot run it on {source} inputs ({first}){hint}") from exc


def _errors(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    if expected.shape != actual.shape:
        return float("inf"), float("inf")
    if expected.dtype.kind not in "biuf":  # strings and the like: equal or not
        same_values = bool(np.array_equal(expected, actual))
        return (0.0, 0.0) if same_values else (float("inf"), float("inf"))
    a, b = expected.astype(np.float64), actual.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    diff = np.where(same, 0.0, np.abs(a - b))
    if not diff.size:
        return 0.0, 0.0
    abs_err = float(np.nan_to_num(diff, nan=np.inf).max())
    scale = float(np.nanmax(np.abs(np.where(np.isfinite(a), a, 0.0)))) if a.size else 0.0
    return abs_err, abs_err / max(scale, 1e-12)
