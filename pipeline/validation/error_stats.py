"""Per-output error statistics, accumulated batch by batch in bounded memory.

Errors and the pass rule are :mod:`.rule`'s: every element must satisfy
``|cand - ref| <= atol + rtol * |ref|`` (numpy.isclose with the reference as ``b``); NaN fails
(unless ``equal_nan`` and both are NaN), equal infinities pass, non-numeric outputs must be equal.

Statistics: max/mean/p99 of the absolute error ``|cand - ref|`` and of the relative error
``|cand - ref| / max(|ref|, 1e-12)``, the cosine similarity of the flattened outputs over the whole
data set, and the worst element (largest error / allowed error) that parity gates report.
Non-finite elements are counted and left out of the statistics.

p99: errors are kept exactly while an output has at most ``reservoir_size`` elements in all
(the default 2**20 covers e.g. 1000 samples x 1000 classes); beyond that a uniform random
sample of that many elements is kept (bottom-k sampling on random keys, seeded), so p99 is an
estimate whose error shrinks with the reservoir size. Max and mean are always exact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtforge.pipeline.errors import InputError
from trtforge.pipeline.validation.rule import (
    REL_FLOOR,
    Tolerance,
    element_errors,
    error_ratio,
    is_numeric,
    nonfinite_failed,
)

__all__ = [
    "REL_FLOOR",
    "RESERVOIR_SIZE",
    "ErrorAccumulator",
    "OutputParity",
    "OutputsAccumulator",
    "Tolerance",
]

RESERVOIR_SIZE = 1 << 20


@dataclass(frozen=True)
class OutputParity:
    """Comparison of one output over the whole data set. Truthy when every element passed."""

    name: str
    tolerance: Tolerance
    count: int = 0
    violations: int = 0
    nonfinite: int = 0
    max_abs: float = 0.0
    mean_abs: float = 0.0
    p99_abs: float = 0.0
    max_rel: float = 0.0
    mean_rel: float = 0.0
    p99_rel: float = 0.0
    cosine: float = 1.0
    exact_p99: bool = True
    detail: str = ""  # why the output could not be compared (e.g. shape mismatch)
    worst_abs: float = 0.0  # error of the element furthest past (or nearest to) its allowed error
    worst_allowed: float = 0.0  # that element's allowed error, atol + rtol * |ref|

    @property
    def worst_ratio(self) -> float:
        return error_ratio(self.worst_abs, self.worst_allowed)

    @property
    def passed(self) -> bool:
        return self.violations == 0 and not self.detail  # an output empty in both models matches

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        if self.detail:
            return f"{self.name}: {self.detail}"
        pct = 100.0 * self.violations / self.count if self.count else 0.0
        return (
            f"{self.name}: {self.violations} of {self.count} elements ({pct:.3g}%) outside atol="
            f"{self.tolerance.atol:g} + rtol={self.tolerance.rtol:g}*|ref| (max abs err {self.max_abs:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
            "count": self.count,
            "violations": self.violations,
            "nonfinite": self.nonfinite,
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "p99_abs": self.p99_abs,
            "max_rel": self.max_rel,
            "mean_rel": self.mean_rel,
            "p99_rel": self.p99_rel,
            "cosine": self.cosine,
            "p99_exact": self.exact_p99,
            "worst_abs": self.worst_abs,
            "worst_allowed": self.worst_allowed,
            "detail": self.detail,
        }


class _Reservoir:
    """Uniform sample (without replacement) of at most ``size`` (abs, rel) error pairs.

    Every element gets a random key; the ``size`` smallest keys are kept (bottom-k sampling),
    which is a uniform sample of everything seen and merges batch by batch.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.keys = np.empty(0)
        self.abs = np.empty(0, dtype=np.float32)
        self.rel = np.empty(0, dtype=np.float32)
        self.dropped = False

    def add(self, abs_err: np.ndarray, rel_err: np.ndarray) -> None:
        n = abs_err.size
        if self.keys.size >= self.size:
            # Full: an element enters only if its key is below the largest kept key ``tau``. That
            # happens to Binomial(n, tau) elements, a uniform subset, with keys uniform below tau;
            # drawing just those keeps the cost proportional to what enters, not to n.
            tau = float(self.keys.max())
            k = int(self.rng.binomial(n, tau))
            idx: slice | np.ndarray = np.sort(self.rng.choice(n, size=k, replace=False))
            keys = self.rng.random(k) * tau
        else:
            idx, keys = slice(None), self.rng.random(n)
        self.keys = np.concatenate([self.keys, keys])
        self.abs = np.concatenate([self.abs, abs_err[idx].astype(np.float32)])
        self.rel = np.concatenate([self.rel, rel_err[idx].astype(np.float32)])
        if self.keys.size > self.size:
            keep = np.argpartition(self.keys, self.size - 1)[: self.size]
            self.keys, self.abs, self.rel = self.keys[keep], self.abs[keep], self.rel[keep]
            self.dropped = True

    def p99(self) -> tuple[float, float]:
        if not self.keys.size:
            return 0.0, 0.0
        return float(np.quantile(self.abs, 0.99)), float(np.quantile(self.rel, 0.99))


