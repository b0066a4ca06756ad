"""Latency benchmarks of tiny models: sane numbers, ratios, inputs, plug-in runners (timing bounds loose)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.artifact import TensorSpec
from pipeline.errors import InputError
from pipeline.validation.throughput import LatencyStats, TimedRunner, benchmark_models
from tests.validation import _models as m


def test_two_models_give_sane_numbers(tmp_path: Path) -> None:
    a = m.classifier(tmp_path / "a.onnx")
    b = m.perturbed(tmp_path / "b.onnx", 0.1)
    seen: list[tuple[str, int, int]] = []
    report = benchmark_models(
        [a, b], batches=(1, 4), warmup=2, iters=20, progress=lambda w, d, t: seen.append((w, d, t))
    )
    assert report.models == ("a.onnx", "b.onnx") and report.batches() == [1, 4]
    assert len(report.timings) == 4
    for t in report.timings:
        lat = t.latency
        assert lat.iters == 20
        assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms < 1000
        assert lat.throughput == pytest.approx(t.batch / (lat.mean_ms / 1e3))
    assert report.timing("a.onnx", 1).p50_ratio == 1.0
    assert seen[-1] == ("bench batch 4", 20, 20)
    d = report.to_dict()
    assert d["random_inputs"] is True and len(d["results"]) == 4 and d["settings"]["threads"] == 1


def test_same_model_twice_has_ratio_near_one(tmp_path: Path) -> None:
    a = m.classifier(tmp_path / "a.onnx")
    report = benchmark_models([a, a], batches=(8,), warmup=5, iters=60)
    first, second = report.timings
    assert first.model != second.model  # names kept apart
    # interleaving makes noise hit both alike; the bound stays loose for shared CI machines
    assert 0.5 < second.p50_ratio < 2.0 and 0.5 < second.paired_ratio < 2.0


def test_duration_and_real_data(tmp_path: Path) -> None:
    a = m.classifier(tmp_path / "a.onnx")
    np.save(tmp_path / "x.npy", m.samples(3))
    report = benchmark_models([a], batches=(8,), warmup=0, iters=1, duration=0.05, data=tmp_path / "x.npy")
    t = report.timings[0]
    assert t.latency.iters >= 3 and report.inputs.endswith("x.npy") and not report.to_dict()["random_inputs"]


def test_static_batch_and_bad_arguments(tmp_path: Path) -> None:
    a = m.classifier(tmp_path / "a.onnx", batch=1)
    with pytest.raises(InputError, match="static batch size 1; benchmark it with --batch 1"):
        benchmark_models([a], batches=(4,), warmup=0, iters=1)
    assert benchmark_models([a], batches=(1,), warmup=0, iters=2).timings[0].batch == 1
    with pytest.raises(InputError, match="iters >= 1"):
        benchmark_models([a], iters=0)
    with pytest.raises(InputError, match="file not found"):
        benchmark_models([tmp_path / "missing.onnx"], iters=1)


class _FakeDeviceRunner:
    """A plug-in runner (as a TensorRT runner would be) reporting its own device time."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return (TensorSpec("x", "float32", ("N", 2)),)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Any:
        self.calls += 1
        assert feeds["x"].shape == (2, 2)
        return {"y": feeds["x"]}

    def device_time_s(self) -> float:
        return 0.002


def test_runner_protocol_with_device_time() -> None:
    runner = _FakeDeviceRunner()
    assert isinstance(runner, TimedRunner)
    report = benchmark_models([runner], batches=(2,), warmup=3, iters=5)
    t = report.timings[0]
    assert runner.calls == 8 and t.device is not None and t.device.p50_ms == pytest.approx(2.0)


def test_latency_stats_from_known_samples() -> None:
    s = LatencyStats.from_seconds([0.001, 0.002, 0.003, 0.004], batch=2)
    assert (
        s.p50_ms == pytest.approx(2.5) and s.mean_ms == pytest.approx(2.5) and s.min_ms == pytest.approx(1.0)
    )
    assert s.throughput == pytest.approx(800.0)
