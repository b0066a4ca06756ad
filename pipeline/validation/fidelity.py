"""Fidelity of a changed model to the model it came from, on the user's data, and the default floor.

A stage that changes numbers by design (prune, quantize, convert-fp16) is not held to the parity
rule (:mod:`.rule`: every element within atol + rtol * |ref|) but to *fidelity*: how close its
outputs stay to its input's, per output, with metrics chosen by what the output looks like.

Metrics (accumulated batch by batch, so any data set runs in bounded memory):

* ``cosine``: mean over samples of the cosine similarity of each sample's flattened output
  (two all-zero samples count as 1); always;
* ``rel_l2``: ``||cand - ref|| / ||ref||`` over the whole output; always (reported);
* ``agreement``: where an output looks like class scores (float ``[batch, classes >= 2]`` holding
  probabilities, or logits not named like boxes, landmarks or embeddings: :func:`output_kind`),
  the fraction of samples whose argmax is the same; for integer outputs (predicted labels), the
  fraction of equal elements (cosine is reported but not gated on them);
* ``iou``: where an output is a dense probability map (float, rank >= 3, every reference value in
  [0, 1]), the IoU of the pixels above 0.5 in the reference and in the candidate, the map
  thresholded where the reference is confident (undefined while the reference has none above 0.5).

The floor (a budget in the grammar of :mod:`trtforge.calibration.budget`) is checked on every
output where its metric is defined. :data:`DEFAULT_BUDGET`, used when the user gives none, is
``cosine:0.99,top1:2%,iou:0.95``: cosine >= 0.99 on every output, argmax agreement >= 0.98 on
class-score outputs (a top-1 drop of at most 2 points against the input's own predictions) and
map IoU >= 0.95 on probability maps. ``none`` measures and reports without gating.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.pipeline.errors import InputError, first_line
from trtforge.pipeline.stage import Gate

#: the floor a stage that changes numbers keeps unless told otherwise (module docstring)
DEFAULT_BUDGET = "cosine:0.99,top1:2%,iou:0.95"
#: the budget value that turns the gate off (the metrics are still measured and reported)
NO_BUDGET = "none"
#: a probability map's pixel counts as on above this
MAP_THRESHOLD = 0.5


def budget_terms(spec: str | None) -> tuple[Any, ...]:
    """The terms of ``spec`` (``None``: :data:`DEFAULT_BUDGET`; ``"none"``: no terms, no gate)."""
    from trtforge.calibration.budget import parse_budget

    if spec is not None and spec.strip().lower() == NO_BUDGET:
        return ()
    return parse_budget(DEFAULT_BUDGET if spec is None else spec)


#: output names that say "regression, not class scores" (boxes, landmarks, embeddings...)
_NOT_SCORES = re.compile(
    r"box|landmark|coord|offset|regress|loc|point|kpt|keypoint|embed|feature|vector", re.I
)


def output_kind(ref: np.ndarray, name: str = "") -> str:
    """What an output looks like, to choose its metrics: ``labels`` (integers: class indices),
    ``scores`` (float [batch, classes >= 2]: probabilities, or logits whose name does not say
    boxes, landmarks, embeddings...), ``map`` (float, rank >= 3, values in [0, 1]), else ``tensor``.
    L2-normalised rows with negative entries are embeddings, not scores."""
    if ref.dtype.kind in "biu":
        return "labels"
    if ref.dtype.kind != "f" or ref.size == 0:
        return "tensor"
    finite = bool(np.all(np.isfinite(ref)))
    if ref.ndim == 2 and ref.shape[1] >= 2:
        rows = ref.astype(np.float64)
        probabilities = finite and rows.min() >= 0 and bool(np.allclose(rows.sum(1), 1.0, atol=1e-3))
        if probabilities:
            return "scores"
        unit = finite and rows.min() < 0 and bool(np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3))
        return "tensor" if unit or _NOT_SCORES.search(name) else "scores"
    if ref.ndim >= 3 and finite and ref.min() >= 0.0 and ref.max() <= 1.0:
        return "map"
    return "tensor"


@dataclass
class _Sums:
    kind: str
    samples: int = 0
    cos_sum: float = 0.0
    diff_sq: float = 0.0
    ref_sq: float = 0.0
    agree: int = 0
    elements: int = 0
    inter: int = 0
    union: int = 0
    ref_on: int = 0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        r = ref.astype(np.float64, copy=False)
        c = cand.astype(np.float64, copy=False)
        n = r.shape[0] if r.ndim else 1
        r2, c2 = r.reshape(n, -1), c.reshape(n, -1)
        num = np.sum(r2 * c2, axis=1)
        den = np.linalg.norm(r2, axis=1) * np.linalg.norm(c2, axis=1)
        both_zero = (np.linalg.norm(r2, axis=1) == 0) & (np.linalg.norm(c2, axis=1) == 0)
        cos = np.where(den > 0, num / np.maximum(den, 1e-300), np.where(both_zero, 1.0, 0.0))
        self.cos_sum += float(np.sum(np.nan_to_num(cos, nan=0.0)))
        self.samples += n
        self.diff_sq += float(np.sum((c2 - r2) ** 2))
        self.ref_sq += float(np.sum(r2**2))
        if self.kind == "labels":
            self.agree += int(np.count_nonzero(r2 == c2))
            self.elements += int(r2.size)
        elif self.kind == "scores":
            self.agree += int(np.count_nonzero(r2.argmax(1) == c2.argmax(1)))
        elif self.kind == "map":
            on_r, on_c = r > MAP_THRESHOLD, c > MAP_THRESHOLD
            self.inter += int(np.count_nonzero(on_r & on_c))
            self.union += int(np.count_nonzero(on_r | on_c))
            self.ref_on += int(np.count_nonzero(on_r))


@dataclass(frozen=True)
class OutputFidelity:
    """The fidelity metrics of one output (``agreement``/``iou`` None where undefined)."""

    name: str
    kind: str
    samples: int
    cosine: float
    rel_l2: float
    agreement: float | None = None
    iou: float | None = None

    def value(self, metric: str) -> float | None:
        return {"cosine": self.cosine, "top1": self.agreement, "iou": self.iou}.get(metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "samples": self.samples,
            "cosine": self.cosine,
            "rel_l2": self.rel_l2,
            "agreement": self.agreement,
            "iou": self.iou,
        }

    def describe(self) -> str:
        parts = [f"cosine {self.cosine:.5f}", f"rel L2 {self.rel_l2:.3g}"]
        if self.agreement is not None:
            parts.append(f"argmax agreement {self.agreement:.2%}")
        if self.iou is not None:
            parts.append(f"map IoU {self.iou:.4f}")
        return f"{self.name}: " + ", ".join(parts)


@dataclass(frozen=True)
class FloorCheck:
    """One budget term on one output: the measured value against its bound."""

    term: str
    output: str
    value: float
    bound: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "output": self.output,
            "value": self.value,
            "bound": self.bound,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class FidelityReport:
    """Per-output fidelity on ``source`` data and the budget's checks (empty: no gate)."""

    outputs: tuple[OutputFidelity, ...]
    checks: tuple[FloorCheck, ...]
    budget: str
    source: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def worst(self, metric: str) -> float | None:
        values = [v for o in self.outputs if (v := o.value(metric)) is not None]
        return min(values) if values else None

    def gate(self, name: str = "fidelity") -> Gate:
        """One gate: the failed check with the largest shortfall (else the tightest passing one)."""
        if not self.checks:
            return Gate(name, True, None, None, f"budget {self.budget}: measured, not gated")
        failed = [c for c in self.checks if not c.passed]
        pick = max(failed, key=_gap) if failed else min(self.checks, key=_gap)
        detail = (
            f"{pick.term} on output {pick.output!r}: {pick.value:.5g} (bound {pick.bound:g}) "
            f"on {self.outputs[0].samples if self.outputs else 0} samples of {self.source} data"
        )
        if failed:
            detail += "; pass a looser --accuracy-budget, or --accuracy-budget none to publish anyway"
        return Gate(name, not failed, pick.value, pick.bound, detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "source": self.source,
            "passed": self.passed,
            "outputs": [o.to_dict() for o in self.outputs],
            "checks": [c.to_dict() for c in self.checks],
        }

    def lines(self) -> list[str]:
        return [o.describe() for o in self.outputs]


