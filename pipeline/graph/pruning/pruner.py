"""Putting it together: analyse a model, score and plan, apply a plan."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis, Group
from trtforge.pipeline.graph.pruning.graph import prepare
from trtforge.pipeline.graph.pruning.importance import activation_stats, criterion
from trtforge.pipeline.graph.pruning.lossless import dead_units
from trtforge.pipeline.graph.pruning.plan import PlanSettings, PrunePlan, make_plan, resolve
from trtforge.pipeline.graph.pruning.registry import HandlerRegistry, default_registry
from trtforge.pipeline.graph.pruning.surgery import apply_removal
from trtforge.pipeline.graph.pruning.walk import analyze

log = logging.getLogger(__name__)


@dataclass
class Analyzed:
    """A prepared copy of a model, its solved dependency analysis and the handler registry it was
    walked with (planning and surgery on it ask the same handlers)."""

    analysis: Analysis
    original_value_info: frozenset[str]
    registry: HandlerRegistry
    seconds: float = 0.0

    @property
    def groups(self) -> list[Group]:
        return self.analysis.groups

    def summary(self) -> dict[str, Any]:
        gs = self.analysis.groups
        return {
            "groups": len(gs),
            "prunable_groups": sum(1 for g in gs if not g.blocked),
            "blocked_groups": [g.to_dict() for g in gs if g.blocked],
            "analysis_seconds": round(self.seconds, 4),
            "nodes": len(self.analysis.index.nodes),
        }


def analyze_model(
    model: onnx.ModelProto, source: str = "model", registry: HandlerRegistry | None = None
) -> Analyzed:
    """Analyse a prepared copy of ``model`` with ``registry`` (default: a copy of the default
    registry, so later registrations there do not change this analysis)."""
    t0 = time.perf_counter()
    handlers = default_registry().copy() if registry is None else registry
    keep = frozenset(vi.name for vi in model.graph.value_info)
    an = analyze(prepare(model, source), handlers)
    return Analyzed(an, keep, handlers, time.perf_counter() - t0)


@dataclass(frozen=True)
class PlanRequest:
    settings: PlanSettings = field(default_factory=PlanSettings)
    criterion: str = "l1"
    lossless: bool = True  # remove provably dead units first (always on in the stage)


def plan_model(
    model: onnx.ModelProto,
    request: PlanRequest,
    feeds: Iterable[Mapping[str, np.ndarray]] | None = None,
    source: str = "model",
    registry: HandlerRegistry | None = None,
) -> tuple[PrunePlan, Analyzed]:
    """Score every group and choose the units to remove (``registry``: as in ``analyze_model``)."""
    az = analyze_model(model, source, registry)
    an = az.analysis
    stats = activation_stats(an, feeds) if request.criterion == "activation" and feeds is not None else None
    score = criterion(request.criterion, stats)
    scores = {g.id: score(g, an) for g in an.groups if not g.blocked}
    dead = dead_units(an, az.registry) if request.lossless else {}
    plan = make_plan(an, scores, request.settings, dead)
    plan.meta["criterion"] = request.criterion
    plan.meta["dead_units"] = int(sum(len(v) for v in dead.values()))
    return plan, az


def apply_plan(
    model: onnx.ModelProto,
    plan: PrunePlan,
    source: str = "model",
    analyzed: Analyzed | None = None,
    registry: HandlerRegistry | None = None,
) -> onnx.ModelProto:
    """A pruned copy of ``model``; the model itself is never changed. Without ``analyzed`` the
    model is analysed here with ``registry`` (as in ``analyze_model``); with it, its registry is used."""
    az = analyzed if analyzed is not None else analyze_model(model, source, registry)
    remove = resolve(az.analysis, plan, source)
    out = apply_removal(az.analysis, remove, az.registry)
    keep = az.original_value_info
    vis = [vi for vi in out.graph.value_info if vi.name in keep]
    del out.graph.value_info[:]
    out.graph.value_info.extend(vis)
    return out


def group_report(az: Analyzed, plan: PrunePlan) -> list[dict[str, Any]]:
    by_id = {g.id: g for g in plan.groups}
    rows = []
    for g in az.groups:
        gp = by_id.get(g.id)
        removed = len(gp.remove) if gp else 0
        rows.append(
            {
                **g.to_dict(),
                "removed": removed,
                "ratio": round(removed / g.size, 4) if g.size else 0.0,
                "dead": gp.dead if gp else 0,
            }
        )
    return rows
