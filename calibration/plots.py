"""Histogram plots of the worst-ranged tensors (matplotlib, imported only here, only when asked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from trtforge.calibration.stats import TensorStats
from trtforge.common.files import atomic_path


def worst_tensors(stats: Mapping[str, TensorStats], amax: Mapping[str, float], n: int = 4) -> list[str]:
    """Tensors whose chosen range clips the most of their observed range (max |x| / amax)."""

    def ratio(name: str) -> float:
        a = amax.get(name, 0.0)
        return stats[name].hist.amax / a if a > 0 else 0.0

    return sorted((k for k in stats if k in amax), key=ratio, reverse=True)[:n]


def plot_histograms(
    path: str | Path,
    stats: Mapping[str, TensorStats],
    amax: Mapping[str, float],
    names: Sequence[str],
    method: str,
) -> Path | None:
    """One log-scale |x| histogram per tensor with the chosen range marked; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not names:
        return None
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        h = stats[name].hist
        edges = np.arange(h.bins + 1) * h.width
        ax.stairs(np.maximum(h.counts, 0.5), edges, fill=True, color="#4477aa")  # one artist, not 2048 bars
        ax.set_yscale("log")
        ax.axvline(amax[name], color="#cc3311", label=f"{method} amax {amax[name]:.4g}")
        ax.set_title(f"{name} (max |x| {h.amax:.4g})", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return target
