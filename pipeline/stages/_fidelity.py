"""The fidelity check of a stage that changes numbers (prune, quantize, convert-fp16): its result
against its input on the user's data, under the stage's ``accuracy_budget`` (default floor:
:data:`trtforge.pipeline.validation.fidelity.DEFAULT_BUDGET`; ``none``: measured, not gated)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.stage import Gate

#: samples the check reads at most (validation sets can be large; the check streams them)
FIDELITY_SAMPLES = 512


def check_fidelity(
    stage: str,
    before: Path,
    after: Path,
    specs: Sequence[TensorSpec],
    data_sets: Sequence[tuple[str, str | Path | None]],
    budget: str | None,
    *,
    state: Sequence[str] = (),
    batch_size: int = 32,
    limit: int = FIDELITY_SAMPLES,
) -> tuple[dict[str, Any], tuple[Gate, ...]]:
    """``({"fidelity": ...}, (gate,))`` on the first data set of ``data_sets`` that is given
    (``(name, path)`` in order of preference). Without any, nothing is measured (no number is made
    up on random inputs) and the record says so; there is no gate then."""
    from trtforge.pipeline.validation.feeds import data_batches
    from trtforge.pipeline.validation.fidelity import compare_models

    name, path = next(((n, p) for n, p in data_sets if p is not None), ("", None))
    if path is None:
        wanted = " or ".join(n for n, _ in data_sets)
        return {"fidelity": {"measured": False, "reason": f"no {wanted} data to measure it on"}}, ()
    feeds = data_batches(path, specs, batch_size, limit, state=state, model=before)
    report = compare_models(before, after, feeds, budget, name, f"{stage}: {before}")
    return {"fidelity": report.to_dict()}, (report.gate(f"{stage}_fidelity"),)


def fidelity_lines(metrics: dict[str, Any]) -> list[str]:
    """Human lines for a stage's ``fidelity`` record (verbs print them)."""
    fid = metrics.get("fidelity")
    if not fid:
        return []
    if not fid.get("measured", True):
        return [f"Fidelity: not measured ({fid['reason']}); pass --validation-data to check it"]
    head = f"Fidelity ({fid['source']} data, budget {fid['budget']}):"
    rows = []
    for o in fid["outputs"]:
        parts = [f"cosine {o['cosine']:.5f}", f"rel L2 {o['rel_l2']:.3g}"]
        if o.get("agreement") is not None:
            parts.append(f"agreement {o['agreement']:.2%}")
        if o.get("iou") is not None:
            parts.append(f"map IoU {o['iou']:.4f}")
        rows.append(f"  {o['name']}: " + ", ".join(parts))
    failed = [c for c in fid["checks"] if not c["passed"]]
    verdict = (
        "  below the floor: "
        + "; ".join(f"{c['term']} on {c['output']!r} = {c['value']:.5g}" for c in failed)
        if failed
        else ("  within the budget" if fid["checks"] else "  not gated (--accuracy-budget none)")
    )
    return [head, *rows, verdict]
