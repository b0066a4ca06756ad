"""The self-checks stages run on their output: a few batches against a reference, under the one rule.

``export`` compares ONNX Runtime with torch, ``fuse`` and ``prune`` their output with their input,
the ONNX Runtime ``build`` target its optimized model with its input. Each builds a
:class:`~.rule.ParityCheck` from its config, runs both models (or takes their outputs) batch by
batch into a :class:`SelfCheck`, and gets a :class:`SelfCheckResult`: the per-output statistics of
:mod:`.error_stats`, one metrics dict with the same keys for every stage (:meth:`SelfCheckResult.to_dict`)
and the gate of :func:`~.rule.parity_gate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtforge.pipeline.backends.base import Runner
from trtforge.pipeline.stage import Gate
from trtforge.pipeline.validation.error_stats import OutputParity, OutputsAccumulator
from trtforge.pipeline.validation.rule import ParityCheck, Tolerance, parity_gate

Feed = Mapping[str, np.ndarray]
#: turns an exception of ``runner.run`` into the error the stage raises (None: let it through)
OnRunError = Callable[[Runner, Exception], Exception]


@dataclass(frozen=True)
class SelfCheckResult:
    """A self-check's outcome. Truthy when every output kept the rule."""

    outputs: tuple[OutputParity, ...]
    tolerance: Tolerance
    source: str  # "random" or the data set the inputs came from
    batches: int
    samples: int

    @property
    def passed(self) -> bool:
        return all(self.outputs)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def max_abs(self) -> float:
        """Largest absolute error over every output (inf where a shape differs)."""
        if any(o.detail for o in self.outputs):
            return float("inf")
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        """Largest relative error ``|cand - ref| / max(|ref|, 1e-12)`` over every output."""
        if any(o.detail for o in self.outputs):
            return float("inf")
        return max((o.max_rel for o in self.outputs), default=0.0)

    def gate(self, name: str, what: str = "") -> Gate:
        return parity_gate(name, self.outputs, what)

    def to_dict(self) -> dict[str, Any]:
        """The keys every stage's parity metrics share."""
        return {
            "passed": self.passed,
            "source": self.source,
            "batches": self.batches,
            "samples": self.samples,
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
            "count": sum(o.count for o in self.outputs),
            "violations": sum(o.violations for o in self.outputs),
            "max_abs_err": self.max_abs,
            "max_rel_err": self.max_rel,
        }


class SelfCheck:
    """Takes (reference, candidate) outputs batch by batch; ``result()`` gives a :class:`SelfCheckResult`."""

    def __init__(self, check: ParityCheck, source: str = "random") -> None:
        self.check = check
        self.source = source
        self.outputs = OutputsAccumulator(lambda _: check.tolerance, equal_nan=check.equal_nan)
        self.batches = self.samples = 0

    def update(self, reference: Feed, candidate: Feed, samples: int | None = None) -> None:
        self.outputs.update(reference, candidate)
        self.batches += 1
        first = next(iter(reference.values()), None)
        self.samples += samples if samples is not None else _leading(first)

    def result(self) -> SelfCheckResult:
        return SelfCheckResult(
            self.outputs.results(), self.check.tolerance, self.source, self.batches, self.samples
        )


def _leading(value: np.ndarray | None) -> int:
    return int(value.shape[0]) if value is not None and value.ndim else 1


def compare_runners(
    reference: Runner,
    candidate: Runner,
    feeds: Iterable[Feed],
    check: ParityCheck,
    source: str = "random",
    on_error: OnRunError | None = None,
    on_batch: Callable[[Feed, Feed], None] | None = None,
) -> SelfCheckResult:
    """Run both models on every feed and compare every output of the reference.

    ``on_batch(reference outputs, candidate outputs)`` sees every batch (for a stage's own report).
    """
    checked = SelfCheck(check, source)
    for feed in feeds:
        want, got = _run(reference, feed, on_error), _run(candidate, feed, on_error)
        checked.update(want, got, _leading(next(iter(feed.values()), None)))
        if on_batch is not None:
            on_batch(want, got)
    return checked.result()


def _run(runner: Runner, feed: Feed, on_error: OnRunError | None) -> dict[str, np.ndarray]:
    if on_error is None:
        return runner.run(feed)
    try:
        return runner.run(feed)
    except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidArgument types
        raise on_error(runner, exc) from exc
