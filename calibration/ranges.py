"""Range algorithms: turn a streamed |x| histogram into an ``amax`` (symmetric clipping range).

- ``minmax``: the largest |x| seen (exact, not from the histogram).
- ``percentile``: the |x| below which ``percentile`` % of the values fall.
- ``entropy``: TensorRT's KL-divergence calibration: for each candidate threshold of ``i`` bins
  (``i`` >= 128), P = the first ``i`` bins with the outliers folded into the last one,
  Q = those bins quantized to 128 levels and expanded back; pick the ``i`` with least KL(P||Q).
  Empty bins are smoothed (as ONNX Runtime does) so a lone outlier cannot force an infinite
  divergence onto every clipping threshold.
- ``mse``: the threshold minimising the expected squared error of symmetric INT8 rounding and
  clipping over the histogram's bin centres.

Weights get per-channel symmetric ranges (``weight_amax``). Everything here is pure NumPy.
"""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "entropy", "percentile", "mse")
QMAX = 127


class AbsHistogram:
    """Histogram of |x| over ``[0, hmax]`` with a fixed number of bins, grown by exact re-binning.

    Memory stays ``bins`` counters however many values are added: when a batch exceeds ``hmax``,
    the width grows by an integer factor ``k`` and each new bin is the sum of ``k`` old ones.
    Exact ``lo``/``hi``/``amax`` are kept beside it.
    """

    def __init__(self, bins: int = 2048) -> None:
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.int64)
        self.hmax = 0.0
        self.lo = float("inf")
        self.hi = float("-inf")
        self.count = 0

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi)) if self.count else 0.0

    @property
    def width(self) -> float:
        return self.hmax / self.bins

    def update(self, x: np.ndarray) -> None:
        flat = np.abs(np.asarray(x, dtype=np.float32).ravel())
        if flat.size == 0:
            return
        self.lo = min(self.lo, float(np.min(x)))
        self.hi = max(self.hi, float(np.max(x)))
        self.count += flat.size
        top = float(flat.max())
        if top > self.hmax:
            self._grow(top)
        if self.hmax == 0.0:
            self.counts[0] += flat.size
            return
        idx = np.minimum((flat * (self.bins / self.hmax)).astype(np.int64), self.bins - 1)
        self.counts += np.bincount(idx, minlength=self.bins)

    def _grow(self, top: float) -> None:
        if self.hmax == 0.0:  # only zeros so far: they stay in bin 0 under any width
            self.hmax = top
            return
        k = int(np.ceil(top / self.hmax))
        padded = np.zeros(self.bins * k, dtype=np.int64)
        padded[: self.bins] = self.counts
        merged = padded.reshape(self.bins, k).sum(axis=1)
        self.counts = merged
        self.hmax *= k


def compute_amax(hist: AbsHistogram, method: str, percentile: float = 99.99) -> float:
    """The symmetric range of one tensor by ``method`` (one of :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown range method {method!r}; valid methods are: {', '.join(METHODS)}")
    if hist.count == 0 or hist.hmax == 0.0:
        return 0.0
    if method == "minmax":
        return hist.amax
    if method == "percentile":
        return min(percentile_amax(hist.counts, hist.width, percentile), hist.amax)
    if method == "entropy":
        return min(entropy_amax(hist.counts, hist.width), hist.amax)
    return min(mse_amax(hist.counts, hist.width), hist.amax)


def percentile_amax(counts: np.ndarray, width: float, percentile: float) -> float:
    """Upper edge of the first bin where the cumulative share reaches ``percentile`` %."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    cdf = np.cumsum(counts, dtype=np.float64)
    idx = int(np.searchsorted(cdf, cdf[-1] * percentile / 100.0))
    return (min(idx, len(counts) - 1) + 1) * width


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give empty bins a small mass ``eps`` (relative) and renormalise, so KL stays finite."""
    out = p + eps * (p == 0)
    return np.asarray(out / out.sum())


def kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """KL(P||Q) of two count vectors after normalisation and smoothing of empty bins."""
    if p_counts.sum() == 0 or q_counts.sum() == 0:
        return float("inf")
    p = p_counts / p_counts.sum()
    ps, qs = _smooth(p), _smooth(q_counts / q_counts.sum())
    mask = p > 0
    return float(np.sum(ps[mask] * np.log(ps[mask] / qs[mask])))


def entropy_candidate(counts: np.ndarray, i: int, levels: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(P, Q) for a threshold of ``i`` bins, as TensorRT builds them."""
    ref = counts[:i].astype(np.float64)
    p = ref.copy()
    p[i - 1] += counts[i:].sum()
    nonzero = (p != 0).astype(np.float64)
    group = (np.arange(i) * levels) // i
    sums = np.bincount(group, weights=ref, minlength=levels)
    norm = np.bincount(group, weights=nonzero, minlength=levels)
    q = np.where(nonzero > 0, sums[group] / np.maximum(norm[group], 1.0), 0.0)
    return p, q


def entropy_amax(counts: np.ndarray, width: float, levels: int = 128, stride: int = 1) -> float:
    """TensorRT's entropy (KL) threshold; ``levels`` is 128 for signed INT8 on |x|."""
    n = len(counts)
    if n <= levels:
        return n * width
    best_i, best_kl = n, float("inf")
    for i in range(levels, n + 1, stride):
        if counts[i - 1] == 0 and i != n:
            continue  # a threshold inside an empty run is never better than its upper neighbour
        p, q = entropy_candidate(counts, i, levels)
        kl = kl_divergence(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i * width


def mse_amax(counts: np.ndarray, width: float, candidates: int = 256) -> float:
    """Threshold (a bin edge) minimising sum(count * (c - dequant(quant(c)))^2) over bin centres c."""
    n = len(counts)
    centres = (np.arange(n) + 0.5) * width
    stride = max(1, n // candidates)
    edges = np.arange(stride, n + 1, stride) * width
    if edges[-1] != n * width:
        edges = np.append(edges, n * width)
    weights = counts.astype(np.float64)
    best, best_err = float(edges[-1]), float("inf")
    for amax in edges:
        scale = amax / QMAX
        q = np.clip(np.round(centres / scale), -QMAX, QMAX) * scale
        err = float(np.dot(weights, (centres - q) ** 2))
        if err < best_err:
            best, best_err = float(amax), err
    return best


def weight_amax(w: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel max |w| along every axis but ``axis`` (the output-channel axis)."""
    axis = axis % w.ndim
    others = tuple(a for a in range(w.ndim) if a != axis)
    return np.asarray(np.max(np.abs(w), axis=others) if others else np.abs(w))


def symmetric_scale(amax: np.ndarray | float) -> np.ndarray:
    """INT8 scale ``amax / 127`` (zero point 0); a zero range gets a tiny positive scale."""
    a = np.asarray(amax, dtype=np.float32)
    return np.where(a > 0, a / QMAX, np.float32(1e-8)).astype(np.float32)
