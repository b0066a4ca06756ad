"""Latency and throughput of models, measured interleaved in one process.

Every iteration runs each model once, in an order that rotates from one iteration to the next
(round-robin), so machine noise (frequency scaling, other processes, cache state) hits all
models alike; ratios are reported against the first model. Timing is the runner's own
wall-clock measure of its inference (``Runner.last_inference_time``, excluding the feed check; plain
``perf_counter`` around ``run`` for other ``TimedRunner`` objects); a runner may also report its own
device time (``device_time_s()``, e.g. CUDA events of a TensorRT runner), summarised beside it.

:func:`measure_latency` is the one latency helper: every place that times models (the ``bench``
stage and verb through :func:`benchmark_models`, ``prune``'s before/after latency, ``quantize``'s
INT8-vs-FP32 ratio) calls it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trtforge.pipeline.artifact import TensorSpec
from trtforge.pipeline.backends.base import Runner
from trtforge.pipeline.errors import InputError, first_line
from trtforge.pipeline.stage import ProgressFn, _no_progress
from trtforge.pipeline.validation.feeds import data_batches, ort_run_errors

log = logging.getLogger(__name__)

MIN_ITERS_WITH_DURATION = 3


@runtime_checkable
class TimedRunner(Protocol):
    """What the benchmark needs of a backend: a name, its inputs, and ``run(feeds)``.

    A runner may also define ``device_time_s() -> float | None``: the device time of its last run.
    """

    name: str

    @property
    def inputs(self) -> Sequence[TensorSpec]: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> Any: ...


def timed_runner(path: str | Path, threads: int | None = 1, name: str | None = None) -> Runner:
    """The activated runner of a model file (by kind: TensorRT for an engine, ONNX Runtime otherwise).

    ``threads`` is ONNX Runtime's intra-op thread count (1 for stable timing; None: all cores).
    """
    from trtforge.pipeline.backends.base import RunnerOptions, open_runner

    return open_runner(path, RunnerOptions(threads=threads, name=name)).activate()


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one model at one batch size (milliseconds) and throughput (samples/s)."""

    iters: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float] | np.ndarray, batch: int) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        mean = float(ms.mean())
        return cls(
            len(ms),
            mean,
            float(ms.std()),
            float(ms.min()),
            p50,
            p90,
            p99,
            batch / (mean / 1e3) if mean > 0 else 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ModelTiming:
    """One model at one batch size; ratios are against the first model (1.0 for itself)."""

    model: str
    batch: int
    latency: LatencyStats
    p50_ratio: float = 1.0  # p50 / first model's p50
    paired_ratio: float = 1.0  # median over iterations of (this run / first model's run in that iteration)
    device: LatencyStats | None = None
    paired_low: float = 1.0  # 25th percentile of those per-iteration ratios (slower in 3 of 4 runs: > 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batch": self.batch,
            **self.latency.to_dict(),
            "p50_ratio": self.p50_ratio,
            "paired_ratio": self.paired_ratio,
            "paired_low": self.paired_low,
            "device": self.device.to_dict() if self.device else None,
        }


@dataclass(frozen=True)
class BenchReport:
    """Timings of every model at every batch size, plus how they were taken."""

    timings: tuple[ModelTiming, ...]
    models: tuple[str, ...]
    inputs: str  # "random" or the data path
    settings: Mapping[str, Any] = field(default_factory=dict)

    def timing(self, model: str, batch: int) -> ModelTiming:
        for t in self.timings:
            if t.model == model and t.batch == batch:
                return t
        raise KeyError(f"no timing for {model!r} at batch {batch}")

    def batches(self) -> list[int]:
        return sorted({t.batch for t in self.timings})

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "inputs": self.inputs,
            "random_inputs": self.inputs == "random",
            "settings": dict(self.settings),
            "results": [t.to_dict() for t in self.timings],
        }


