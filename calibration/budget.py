"""Accuracy budgets: what "close enough to FP32" means, and checking it.

Spec (comma-separated terms, all must hold):
- ``top1:0.5%`` (or ``top1:0.005``): top-1 drop against the labels (or agreement with FP32's
  argmax when there are no labels) of at most 0.5 points, on the first output (or ``top1@out``).
- ``cosine:0.999``: mean per-sample cosine similarity to FP32 of at least 0.999, every output
  (or ``cosine@out:0.999`` for one).
- ``maxabs@out:0.05``: largest absolute difference to FP32 on output ``out``.
- ``iou:0.95``: on every dense probability map (float, rank >= 3, values in [0, 1]; or ``iou@out``),
  IoU of the pixels above 0.5 in FP32's map and in the candidate's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trtforge.calibration.errors import CalibrationError

KINDS = ("top1", "cosine", "maxabs", "iou")


@dataclass(frozen=True)
class Term:
    kind: str
    value: float
    output: str | None = None

    def describe(self) -> str:
        where = f"@{self.output}" if self.output else ""
        return f"{self.kind}{where}:{self.value:g}"


@dataclass(frozen=True)
class BudgetCheck:
    """Measured values per term; truthy when every term holds."""

    terms: tuple[tuple[Term, float, bool], ...]
    error: float  # continuous score (mean 1 - cosine over outputs), used to rank sensitivity

    def __bool__(self) -> bool:
        return all(ok for _, _, ok in self.terms)

    def to_dict(self) -> dict[str, object]:
        return {t.describe(): {"value": v, "ok": ok} for t, v, ok in self.terms} | {"error": self.error}


def parse_budget(spec: str) -> tuple[Term, ...]:
    terms = []
    for raw in (s.strip() for s in spec.split(",") if s.strip()):
        head, sep, val = raw.rpartition(":")
        kind, _, output = head.partition("@")
        if not sep or kind not in KINDS:
            raise CalibrationError(
                f"accuracy budget term {raw!r}: expected one of top1:0.5%, cosine:0.999, iou:0.95, "
                "maxabs@OUTPUT:0.05 (or none)"
            )
        try:
            value = float(val[:-1]) / 100.0 if val.endswith("%") else float(val)
        except ValueError as exc:
            raise CalibrationError(f"accuracy budget term {raw!r}: {val!r} is not a number") from exc
        if kind == "top1" and not val.endswith("%") and value >= 1:
            value /= 100.0  # "top1:0.5" read as points
        terms.append(Term(kind, value, output or None))
    if not terms:
        raise CalibrationError("empty accuracy budget; use e.g. top1:0.5% or cosine:0.999")
    return tuple(terms)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a2 = a.reshape(a.shape[0], -1).astype(np.float64) if a.ndim else a.reshape(1, 1)
    b2 = b.reshape(b.shape[0], -1).astype(np.float64) if b.ndim else b.reshape(1, 1)
    num = np.sum(a2 * b2, axis=1)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    sims = np.where(den > 0, num / np.maximum(den, 1e-30), np.where(np.allclose(a2, b2), 1.0, 0.0))
    return float(np.mean(sims))


def map_iou(ref: np.ndarray, cand: np.ndarray, threshold: float = 0.5) -> float | None:
    """IoU of ``ref > threshold`` and ``cand > threshold`` where ``ref`` is a probability map (float,
    rank >= 3, values in [0, 1]) with at least one pixel above it; None otherwise."""
    if ref.dtype.kind != "f" or ref.ndim < 3 or ref.size == 0 or ref.min() < 0 or ref.max() > 1:
        return None
    on_r, on_c = ref > threshold, cand > threshold
    if not on_r.any():
        return None
    return float(np.count_nonzero(on_r & on_c) / np.count_nonzero(on_r | on_c))


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits.reshape(logits.shape[0], -1), axis=1) == labels.reshape(-1)))


def check(
    terms: Sequence[Term],
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
) -> BudgetCheck:
    """Compare ``candidate`` outputs with the FP32 ``reference`` outputs under ``terms``."""
    names = list(reference)
    results = []
    for t in terms:
        outs = [t.output] if t.output else names
        bad = [o for o in outs if o not in reference]
        if bad:
            raise CalibrationError(f"accuracy budget names output {bad[0]!r}; outputs are {names}")
        if t.kind == "top1":
            ref, cand = reference[outs[0]], candidate[outs[0]]
            truth = labels if labels is not None else np.argmax(ref.reshape(ref.shape[0], -1), axis=1)
            drop = top1(ref, truth) - top1(cand, truth)
            results.append((t, drop, drop <= t.value + 1e-12))
        elif t.kind == "iou":
            ious = [v for o in outs if (v := map_iou(reference[o], candidate[o])) is not None]
            if ious:
                results.append((t, min(ious), min(ious) >= t.value))
        elif t.kind == "cosine":
            worst = min(cosine(reference[o], candidate[o]) for o in outs)
            results.append((t, worst, worst >= t.value))
        else:
            worst = max(float(np.max(np.abs(reference[o] - candidate[o]))) for o in outs)
            results.append((t, worst, worst <= t.value))
    error = float(np.mean([1.0 - cosine(reference[o], candidate[o]) for o in names]))
    return BudgetCheck(tuple(results), error)
