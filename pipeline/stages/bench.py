"""The ``bench`` stage: latency of the current model, and its ratio to the reference.

ONNX models run on ONNX Runtime CPU, a TensorRT engine on its GPU (wall time, plus the GPU time of
each run). Both models are timed interleaved in one process (see ``pipeline.validation.throughput``). The
model passes through unchanged. Optional gate ``latency_ratio``: fails when the current model's
p50 latency exceeds ``max_latency_ratio`` times the reference's at any batch size (off by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pipeline.artifact import Artifact
from pipeline.registry import register_stage
from pipeline.stage import Gate, Stage, StageContext, StageResult


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

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError(f"batches must be positive integers, got {list(self.batches)}")
        if self.threads < 0 or self.warmup < 0 or self.iters < 1:
            raise ValueError("need threads >= 0, warmup >= 0 and iters >= 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")
        if self.max_latency_ratio is not None and self.max_latency_ratio <= 0:
            raise ValueError(f"max_latency_ratio must be > 0, got {self.max_latency_ratio}")


@register_stage("bench")
class BenchStage(Stage[BenchConfig]):
    """Time the current model (and the reference, when it differs): ORT CPU, or TensorRT for engines."""

    config_cls = BenchConfig
    input_kinds: ClassVar[tuple[str, ...]] = ("onnx", "engine")
    smoke_run: ClassVar[bool] = False

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from pipeline.validation.throughput import benchmark_models, timed_runner

        cfg = self.config
        threads = cfg.threads or None
        runners = [timed_runner(artifact.path, threads, name="current")]
        ref = ctx.reference
        has_ref = ref is not None and ref.kind == "onnx" and ref.sha256 != artifact.sha256
        if has_ref:
            assert ref is not None
            runners.insert(0, timed_runner(ref.path, threads, name="reference"))
        data = ctx.data.validation if cfg.use_data else None
        report = benchmark_models(
            runners,
            cfg.batches,
            threads,
            cfg.warmup,
            cfg.iters,
            duration=cfg.duration,
            data=data,
            progress=ctx.progress,
        )
        metrics: dict[str, Any] = {"bench": report.to_dict(), "latency": {}}
        worst = 0.0  # the largest current/reference p50 ratio over batch sizes
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
                entry.update(
                    reference_p50_ms=report.timing("reference", batch).latency.p50_ms, p50_ratio=cur.p50_ratio
                )
                worst = max(worst, cur.p50_ratio)
            metrics["latency"][str(batch)] = entry
        return StageResult(artifact, metrics, modified=False, gates=self._gates(has_ref, worst))

    def _gates(self, has_ref: bool, worst: float) -> tuple[Gate, ...]:
        limit = self.config.max_latency_ratio
        if limit is None:
            return ()
        if not has_ref:
            return (
                Gate("latency_ratio", True, 1.0, limit, "current model is the reference; nothing to compare"),
            )
        return (
            Gate(
                "latency_ratio",
                worst <= limit,
                worst,
                limit,
                f"p50 latency {worst:.3f}x the reference (max {limit}x) at the slowest batch size",
            ),
        )