def benchmark_models(
    models: Sequence[str | Path | TimedRunner],
    batches: Sequence[int] = (1,),
    threads: int | None = 1,
    warmup: int = 10,
    iters: int = 50,
    *,
    duration: float | None = None,
    data: str | Path | None = None,
    progress: ProgressFn = _no_progress,
    shapes: Sequence[str] = (),
    state: Sequence[str] = (),
) -> BenchReport:
    """Time ``models`` (ONNX or engine paths, or runners) interleaved, at each batch size.

    ``duration`` (seconds per batch size) replaces ``iters`` when given. Inputs are seeded random
    data unless ``data`` (.npy/.npz/directory) is given; the same inputs go to every model. Random
    inputs take dynamic non-batch sizes from ``shapes`` (``--shapes`` values); ``state`` pairs make
    the data files steps of a stream (the first step is timed, its state from the file or zeros).
    """
    _check_budget(models, warmup, iters, duration)
    runners = _open_all(models, threads)
    timings: list[ModelTiming] = []
    for batch in batches:
        feeds = [_inputs(r, batch, data, shapes, state) for r in runners]
        timings.extend(
            measure_latency(
                runners,
                feeds,
                batch=batch,
                warmup=warmup,
                iters=iters,
                duration=duration,
                progress=progress,
                label=f"bench batch {batch}",
                random_inputs=data is None,
            )
        )
    settings = {
        "threads": threads,
        "warmup": warmup,
        "iters": iters,
        "duration": duration,
        "batches": list(batches),
        "cpu_count": os.cpu_count(),
        **_versions(runners),
    }
    names = tuple(_unique_names([r.name for r in runners]))
    return BenchReport(tuple(timings), names, str(data) if data else "random", settings)


def measure_latency(
    models: Sequence[str | Path | TimedRunner],
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    *,
    batch: int = 1,
    threads: int | None = 1,
    warmup: int = 10,
    iters: int = 50,
    duration: float | None = None,
    progress: ProgressFn = _no_progress,
    label: str = "latency",
    random_inputs: bool = False,
) -> list[ModelTiming]:
    """Time ``models`` interleaved (round-robin) after ``warmup`` runs each; one timing per model.

    ``feeds``: one per model (None: seeded random inputs of ``batch`` samples). Paths are opened
    with ``threads`` ONNX Runtime intra-op threads. Each timing holds the latency statistics (median
    ``p50_ms``...) and the ratios to the first model measured in the same iterations (``p50_ratio``,
    ``paired_ratio``). ``duration`` (seconds) replaces ``iters`` when given. ``random_inputs``: the
    feeds were made up (no data), so a failure on them says to pass real inputs.
    """
    _check_budget(models, warmup, iters, duration)
    runners = _open_all(models, threads)
    inputs = list(feeds) if feeds is not None else [_inputs(r, batch, None) for r in runners]
    if len(inputs) != len(runners):
        raise InputError(f"{len(inputs)} feeds for {len(runners)} models; give one feed per model")
    try:
        for r, f in zip(runners, inputs):
            for _ in range(warmup):
                r.run(f)
        seconds, device = _timed_loop(runners, inputs, (iters, duration), progress, label)
    except ort_run_errors() as exc:
        hint = (
            "; the inputs were seeded random values (no data given): pass real inputs with --data"
            if random_inputs or feeds is None
            else ""
        )
        raise InputError(f"ONNX Runtime failed on the benchmark inputs: {first_line(exc)}{hint}") from exc
    return _summarise(_unique_names([r.name for r in runners]), batch, seconds, device)


def _check_budget(
    models: Sequence[str | Path | TimedRunner], warmup: int, iters: int, duration: float | None
) -> None:
    if not models:
        raise InputError("no models to benchmark; pass at least one .onnx or .engine file")
    if warmup < 0 or iters < 1 or (duration is not None and duration <= 0):
        raise InputError(f"need warmup >= 0, iters >= 1 and duration > 0; got {warmup}, {iters}, {duration}")


def _open_all(models: Sequence[str | Path | TimedRunner], threads: int | None) -> list[TimedRunner]:
    return [m if isinstance(m, TimedRunner) else timed_runner(m, threads) for m in models]


