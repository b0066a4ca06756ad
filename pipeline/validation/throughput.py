"""Latency and throughput of models, measured interleaved in one process.

Every iteration runs each model once, in an order that rotates from one iteration to the next
(round-robin), so machine noise (frequency scaling, other processes, cache state) hits all
models alike; ratios are reported against the first model. Timing is wall-clock around
``runner.run(feeds)`` (``time.perf_counter_ns``); a runner may also report its own device
time (``device_time_s()``, e.g. CUDA events of a TensorRT runner), which is summarised beside it.
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

from pipeline.artifact import IOSpec, TensorSpec
from pipeline.errors import InputError, first_line
from pipeline.stage import ProgressFn, _no_progress
from pipeline.validation.feeds import data_batches, ort_run_errors

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


class OrtTimedRunner:
    """ONNX Runtime CPU session of an ONNX file, with a fixed intra-op thread count."""

    def __init__(self, path: str | Path, threads: int | None = 1, name: str | None = None) -> None:
        from pipeline.backends.onnxruntime import OrtOptions, OrtRunner
        from pipeline.onnx_io import load_onnx

        self.path = Path(path)
        self.name = name or self.path.name
        self._inputs = IOSpec.from_onnx(load_onnx(self.path, check=False, load_external=False)).inputs
        self._runner = OrtRunner(self.path, OrtOptions(intra_op_threads=threads or None)).load()

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> Any:
        try:
            return self._runner.run(feeds)
        except ort_run_errors() as exc:
            first = first_line(exc)
            raise InputError(f"{self.path}: ONNX Runtime failed on the benchmark inputs: {first}") from exc


class TrtTimedRunner:
    """A TensorRT engine built by ``trtforge build``; reports the GPU time of each run beside wall time.

    Wall time covers host-to-device copies, execution and device-to-host copies; ``device_time_s``
    is the execution alone (CUDA events around ``execute_async_v3``).
    """

    def __init__(self, path: str | Path, name: str | None = None, device: int = 0) -> None:
        from pipeline.backends.tensorrt import TrtRunner, engine_input_specs

        self.path = Path(path)
        self.name = name or self.path.name
        specs = engine_input_specs(self.path)  # metadata only: names and profile shapes
        self._runner = TrtRunner(self.path, device).load()
        dtypes = self._runner.input_dtypes
        self._inputs = tuple(TensorSpec(s.name, dtypes[s.name].name, s.shape) for s in specs)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> Any:
        return self._runner.run(feeds)

    def device_time_s(self) -> float | None:
        ms = self._runner.last_latency_ms
        return ms / 1e3 if ms is not None else None


def timed_runner(path: str | Path, threads: int | None = 1, name: str | None = None) -> TimedRunner:
    """The runner for a model file: TensorRT for an engine (``.engine``/``.plan``/``.trt``), else ORT CPU."""
    from pipeline.backends.tensorrt import is_engine_path

    if is_engine_path(path):
        return TrtTimedRunner(path, name)
    return OrtTimedRunner(path, threads, name)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batch": self.batch,
            **self.latency.to_dict(),
            "p50_ratio": self.p50_ratio,
            "paired_ratio": self.paired_ratio,
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
) -> BenchReport:
    """Time ``models`` (ONNX or engine paths, or runners) interleaved, at each batch size.

    ``duration`` (seconds per batch size) replaces ``iters`` when given. Inputs are seeded random
    data unless ``data`` (.npy/.npz/directory) is given; the same inputs go to every model.
    """
    if not models:
        raise InputError("no models to benchmark; pass at least one .onnx or .engine file")
    if warmup < 0 or iters < 1 or (duration is not None and duration <= 0):
        raise InputError(f"need warmup >= 0, iters >= 1 and duration > 0; got {warmup}, {iters}, {duration}")
    runners = [m if isinstance(m, TimedRunner) else timed_runner(m, threads) for m in models]
    names = _unique_names([r.name for r in runners])
    timings: list[ModelTiming] = []
    for batch in batches:
        feeds = [_inputs(r, batch, data) for r in runners]
        for r, f in zip(runners, feeds):
            for _ in range(warmup):
                r.run(f)
        seconds, device = _timed_loop(runners, feeds, (iters, duration), progress, f"bench batch {batch}")
        timings.extend(_summarise(names, batch, seconds, device))
    settings = {
        "threads": threads,
        "warmup": warmup,
        "iters": iters,
        "duration": duration,
        "batches": list(batches),
        "cpu_count": os.cpu_count(),
        **_versions(runners),
    }
    return BenchReport(tuple(timings), tuple(names), str(data) if data else "random", settings)


def _unique_names(names: list[str]) -> list[str]:
    """The same file twice (or two files of one name) get ``#<position>`` suffixes."""
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _inputs(runner: TimedRunner, batch: int, data: str | Path | None) -> dict[str, np.ndarray]:
    specs = list(runner.inputs)
    static = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0}
    if static and static != {batch}:
        raise InputError(
            f"{runner.name}: the model has a static batch size {min(static)}; "
            f"benchmark it with --batch {min(static)}"
        )
    if data is None:
        from pipeline.backends.onnxruntime import random_feed

        return random_feed(specs, batch=batch, seed=0)
    feed = next(data_batches(data, specs, batch), None)
    if feed is None:
        raise InputError(f"{data}: holds no samples; pass a non-empty .npy/.npz or directory")
    n = next(iter(feed.values())).shape[0]
    if n < batch:  # fewer samples than the batch: repeat them (latency does not depend on values)
        reps = -(-batch // n)
        feed = {k: np.concatenate([v] * reps)[:batch] for k, v in feed.items()}
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
            row[m] = (time.perf_counter_ns() - t0) * 1e-9
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
        paired = float(np.median(col / np.maximum(base, 1e-12)))
        dev = LatencyStats.from_seconds(device[m], batch) if device[m] else None
        out.append(ModelTiming(name, batch, stats, p50_ratio, paired, dev))
    return out


def _versions(runners: Sequence[TimedRunner]) -> dict[str, str]:
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__}
    if any(isinstance(r, TrtTimedRunner) for r in runners):
        from pipeline.engine.env import installed_trt_version

        out["tensorrt"] = installed_trt_version() or "unknown"
    return out
