"""Per-output error statistics, accumulated batch by batch in bounded memory.

Pass rule (numpy.isclose with the reference as ``b``): every element satisfies
``|cand - ref| <= atol + rtol * |ref|``; NaN anywhere fails, equal infinities pass.

Statistics: max/mean/p99 of the absolute error ``|cand - ref|`` and of the relative error
``|cand - ref| / max(|ref|, 1e-12)``, and the cosine similarity of the flattened outputs over
the whole data set. Non-finite elements are counted and left out of the statistics.

p99: errors are kept exactly while an output has at most ``reservoir_size`` elements in all
(the default 2**20 covers e.g. 1000 samples x 1000 classes); beyond that a uniform random
sample of that many elements is kept (bottom-k sampling on random keys, seeded), so p99 is an
estimate whose error shrinks with the reservoir size. Max and mean are always exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

REL_FLOOR = 1e-12
RESERVOIR_SIZE = 1 << 20


@dataclass(frozen=True)
class Tolerance:
    """Absolute and relative tolerance of one output (see the module docstring for the rule)."""

    atol: float = 1e-4
    rtol: float = 1e-3

    def __post_init__(self) -> None:
        for key in ("atol", "rtol"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")


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

    def __init__(self, name: str, tolerance: Tolerance, reservoir_size: int = RESERVOIR_SIZE, seed: int = 0):
        self.name = name
        self.tolerance = tolerance
        self.reservoir = _Reservoir(reservoir_size, np.random.default_rng(seed))
        self.count = self.violations = self.nonfinite = self.finite = 0
        self.sum_abs = self.sum_rel = self.max_abs = self.max_rel = 0.0
        self.dot = self.ref_sq = self.cand_sq = 0.0
        self.detail = ""

    def update(self, ref: np.ndarray, cand: np.ndarray) -> bool:
        """Add one batch; returns whether every element of this batch passed."""
        if self.detail:
            return False
        if ref.shape != cand.shape:
            self.detail = f"candidate shape {tuple(cand.shape)} differs from the reference {tuple(ref.shape)}"
            return False
        r = np.asarray(ref, dtype=np.float64).ravel()
        c = np.asarray(cand, dtype=np.float64).ravel()
        self.count += r.size
        bad = 0
        finite = np.isfinite(r) & np.isfinite(c)
        if not finite.all():  # as numpy.isclose: equal infinities pass, NaN fails
            self.nonfinite += int(finite.size - np.count_nonzero(finite))
            bad += int(np.count_nonzero(r[~finite] != c[~finite]))
            r, c = r[finite], c[finite]
        bad += self._add_stats(r, c)
        self.violations += bad
        return bad == 0

    def _add_stats(self, r: np.ndarray, c: np.ndarray) -> int:
        """Statistics of finite elements; returns how many break the pass rule."""
        if not r.size:
            return 0
        abs_err = np.abs(c - r)
        abs_ref = np.abs(r)
        tol = self.tolerance
        bad = int(np.count_nonzero(abs_err > tol.atol + tol.rtol * abs_ref))
        rel_err = abs_err / np.maximum(abs_ref, REL_FLOOR)
        self.finite += r.size
        self.sum_abs += float(abs_err.sum())
        self.sum_rel += float(rel_err.sum())
        self.max_abs = max(self.max_abs, float(abs_err.max()))
        self.max_rel = max(self.max_rel, float(rel_err.max()))
        # einsum, not np.dot: BLAS threads would compete with ONNX Runtime's for the same cores
        self.dot += float(np.einsum("i,i->", r, c))
        self.ref_sq += float(np.einsum("i,i->", r, r))
        self.cand_sq += float(np.einsum("i,i->", c, c))
        self.reservoir.add(abs_err, rel_err)
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
        )