def _unique_names(names: list[str]) -> list[str]:
    """The same file twice (or two files of one name) get ``#<position>`` suffixes."""
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _inputs(
    runner: TimedRunner,
    batch: int,
    data: str | Path | None,
    shapes: Sequence[str] = (),
    state: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """``batch`` samples for ``runner``: from ``data`` (repeated where it holds fewer), else random
    of the sizes ``shapes`` and the model give. The batch is cut on each input's batch axis (from the
    model's symbolic dims; inputs without one, like a scalar, are given once)."""
    from trtforge.calibration.data import FeedLayout

    specs = list(runner.inputs)
    layout = FeedLayout.of(specs)
    static = layout.static_batch()
    if static is not None and static != batch:
        raise InputError(
            f"{runner.name}: the model has a static batch size {static}; benchmark it with --batch {static}"
        )
    if data is None:
        from trtforge.pipeline.backends.onnxruntime import random_feed
        from trtforge.pipeline.validation.feeds import explicit_shapes

        return random_feed(specs, batch=batch, seed=0, shapes=explicit_shapes(shapes), source=runner.name)
    feed = next(data_batches(data, specs, batch, state=state), None)
    if feed is None:
        raise InputError(f"{data}: holds no samples; pass a non-empty .npy/.npz or directory")
    n = layout.samples(feed, data)
    if layout.batched and n < batch:  # fewer samples than the batch: repeat them (latency ignores values)
        reps = -(-batch // n)
        feed = layout.take(layout.concat([feed] * reps), 0, batch)
    return feed


def _timed_loop(
    runners: Sequence[TimedRunner],
    feeds: Sequence[Mapping[str, np.ndarray]],
    budget: tuple[int, float | None],
    progress: ProgressFn,
    label: str,
) -> tuple[np.ndarray, list[list[float]]]:
    """Round-robin: iteration i runs models in the order rotated by i. Returns seconds[iter, model]."""
    iters, duration = budget
    k = len(runners)
    rows: list[list[float]] = []
    device: list[list[float]] = [[] for _ in runners]
    start = time.perf_counter()
    i = 0
    while _more(i, iters, duration, start):
        row = [0.0] * k
        for j in range(k):
            m = (i + j) % k
            t0 = time.perf_counter_ns()
            runners[m].run(feeds[m])
            wall = (time.perf_counter_ns() - t0) * 1e-9
            runner = runners[m]
            own = runner.last_inference_time if isinstance(runner, Runner) else None
            row[m] = own if own is not None else wall
            dev = getattr(runners[m], "device_time_s", None)
            value = dev() if callable(dev) else None
            if value is not None:
                device[m].append(float(value))
        rows.append(row)
        i += 1
        progress(label, i, iters if duration is None else max(i, iters))
    return np.asarray(rows), device


def _more(i: int, iters: int, duration: float | None, start: float) -> bool:
    if duration is None:
        return i < iters
    return i < MIN_ITERS_WITH_DURATION or time.perf_counter() - start < duration


def _summarise(
    names: Sequence[str], batch: int, seconds: np.ndarray, device: list[list[float]]
) -> list[ModelTiming]:
    out = []
    base = seconds[:, 0]
    base_p50 = float(np.median(base))
    for m, name in enumerate(names):
        col = seconds[:, m]
        stats = LatencyStats.from_seconds(col, batch)
        p50_ratio = float(np.median(col)) / base_p50 if base_p50 > 0 else float("nan")
        ratios = col / np.maximum(base, 1e-12)
        paired, low = float(np.median(ratios)), float(np.percentile(ratios, 25))
        dev = LatencyStats.from_seconds(device[m], batch) if device[m] else None
        out.append(ModelTiming(name, batch, stats, p50_ratio, paired, dev, low))
    return out


def _versions(runners: Sequence[TimedRunner]) -> dict[str, str]:
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__}
    from trtforge.pipeline.backends.tensorrt import TrtRunner

    if any(isinstance(r, TrtRunner) for r in runners):
        from trtforge.pipeline.engine.env import installed_trt_version

        out["tensorrt"] = installed_trt_version() or "unknown"
    return out
