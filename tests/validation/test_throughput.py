"""Latency benchmarks of tiny models: sane numbers, ratios, inputs, plug-in runners (timing bounds loose)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.validation import _models as m
from trtforge.pipeline.artifact import TensorSpec
from trtforge.pipeline.errors import InputError
from trtforge.pipeline.validation.throughput import (
    LatencyStats,
    TimedRunner,
    benchmark_models,
    measure_latency,
)


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


class _SlowRunner:
    """A plug-in runner whose run takes a known time (sleep), so medians and ratios are predictable."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds, self.calls = name, seconds, 0
        self.fed: list[Mapping[str, np.ndarray]] = []

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return (TensorSpec("x", "float32", ("N", 2)),)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Any:
        import time

        self.calls += 1
        self.fed.append(feeds)
        time.sleep(self.seconds)
        return {"y": feeds["x"]}


def test_measure_latency_interleaves_and_gives_medians_and_ratios() -> None:
    fast, slow = _SlowRunner("fast", 0.001), _SlowRunner("slow", 0.01)
    first, second = measure_latency([fast, slow], batch=3, warmup=2, iters=9)
    assert fast.calls == slow.calls == 11 and fast.fed[-1]["x"].shape == (3, 2)  # seeded random inputs
    assert (first.model, second.model) == (
        "fast",
        "slow",
    ) and first.latency.iters == second.latency.iters == 9
    # sleeps overshoot under load: the bounds stay loose, medians keep them robust
    assert first.p50_ratio == 1.0 and 2.5 < second.p50_ratio < 20 and 2.5 < second.paired_ratio < 20
    assert 1.0 <= first.latency.p50_ms < second.latency.p50_ms
    given = {"x": np.ones((5, 2), np.float32)}
    measure_latency([fast], [given], batch=5, warmup=0, iters=1)
    assert fast.fed[-1] is given
    with pytest.raises(InputError, match="one feed per model"):
        measure_latency([fast, slow], [given], warmup=0, iters=1)
    with pytest.raises(InputError, match="iters >= 1"):
        measure_latency([fast], iters=0)


@pytest.fixture
def latency_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls of the one latency helper (it still measures)."""
    from trtforge.pipeline.validation import throughput

    calls: list[dict[str, Any]] = []
    real = throughput.measure_latency

    def spy(models: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        calls.append({"models": list(models), **kwargs})
        return real(models, *args, **kwargs)

    monkeypatch.setattr(throughput, "measure_latency", spy)
    return calls


def test_prune_times_before_and_after_with_the_helper(
    tmp_path: Path, latency_calls: list[dict[str, Any]]
) -> None:
    import onnx

    from tests.graph.pruning import models
    from trtforge.pipeline.artifact import Artifact
    from trtforge.pipeline.stage import StageContext
    from trtforge.pipeline.stages.prune import PruneConfig, PruneStage

    src = tmp_path / "chain.onnx"
    onnx.save(models.chain(), str(src))
    (tmp_path / "out").mkdir()
    stage = PruneStage(PruneConfig(ratio=0.5, round_to=8, latency_runs=3))
    result = stage.run(Artifact.from_onnx_path(src), StageContext(out_dir=tmp_path / "out"))
    (call,) = latency_calls
    assert call["models"] == [src, result.artifact.path] and call["iters"] == 3 and call["threads"] == 1
    lat = result.metrics["latency_ms"]
    assert lat["before"] > 0 and lat["after"] > 0 and lat["after_vs_before"] > 0


def test_quantize_times_int8_against_fp32_with_the_helper(
    tmp_path: Path, latency_calls: list[dict[str, Any]]
) -> None:
    from trtforge.pipeline.stages.quantize import QuantizeConfig, _size_and_latency

    fp32 = m.classifier(tmp_path / "fp32.onnx")
    int8 = m.perturbed(tmp_path / "int8.onnx", 0.1)
    out, _ = _size_and_latency(fp32, int8, QuantizeConfig(batch_size=4))
    (call,) = latency_calls
    assert call["models"] == [fp32, int8] and call["batch"] == 4
    assert out["latency_ratio_int8_vs_fp32"] > 0 and out["latency_batch"] == 4