def _gap(c: FloorCheck) -> float:
    return abs(c.value - c.bound)


@dataclass
class FidelityAccumulator:
    """Accumulates fidelity batch by batch: ``update(ref_outputs, cand_outputs)``, then ``report()``."""

    terms: tuple[Any, ...]
    budget: str
    source: str = "validation"
    _sums: dict[str, _Sums] = field(default_factory=dict)

    @property
    def seen(self) -> bool:
        """Whether any batch was added."""
        return bool(self._sums)

    def update(self, ref: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray]) -> None:
        for name, r in ref.items():
            c = cand.get(name)
            if c is None or not isinstance(r, np.ndarray) or r.dtype.kind not in "biuf":
                continue
            if np.shape(c) != r.shape:
                raise InputError(
                    f"output {name!r}: shape {np.shape(c)} differs from the reference's {r.shape}; "
                    "fidelity compares models with the same outputs"
                )
            sums = self._sums.get(name)
            if sums is None:
                sums = self._sums[name] = _Sums(output_kind(r, name))
            elif sums.kind == "map" and output_kind(r, name) != "map":
                sums.kind = "tensor"  # a later batch left [0, 1]: not a probability map after all
            sums.update(r, np.asarray(c))

    def report(self) -> FidelityReport:
        outs = tuple(_finish(name, s) for name, s in self._sums.items())
        checks: list[FloorCheck] = []
        for term in self.terms:
            for o in outs:
                if term.output is not None and term.output != o.name:
                    continue
                check = _check(term, o)
                if check is not None:
                    checks.append(check)
        return FidelityReport(outs, tuple(checks), self.budget, self.source)


