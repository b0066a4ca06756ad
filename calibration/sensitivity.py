"""Accuracy-aware fallback: per-layer sensitivity, then the most sensitive groups back to float.

Sensitivity of a group = the output error (mean 1 - cosine against FP32 on the validation feeds)
with *only that group* quantized. When the fully quantized model misses the budget, groups go
back to float in order of sensitivity, one at a time, until the budget holds; each step is
recorded with what it cost and what it bought.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtforge.calibration.budget import BudgetCheck, Term, check
from trtforge.calibration.quantizer import Calibrated
from trtforge.calibration.stats import Progress

log = logging.getLogger(__name__)
Feed = Mapping[str, np.ndarray]


def run_model(
    model: onnx.ModelProto, feeds: Sequence[Feed], threads: int | None = None
) -> dict[str, np.ndarray]:
    """Outputs of ``model`` on ``feeds`` (ORT CPU, full optimizations), concatenated on the batch axis."""
    from trtforge.common.ort import SessionConfig, create_session

    sess = create_session(model, SessionConfig(intra_op_threads=threads), source="the quantized model")
    names = [o.name for o in sess.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for n, v in zip(names, sess.run(names, dict(feed)), strict=True):
            parts[n].append(np.asarray(v))
    return {n: np.concatenate(v) if v and v[0].ndim else np.stack(v) for n, v in parts.items()}


@dataclass
class FitResult:
    """The model that keeps the budget (or the best found), and how it got there."""

    model: onnx.ModelProto
    initial: BudgetCheck
    final: BudgetCheck
    fallback: list[dict[str, Any]] = field(default_factory=list)  # group, error after, metrics after
    sensitivity: dict[str, float] = field(default_factory=dict)  # group -> error alone

    def __bool__(self) -> bool:
        return bool(self.final)

    @property
    def fell_back(self) -> list[str]:
        return [step["group"] for step in self.fallback]


def sensitivity(
    cal: Calibrated,
    terms: Sequence[Term],
    feeds: Sequence[Feed],
    reference: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Error of the model with only one group quantized, for every group."""
    groups = cal.groups
    out: dict[str, float] = {}
    for i, g in enumerate(groups):
        only = cal.build(skip=[x for x in groups if x != g])
        out[g] = check(terms, reference, run_model(only, feeds, cal.options.threads), labels).error
        if progress:
            progress("sensitivity", i + 1, len(groups))
    return out


def fit_budget(
    cal: Calibrated,
    terms: Sequence[Term],
    feeds: Sequence[Feed],
    reference: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    *,
    always_analyse: bool = False,
    fallback: bool = True,
    progress: Progress | None = None,
) -> FitResult:
    """Quantize everything, and if ``terms`` fail, fall back the most sensitive groups until they hold."""
    threads = cal.options.threads
    model = cal.build()
    initial = check(terms, reference, run_model(model, feeds, threads), labels)
    result = FitResult(model, initial, initial)
    if (initial or not fallback) and not always_analyse:
        return result
    result.sensitivity = sensitivity(cal, terms, feeds, reference, labels, progress)
    if initial or not fallback:
        return result
    skip: list[str] = []
    for g in sorted(result.sensitivity, key=lambda k: -result.sensitivity[k]):
        skip.append(g)
        model = cal.build(skip=skip)
        now = check(terms, reference, run_model(model, feeds, threads), labels)
        result.fallback.append(
            {
                "group": g,
                "sensitivity": result.sensitivity[g],
                "error_after": now.error,
                "metrics_after": now.to_dict(),
            }
        )
        result.model, result.final = model, now
        log.info("fell back %s: error %.3g, budget %s", g, now.error, "holds" if now else "fails")
        if now:
            break
    return result
