"""The latency gate of a stage that claims to speed a model up (fuse, prune, quantize for ONNX
Runtime CPU): its result and its input timed interleaved on ONNX Runtime CPU, one thread, on a
batch of the user's data (its real shapes), else on inputs of the sizes the model and ``--shapes``
fix. By default a result slower than its input is not published.

Noise: the two models run in turns and each iteration gives a ratio ``after / before``; the gate
fails when the median ratio exceeds ``max_latency_ratio * (1 + LATENCY_MARGIN)``, the result was
slower in at least three of four iterations (the 25th percentile of the ratios above the bound's
base), the medians differ by more than ``LATENCY_RESOLUTION_MS`` (below it a call's own overhead
and the machine's noise decide), and a second, three times longer measurement confirms it. A
result as fast as its input does not fail on a busy machine; one clearly slower does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.pipeline.stage import Gate

#: relative slack on the ratio bound: timing noise on a busy machine, not a speed-up claim
LATENCY_MARGIN = 0.05
#: timed iterations per model (after warm-up), interleaved
LATENCY_ITERS = 30
#: differences of the medians below this are timing noise and call overhead, never a failure
LATENCY_RESOLUTION_MS = 0.02


def check_latency(
    stage: str,
    before: Path,
    after: Path,
    feed: Mapping[str, np.ndarray] | None,
    max_ratio: float | None,
    *,
    shapes_from: str,
    why_not: str = "",
    iters: int = LATENCY_ITERS,
) -> tuple[dict[str, Any], tuple[Gate, ...]]:
    """``({"latency_gate": ...}, (gate,))``; no gate where ``max_ratio`` is None (told not to) or
    ``feed`` is None (no size known to time it on: ``why_not`` says why)."""
    if feed is None:
        return {"latency_gate": {"measured": False, "reason": why_not or "no input sizes known"}}, ()
    from trtforge.calibration.data import FeedLayout
    from trtforge.pipeline.artifact import IOSpec
    from trtforge.pipeline.onnx_io import load_onnx
    from trtforge.pipeline.validation.throughput import measure_latency

    specs = IOSpec.from_onnx(load_onnx(before, load_external=False)).inputs  # batch axes from its dims
    batch = FeedLayout.of(specs).samples(feed, str(before)) if feed else 1

    def timed(n: int) -> tuple[Any, Any]:
        first, second = measure_latency(
            [before, after], [feed, feed], batch=batch, threads=1, warmup=3, iters=n
        )
        return first, second

    bound = None if max_ratio is None else max_ratio * (1 + LATENCY_MARGIN)

    def slower(first: Any, second: Any) -> bool:
        if max_ratio is None or bound is None:
            return False
        gap = second.latency.p50_ms - first.latency.p50_ms
        return bool(
            second.paired_ratio > bound and second.paired_low > max_ratio and gap > LATENCY_RESOLUTION_MS
        )

    first, second = timed(iters)
    runs = iters
    if slower(first, second):  # a transient load must not decide: measure again, longer
        runs = 3 * iters
        first, second = timed(runs)
    ratio, low = second.paired_ratio, second.paired_low
    record: dict[str, Any] = {
        "before_ms": round(first.latency.p50_ms, 4),
        "after_ms": round(second.latency.p50_ms, 4),
        "ratio": round(ratio, 4),
        "ratio_p25": round(low, 4),
        "iterations": runs,
        "shapes": {k: list(v.shape) for k, v in feed.items()},
        "batch": batch,
        "shapes_from": shapes_from,
        "max_ratio": max_ratio,
    }
    if bound is None:
        return {"latency_gate": record}, ()
    is_slower = slower(first, second)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in feed.items())
    detail = (
        f"p50 {record['after_ms']} ms vs {record['before_ms']} ms of the input (ratio {ratio:.3f}, "
        f"bound {bound:.3f}) on {shapes} ({shapes_from}), ONNX Runtime CPU, 1 thread"
    )
    if is_slower:
        detail += "; pass --max-latency-ratio to accept a slower model"
    elif ratio > bound:
        detail += "; within timing noise (not slower in 3 of 4 runs, or by under 0.02 ms)"
    record["passed"] = not is_slower
    return {"latency_gate": record}, (Gate(f"{stage}_latency", not is_slower, ratio, bound, detail),)


def latency_lines(metrics: Mapping[str, Any]) -> list[str]:
    """Human lines for a stage's ``latency_gate`` record."""
    rec = metrics.get("latency_gate")
    if not rec:
        return []
    if not rec.get("measured", True):
        return [f"Latency: not measured ({rec['reason']})"]
    verdict = (
        "" if rec.get("max_ratio") is None else ("  ok" if rec.get("passed") else "  SLOWER than the input")
    )
    return [
        f"Latency (ONNX Runtime CPU, 1 thread, {rec['shapes_from']}): {rec['before_ms']} -> "
        f"{rec['after_ms']} ms p50, ratio {rec['ratio']:.3f}{verdict}"
    ]


def latency_feed(
    config: Any, ctx: Any, specs: Any, source: str
) -> tuple[dict[str, np.ndarray] | None, str, str]:
    """``(feed, shapes_from, why_not)``: one sample of the stage's data (validation, calibration...),
    else inputs of the sizes the model and ``--shapes`` fix; ``(None, "", reason)`` where a size is
    unknown (no latency is made up on invented shapes)."""
    from trtforge.pipeline.contracts import smoke_inputs
    from trtforge.pipeline.errors import first_line
    from trtforge.pipeline.validation.feeds import UnknownShapeError

    inputs = smoke_inputs(config, ctx)
    try:
        feed = inputs.feed(specs, source, batch=1)
    except UnknownShapeError as exc:
        return None, "", f"{first_line(exc)}"
    if inputs.data is not None:
        return feed, f"one sample of {inputs.data.name}", ""
    return feed, "--shapes sizes" if inputs.shapes else "the model's fixed sizes, random values", ""