def _finish(name: str, s: _Sums) -> OutputFidelity:
    rel = float(np.sqrt(s.diff_sq / s.ref_sq)) if s.ref_sq > 0 else (0.0 if s.diff_sq == 0 else float("inf"))
    agreement = s.agree / s.samples if s.kind == "scores" and s.samples else None
    if s.kind == "labels" and s.elements:
        agreement = s.agree / s.elements
    iou = s.inter / s.union if s.kind == "map" and s.ref_on else None
    return OutputFidelity(name, s.kind, s.samples, s.cos_sum / max(s.samples, 1), rel, agreement, iou)


def _check(term: Any, o: OutputFidelity) -> FloorCheck | None:
    """``term`` on output ``o`` (None where its metric is undefined there)."""
    if term.kind == "cosine":
        if o.kind == "labels":
            return None  # integers (class indices): their agreement is checked, not an angle
        return FloorCheck(term.describe(), o.name, o.cosine, term.value, o.cosine >= term.value)
    if term.kind == "top1":
        if o.agreement is None:
            return None
        bound = 1.0 - term.value  # a top-1 drop against the input's own predictions
        return FloorCheck(term.describe(), o.name, o.agreement, bound, o.agreement >= bound - 1e-12)
    if term.kind == "iou":
        if o.iou is None:
            return None
        return FloorCheck(term.describe(), o.name, o.iou, term.value, o.iou >= term.value)
    return None  # maxabs: not a fidelity metric (quantize's budget search handles it)


def measure(
    pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
    budget: str | None,
    source: str = "validation",
) -> FidelityReport:
    """Fidelity over ``(reference outputs, candidate outputs)`` batches under ``budget``."""
    acc = FidelityAccumulator(budget_terms(budget), budget or DEFAULT_BUDGET, source)
    for ref, cand in pairs:
        acc.update(ref, cand)
    return acc.report()


def compare_models(
    before: str | Path,
    after: str | Path,
    feeds: Iterable[Mapping[str, np.ndarray]],
    budget: str | None,
    source: str,
    who: str,
) -> FidelityReport:
    """Run ``before`` and ``after`` on ONNX Runtime CPU over ``feeds`` (``source``: what they are) and
    measure ``after``'s fidelity under ``budget``. ``who`` names the stage and the user's model in
    a failure to run (never a staging path)."""
    from trtforge.common.ort import SessionConfig
    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.validation.feeds import ort_run_errors

    opts = SessionConfig(intra_op_threads=None)
    ref, cand = OrtRunner(before, opts).load(), OrtRunner(after, opts).load()
    acc = FidelityAccumulator(budget_terms(budget), budget or DEFAULT_BUDGET, source)
    for feed in feeds:
        outs = []
        for runner, what in ((ref, "the input model"), (cand, "the result")):
            try:
                outs.append(runner.run(feed))
            except ort_run_errors() as exc:
                raise InputError(
                    f"{who}: ONNX Runtime cannot run {what} on the {source} data ({first_line(exc)})"
                ) from exc
        acc.update(outs[0], outs[1])
    if not acc.seen:
        raise InputError(
            f"{who}: the {source} data holds no samples; pass a non-empty .npy/.npz or directory"
        )
    return acc.report()
