"""The ``bench`` stage: latency of the current model, and its ratio to the reference.

ONNX models run on ONNX Runtime CPU, a TensorRT engine on its GPU (wall time, plus the GPU time of
each run). Both models are timed interleaved in one process by :func:`measure`, which ``trtforge bench``
(``pipeline.api.bench``) uses too; the loop itself is ``pipeline.validation.throughput``. The model
passes through unchanged. Optional gate ``latency_ratio``: fails when the current model's
p50 latency exceeds ``max_latency_ratio`` times the reference's at any batch size (off by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trtforge.pipeline.artifact import Artifact, ArtifactKind
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, ProgressFn, Stage, StageContext, StageResult, _no_progress

if TYPE_CHECKING:
    from trtforge.pipeline.validation.throughput import BenchReport, TimedRunner


@dataclass(frozen=True)
class BenchConfig:
    """Batch sizes, threads, iteration counts, and the optional latency-ratio gate."""

    batches: tuple[int, ...] = (1,)
    threads: int = 1  # ONNX Runtime intra-op threads; 0: ONNX Runtime's default (all cores)
    warmup: int = 10
    iters: int = 50
    duration: float | None = None  # seconds per batch size; replaces iters when set
    use_data: bool = True  # time on the validation data when the pipeline has some, else random inputs
    max_latency_ratio: float | None = None  # gate: current p50 / reference p50 must not exceed this
    #: ``NAME:1x3x640x640``: sizes of dynamic non-batch dims of random inputs (``build --shapes`` syntax)
    shapes: tuple[str, ...] = ()
    #: ``IN:OUT``: state input of a streaming model (data files are steps; the first step is timed)
    state: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError(f"batches must be positive integers, got {list(self.batches)}")
        if self.threads < 0 or self.warmup < 0 or self.iters < 1:
            raise ValueError("need threads >= 0, warmup >= 0 and iters >= 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")
        if self.max_latency_ratio is not None and self.max_latency_ratio <= 0:
            raise ValueError(f"max_latency_ratio must be > 0, got {self.max_latency_ratio}")


@dataclass(frozen=True)
class BenchResult:
    """Timings of models measured together, and the ``latency_ratio`` gate (when configured)."""

    report: BenchReport
    gates: tuple[Gate, ...] = ()

    @property
    def passed(self) -> bool:
        return all(self.gates)

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON (``models``, ``inputs``, ``random_inputs``, ``settings``, ``results``)."""
        return self.report.to_dict()


def measure(
    models: Sequence[str | Path | TimedRunner],
    config: BenchConfig,
    *,
    data: str | Path | None = None,
    baseline: str = "the first model",
    progress: ProgressFn = _no_progress,
) -> BenchResult:
    """Time ``models`` interleaved (``trtforge bench`` and the bench stage both measure here).

    ONNX paths run on ONNX Runtime CPU with ``config.threads``, engines on TensorRT. ``data`` is
    used when ``config.use_data``; else seeded random inputs. Ratios are against the first model,
    which the ``latency_ratio`` gate calls ``baseline`` in its detail.
    """
    from trtforge.pipeline.validation.throughput import benchmark_models

    report = benchmark_models(
        models,
        config.batches,
        config.threads or None,
        config.warmup,
        config.iters,
        duration=config.duration,
        data=data if config.use_data else None,
        progress=progress,
        shapes=config.shapes,
        state=config.state,
    )
    return BenchResult(report, _latency_gates(report, config.max_latency_ratio, baseline))


def _latency_gates(report: BenchReport, limit: float | None, baseline: str) -> tuple[Gate, ...]:
    """``latency_ratio``: every model's p50 at most ``limit`` times the first model's, at every batch."""
    if limit is None:
        return ()
    others = [t for t in report.timings if t.model != report.models[0]]
    if not others:
        return (
            Gate(
                "latency_ratio", True, 1.0, limit, f"{report.models[0]} alone was timed; nothing to compare"
            ),
        )
    worst = max(others, key=lambda t: t.p50_ratio)
    return (
        Gate(
            "latency_ratio",
            worst.p50_ratio <= limit,
            worst.p50_ratio,
            limit,
            f"p50 latency of {worst.model} at batch {worst.batch} is {worst.p50_ratio:.3f}x {baseline}'s "
            f"(max {limit}x)",
        ),
    )


@register_stage("bench")
class BenchStage(Stage[BenchConfig]):
    """Time the current model (and the reference, when it differs): ORT CPU, or TensorRT for engines."""

    config_cls = BenchConfig
    input_kinds: ClassVar[tuple[ArtifactKind, ...]] = (
        ArtifactKind.ONNX,
        ArtifactKind.ENGINE,
        ArtifactKind.ORT,
    )
    output_kind: ClassVar[ArtifactKind | None] = None  # the model passes through
    smoke_run: ClassVar[bool] = False

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.pipeline.validation.throughput import timed_runner

        threads = self.config.threads or None
        models = [timed_runner(artifact.path, threads, name="current")]
        ref = ctx.reference
        if ref is not None and ref.kind == ArtifactKind.ONNX and ref.sha256 != artifact.sha256:
            models.insert(0, timed_runner(ref.path, threads, name="reference"))
        result = measure(
            models, self.config, data=ctx.data.validation, baseline="the reference", progress=ctx.progress
        )
        metrics: dict[str, Any] = {"bench": result.to_dict(), "latency": _latency(result.report)}
        return StageResult(artifact, metrics, modified=False, gates=result.gates)


def _latency(report: BenchReport) -> dict[str, dict[str, float]]:
    """Per batch size: the current model's p50/p99/throughput (and GPU p50), vs the reference's p50."""
    out: dict[str, dict[str, float]] = {}
    has_ref = "reference" in report.models
    for batch in report.batches():
        cur = report.timing("current", batch)
        entry = {
            "p50_ms": cur.latency.p50_ms,
            "p99_ms": cur.latency.p99_ms,
            "throughput": cur.latency.throughput,
        }
        if cur.device is not None:  # GPU time of the engine's execution alone
            entry["device_p50_ms"] = cur.device.p50_ms
        if has_ref:
            entry["reference_p50_ms"] = report.timing("reference", batch).latency.p50_ms
            entry["p50_ratio"] = cur.p50_ratio
        out[str(batch)] = entry
    return out