class ErrorAccumulator:
    """Accumulates the statistics of one output over batches; ``result()`` gives an ``OutputParity``."""

    def __init__(
        self,
        name: str,
        tolerance: Tolerance,
        reservoir_size: int = RESERVOIR_SIZE,
        seed: int = 0,
        equal_nan: bool = False,
    ):
        self.name = name
        self.tolerance = tolerance
        self.equal_nan = equal_nan
        self.reservoir = _Reservoir(reservoir_size, np.random.default_rng(seed))
        self.count = self.violations = self.nonfinite = self.finite = 0
        self.sum_abs = self.sum_rel = self.max_abs = self.max_rel = 0.0
        self.dot = self.ref_sq = self.cand_sq = 0.0
        self.worst = (0.0, tolerance.atol)  # (error, allowed): nothing yet, as an exact element at ref 0
        self.detail = ""

    def update(self, ref: np.ndarray, cand: np.ndarray) -> bool:
        """Add one batch; returns whether every element of this batch passed."""
        if self.detail:
            return False
        ref, cand = np.asarray(ref), np.asarray(cand)
        if ref.shape != cand.shape:
            self.detail = f"candidate shape {tuple(cand.shape)} differs from the reference {tuple(ref.shape)}"
            return False
        self.count += ref.size
        if not (is_numeric(ref) and is_numeric(cand)):  # strings and the like: equal or not
            bad = int(np.count_nonzero(ref != cand))
        else:
            r = ref.astype(np.float64).ravel()
            c = cand.astype(np.float64).ravel()
            bad = 0
            finite = np.isfinite(r) & np.isfinite(c)
            if not finite.all():
                self.nonfinite += int(finite.size - np.count_nonzero(finite))
                bad += int(np.count_nonzero(nonfinite_failed(r[~finite], c[~finite], self.equal_nan)))
                r, c = r[finite], c[finite]
            bad += self._add_stats(r, c)
        if bad and self.worst_ratio() <= 1.0:  # only non-finite or non-numeric elements broke the rule
            self.worst = (float("inf"), self.tolerance.atol)
        self.violations += bad
        return bad == 0

    def worst_ratio(self) -> float:
        return error_ratio(*self.worst)

    def _add_stats(self, r: np.ndarray, c: np.ndarray) -> int:
        """Statistics of finite elements; returns how many break the pass rule."""
        if not r.size:
            return 0
        errs = element_errors(r, c, self.tolerance)
        bad = int(np.count_nonzero(errs.failed))
        worst = errs.worst()
        if error_ratio(*worst) > self.worst_ratio():
            self.worst = worst
        self.finite += r.size
        self.sum_abs += float(errs.abs.sum())
        self.sum_rel += float(errs.rel.sum())
        self.max_abs = max(self.max_abs, float(errs.abs.max()))
        self.max_rel = max(self.max_rel, float(errs.rel.max()))
        # einsum, not np.dot: BLAS threads would compete with ONNX Runtime's for the same cores
        self.dot += float(np.einsum("i,i->", r, c))
        self.ref_sq += float(np.einsum("i,i->", r, r))
        self.cand_sq += float(np.einsum("i,i->", c, c))
        self.reservoir.add(errs.abs, errs.rel)
        return bad

    def cosine(self) -> float:
        if self.ref_sq == 0.0 and self.cand_sq == 0.0:
            return 1.0
        if self.ref_sq == 0.0 or self.cand_sq == 0.0:
            return 0.0
        return float(self.dot / np.sqrt(self.ref_sq * self.cand_sq))

    def result(self) -> OutputParity:
        p99_abs, p99_rel = self.reservoir.p99()
        n = max(self.finite, 1)
        return OutputParity(
            name=self.name,
            tolerance=self.tolerance,
            count=self.count,
            violations=self.violations,
            nonfinite=self.nonfinite,
            max_abs=self.max_abs,
            mean_abs=self.sum_abs / n,
            p99_abs=p99_abs,
            max_rel=self.max_rel,
            mean_rel=self.sum_rel / n,
            p99_rel=p99_rel,
            cosine=self.cosine(),
            exact_p99=not self.reservoir.dropped,
            detail=self.detail,
            worst_abs=self.worst[0],
            worst_allowed=self.worst[1],
        )


class OutputsAccumulator:
    """One :class:`ErrorAccumulator` per output of the reference, set up at the first batch.

    ``tolerance_for(name)`` gives each output's tolerance; the candidate must have every output of
    the reference (extra candidate outputs are ignored).
    """

    def __init__(
        self,
        tolerance_for: Callable[[str], Tolerance],
        reservoir_size: int = RESERVOIR_SIZE,
        equal_nan: bool = False,
    ) -> None:
        self.tolerance_for = tolerance_for
        self.reservoir_size = reservoir_size
        self.equal_nan = equal_nan
        self.names: list[str] = []
        self.acc: dict[str, ErrorAccumulator] = {}

    def setup(self, names: list[str]) -> None:
        self.names = names
        self.acc = {
            n: ErrorAccumulator(
                n, self.tolerance_for(n), self.reservoir_size, seed=i, equal_nan=self.equal_nan
            )
            for i, n in enumerate(names)
        }

    def update(self, ref: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray]) -> OrderedDict[str, bool]:
        """Add one batch of every output; returns {output: whether this batch passed}."""
        if not self.names:
            self.setup(list(ref.keys()))
        for name in self.names:
            if name not in cand:
                raise InputError(f"candidate has no output {name!r}; its outputs are: {', '.join(cand)}")
        return OrderedDict((k, self.acc[k].update(ref[k], cand[k])) for k in self.names)

    def results(self) -> tuple[OutputParity, ...]:
        return tuple(self.acc[n].result() for n in self.names)
