"""Numerical parity between a reference model and a candidate, on real data, with Polygraphy's comparator.

``compare_models(reference, candidate, feeds, options)`` runs both models on every feed through
``polygraphy.comparator.Comparator.run(..., streaming=True)``: all runners active at once, one batch
in memory at a time, each feed coerced to each runner's input dtypes (so an FP16-input candidate
takes the reference's FP32 data). The reference can also be given as precomputed outputs (one dict
per feed), so a stage can compare many candidates against one reference run.

The outputs of each batch go to our accumulators (``error_stats``, ``metrics``) rather than to
``Comparator.compare_accuracy`` with ``SimpleCompareFunc``, because: its element-wise check passes an
element when ``abs <= atol`` OR ``rel <= rtol``, while our rule (:mod:`.rule`, the one every stage's
self-check uses too) is numpy's ``|cand - ref| <= atol + rtol * |ref|``; its statistics (quantiles,
cosine) are per iteration and cannot be combined into data-set-wide p99 or cosine; and
``compare_accuracy`` computes full statistics of both outputs on every iteration for its log
(median, p90/p95/p99, std...) even when logging is off, which measured at 1.5x the cost of all our
statistics on 1M-element outputs.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.pipeline.backends.base import Runner
from trtforge.pipeline.config import from_dict, read_toml
from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import ConfigError, InputError, first_line
from trtforge.pipeline.stage import Gate, ProgressFn, _no_progress
from trtforge.pipeline.validation.error_stats import RESERVOIR_SIZE, OutputParity, OutputsAccumulator
from trtforge.pipeline.validation.feeds import RANDOM_DATA_WARNING, ort_run_errors
from trtforge.pipeline.validation.metrics import METRICS, LabelAccuracy, Top1Accumulator, Top1Result
from trtforge.pipeline.validation.rule import PASS_RULE, Tolerance, limit_gate, parity_gate

log = logging.getLogger(__name__)

Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Tolerances:
    """A default tolerance plus per-output overrides."""

    default: Tolerance = field(default_factory=Tolerance)
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)

    def for_output(self, name: str) -> Tolerance:
        return self.per_output.get(name, self.default)

    def check_names(self, outputs: Iterable[str], where: str) -> None:
        valid = list(outputs)
        for name in self.per_output:
            if name not in valid:
                raise ConfigError(
                    f"{where}: tolerance for unknown output {name!r}; model outputs are: "
                    f"{', '.join(repr(v) for v in valid)}"
                )


def tolerances_from_table(table: Mapping[str, Any], default: Tolerance, where: str) -> Tolerances:
    """``{output: {atol=.., rtol=..}}`` -> Tolerances; a key left out takes the global value."""
    per: dict[str, Tolerance] = {}
    for name, entry in table.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"{where}: [outputs.{name}] must be a table like {{ atol = 1e-3, rtol = 1e-2 }}"
            )
        merged = {"atol": default.atol, "rtol": default.rtol, **entry}
        per[str(name)] = from_dict(Tolerance, merged, f"{where}: outputs.{name}")
    return Tolerances(default, per)


def read_tolerances(path: str | Path, default: Tolerance) -> Tolerances:
    """Per-output tolerances from a TOML file: ``[outputs.NAME]`` tables with ``atol``/``rtol``."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: tolerances file not found; pass a TOML file with [outputs.NAME] tables")
    raw = read_toml(path)
    unknown = sorted(set(raw) - {"outputs"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; write per-output tables as [outputs.NAME]")
    table = raw.get("outputs", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: 'outputs' must be a table of [outputs.NAME] tables")
    return tolerances_from_table(table, default, str(path))


@dataclass(frozen=True)
class ParityOptions:
    """How to compare: tolerances, task metric, and run settings."""

    tolerances: Tolerances = field(default_factory=Tolerances)
    metric: str = "none"  # none | top1
    min_top1: float = 0.99
    metric_output: str | None = None  # output the task metric reads; default: the first output
    threads: int | None = None  # ONNX Runtime intra-op threads; None: ORT default
    random_data: bool = False  # recorded (and warned about) in the report
    reservoir_size: int = RESERVOIR_SIZE

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if not 0.0 <= self.min_top1 <= 1.0:
            raise ConfigError(f"min_top1 must be in [0, 1], got {self.min_top1}")


@dataclass(frozen=True)
class ParityReport:
    """Per-output parity, optional top-1 agreement and label accuracy. Truthy when every check passed."""

    outputs: tuple[OutputParity, ...]
    samples: int
    batches: int
    random_data: bool = False
    top1: Top1Result | None = None
    accuracy: LabelAccuracy | None = None

    @property
    def passed(self) -> bool:
        return all(self.outputs) and (self.top1 is None or self.top1.passed)

    def __bool__(self) -> bool:
        return self.passed

    def gates(self) -> tuple[Gate, ...]:
        gates = [parity_gate("parity", self.outputs)]
        top1 = self.top1
        if top1 is not None:
            gates.append(
                limit_gate(
                    "top1",
                    top1.agreement if top1.count else float("nan"),  # nothing compared: fails
                    at_least=top1.min_top1,
                    detail=f"top-1 agreement {top1.agreement:.4f} on {top1.output!r} (min {top1.min_top1})",
                )
            )
        return tuple(gates)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": self.passed,
            "random_data": self.random_data,
            "samples": self.samples,
            "batches": self.batches,
            "pass_rule": PASS_RULE,
            "outputs": [o.to_dict() for o in self.outputs],
            "top1": self.top1.to_dict() if self.top1 else None,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
        }
        if self.random_data:
            out["warning"] = RANDOM_DATA_WARNING
        return out


class _CountingFeeds:
    """Passes feeds through, remembering the batch size of each (for labels and progress)."""

    def __init__(self, feeds: Iterable[Outputs]) -> None:
        self.feeds = feeds
        self.sizes: list[int] = []

    def __iter__(self) -> Iterator[Outputs]:
        for feed in self.feeds:
            first = next(iter(feed.values()), None)
            self.sizes.append(int(first.shape[0]) if first is not None and first.ndim else 1)
            yield feed


class _Accumulate:
    """Takes (reference, candidate) outputs batch by batch; returns {output: passed} per batch.

    The compared outputs are the reference's (known at the first batch for precomputed ones).
    """

    def __init__(
        self,
        options: ParityOptions,
        feeds: _CountingFeeds,
        labels: np.ndarray | None,
        progress: ProgressFn,
        total: int,
    ) -> None:
        self.options, self.feeds, self.labels = options, feeds, labels
        self.progress, self.total = progress, total
        self.outputs = OutputsAccumulator(options.tolerances.for_output, options.reservoir_size)
        self.top1: Top1Accumulator | None = None
        self.iterations = self.samples = 0

    @property
    def names(self) -> list[str]:
        return self.outputs.names

    def setup(self, names: list[str]) -> None:
        opts = self.options
        opts.tolerances.check_names(names, "tolerances")
        self.outputs.setup(names)
        if opts.metric == "top1":
            out = opts.metric_output or names[0]
            if out not in names:
                raise ConfigError(
                    f"metric output {out!r} is not an output; outputs are: "
                    f"{', '.join(repr(n) for n in names)}"
                )
            self.top1 = Top1Accumulator(out, opts.min_top1, self.labels)

    def __call__(self, ref_result: Outputs, cand_result: Outputs) -> OrderedDict[str, bool]:
        if not self.names:
            self.setup(list(ref_result.keys()))
        n = self.feeds.sizes[self.iterations]
        verdict = self.outputs.update(ref_result, cand_result)
        if self.top1 is not None:
            k = self.top1.output
            self.top1.update(np.asarray(ref_result[k]), np.asarray(cand_result[k]), n)
        self.iterations += 1
        self.samples += n
        self.progress("parity", self.samples, max(self.total, self.samples))
        return verdict


def compare_models(
    reference: str | Path | Iterable[Outputs],
    candidate: str | Path,
    feeds: Iterable[Outputs],
    options: ParityOptions | None = None,
    *,
    labels: np.ndarray | None = None,
    progress: ProgressFn = _no_progress,
    total_samples: int = 0,
) -> ParityReport:
    """Compare ``candidate`` with ``reference`` (an ONNX path, or precomputed outputs, one per feed).

    ``feeds`` are ``{input name: array}`` batches (first axis = samples); ``labels`` (one per sample,
    in feed order) add each model's accuracy when ``options.metric == "top1"``.
    """
    opts = options or ParityOptions()
    comparator = require("polygraphy.comparator", "parity checks")
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    counted = _CountingFeeds(feeds)
    compare = _Accumulate(opts, counted, labels, progress, total_samples)
    cand = _open(candidate, "candidate", opts.threads)
    runners = [cand.runner]
    consume: Callable[[Any, _Accumulate], None]
    if isinstance(reference, (str, Path)):
        ref = _open(reference, "reference", opts.threads)
        _check_io(ref, cand, reference, candidate)
        compare.setup(list(ref.outputs))
        runners.insert(0, ref.runner)
        consume, which = _consume_pairs, f"{reference} / {candidate}"
    else:
        consume, which = functools.partial(_consume_with_precomputed, reference=reference), str(candidate)
    # Polygraphy prints to stdout; silence it (even CRITICAL) so --json output stays clean.
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):
        stream = comparator.Comparator.run(runners, data_loader=counted, streaming=True)
        try:
            consume(stream, compare)
        except (PolygraphyException, *ort_run_errors()) as exc:
            first = first_line(exc)
            raise InputError(
                f"{which}: inference failed on the validation data: {first}; check the data fits the model"
            ) from exc
        finally:
            stream.close()
    if compare.iterations == 0:
        raise InputError("validation data holds no samples; pass a non-empty .npy/.npz or directory")
    return _report(compare, opts)


def _consume_pairs(stream: Any, compare: _Accumulate) -> None:
    for single in stream:  # RunResults: [(runner name, [IterationResult])], reference first
        compare(single[0][1][0], single[1][1][0])


def _consume_with_precomputed(stream: Any, compare: _Accumulate, reference: Iterable[Outputs]) -> None:
    ref_iter = iter(reference)
    for single in stream:
        ref_out = next(ref_iter, None)
        if ref_out is None:
            raise InputError(
                f"reference outputs cover {compare.iterations} batches but the data has more; "
                "give one set of reference outputs per batch"
            )
        compare(ref_out, single[0][1][0])
    if next(ref_iter, None) is not None:
        raise InputError(
            f"reference outputs cover more batches than the data ({compare.iterations}); "
            "give one set of reference outputs per batch"
        )


def _report(compare: _Accumulate, opts: ParityOptions) -> ParityReport:
    top1 = compare.top1.top1_result() if compare.top1 else None
    accuracy = compare.top1.label_accuracy() if compare.top1 else None
    outputs = compare.outputs.results()
    report = ParityReport(outputs, compare.samples, compare.iterations, opts.random_data, top1, accuracy)
    log.info("parity on %d samples: %s", report.samples, "passed" if report else "FAILED")
    return report


@dataclass(frozen=True)
class _Opened:
    """A Polygraphy runner for one model file, with the model's input and output names."""

    runner: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def polygraphy_runner(path: str | Path, name: str, threads: int | None = None) -> Any:
    """A Polygraphy runner for a model file: :func:`polygraphy_view` of its backend's runner."""
    from trtforge.pipeline.backends.base import RunnerOptions, open_runner

    return polygraphy_view(open_runner(path, RunnerOptions(threads=threads, name=name)))


def polygraphy_view(runner: Runner) -> Any:
    """Polygraphy's ``BaseRunner`` interface over one of our runners (any backend)."""
    return polygraphy_runner_class()(runner)


def _open(path: str | Path, name: str, threads: int | None) -> _Opened:
    """The runner, loaded now so environment and model errors come before any data is read."""
    runner = polygraphy_runner(path, name, threads)
    inner: Runner = runner.runner.activate()  # for engines: metadata, GPU and TensorRT checks first
    return _Opened(runner, tuple(inner.input_names), tuple(inner.output_names))


@functools.cache
def polygraphy_runner_class() -> type:
    """``PolygraphyView``: Polygraphy's ``BaseRunner`` over a :class:`Runner`, built on first use (so
    Polygraphy is imported only when parity runs). Polygraphy's own runners are not used: ours own
    session creation (plugins), engine metadata and compatibility checks, and CUDA-event timing."""
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class PolygraphyView(BaseRunner):  # type: ignore[misc]
        def __init__(self, runner: Runner) -> None:
            super().__init__(name=runner.name, prefix="trtforge-runner")
            self.runner = runner

        def activate_impl(self) -> None:
            self.runner.activate()

        def get_input_metadata_impl(self) -> Any:
            meta = TensorMetadata()
            for spec in self.runner.inputs:
                meta.add(spec.name, dtype=np.dtype(spec.dtype), shape=spec.shape)
            return meta

        def infer_impl(self, feed_dict: Mapping[str, Any]) -> OrderedDict[str, np.ndarray]:
            from polygraphy import util

            out = self.runner.run({k: util.array.to_numpy(v) for k, v in feed_dict.items()})
            device = self.runner.device_time_s()
            self.inference_time = device if device is not None else self.runner.last_inference_time
            return OrderedDict((n, out[n]) for n in self.runner.output_names)

        def deactivate_impl(self) -> None:
            self.runner.deactivate()

    return PolygraphyView


def _check_io(ref: _Opened, cand: _Opened, ref_path: str | Path, cand_path: str | Path) -> None:
    if sorted(ref.inputs) != sorted(cand.inputs):
        raise InputError(
            f"{cand_path}: inputs {', '.join(cand.inputs)} differ from the reference {ref_path} "
            f"({', '.join(ref.inputs)}); compare models with the same inputs"
        )
    missing = [o for o in ref.outputs if o not in cand.outputs]
    if missing:
        raise InputError(
            f"{cand_path}: has no output {missing[0]!r} of the reference {ref_path}; its outputs are: "
            f"{', '.join(sorted(cand.outputs))}"
        )
