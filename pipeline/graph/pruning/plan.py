"""The pruning plan: data (JSON) saying which units of which group go, applied separately.

A group is named by its prunable producers (node names) and its size, so a plan made on one
copy of a model applies to any byte-identical one, and a plan that does not match a model is
refused with the first mismatch named.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.pipeline.errors import InputError
from trtforge.pipeline.graph.pruning.deps import Analysis, Group

PLAN_FORMAT = "trtforge-prune-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class PlanSettings:
    """How much to remove: ``ratio`` of each group's units (or of all units with scope "global")."""

    ratio: float = 0.5
    scope: str = "group"  # group | global
    max_ratio_per_layer: float = 0.9
    round_to: int = 8
    skip: tuple[str, ...] = ()  # fnmatch patterns on producer node names
    group_ratios: Mapping[str, float] = field(default_factory=dict)  # group id or producer name -> ratio


@dataclass
class GroupPlan:
    id: str
    sources: list[str]
    size: int
    remove: list[int]
    dead: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sources": self.sources,
            "size": self.size,
            "remove": self.remove,
            "dead": self.dead,
        }


@dataclass
class PrunePlan:
    groups: list[GroupPlan]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def removed_units(self) -> int:
        return sum(len(g.remove) for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "meta": self.meta,
            "groups": [g.to_dict() for g in self.groups if g.remove],
        }

    def save(self, path: str | Path) -> None:
        from trtforge.pipeline.onnx_io import check_output_path, write_bytes_atomic

        write_bytes_atomic(check_output_path(path), json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> PrunePlan:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as exc:
            raise InputError(f"{p}: plan file not found; pass a plan written by --plan-out") from exc
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{p}: not a readable JSON plan ({exc}); pass a plan written by --plan-out"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise InputError(f"{p}: not a trtforge pruning plan (format != {PLAN_FORMAT!r})")
        try:
            groups = [
                GroupPlan(
                    str(g["id"]),
                    [str(s) for s in g["sources"]],
                    int(g["size"]),
                    [int(i) for i in g["remove"]],
                    int(g.get("dead", 0)),
                )
                for g in data["groups"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{p}: malformed plan entry ({exc}); re-create it with --plan-out") from exc
        return cls(groups, dict(data.get("meta", {})))


def _multiple(group: Group, round_to: int) -> int:
    if round_to <= 1:
        return 1
    return round_to // math.gcd(round_to, max(group.channels, 1))


def _round_removal(group: Group, wanted: int, round_to: int) -> int:
    """Remove at most ``wanted`` units so that the kept count is a multiple of the rounding step."""
    n, m = group.size, _multiple(group, round_to)
    keep = n - min(wanted, int((~group.pinned).sum()))
    keep = min(n, math.ceil(max(keep, 1) / m) * m)
    return max(n - keep, 0)


def _skipped(group: Group, settings: PlanSettings) -> bool:
    return any(fnmatch.fnmatchcase(s, pat) for s in group.sources for pat in settings.skip)


def _group_ratio(group: Group, settings: PlanSettings) -> float:
    for key in (group.id, *group.sources):
        if key in settings.group_ratios:
            return float(settings.group_ratios[key])
    return settings.ratio


def make_plan(
    an: Analysis,
    scores: Mapping[str, np.ndarray],
    settings: PlanSettings,
    dead: Mapping[str, np.ndarray] | None = None,
) -> PrunePlan:
    """Choose units to remove: dead ones first, then the lowest scores, rounded, never pinned ones."""
    dead = dead or {}
    wanted = _wanted_counts(an, scores, settings)
    plan = PrunePlan(
        [],
        {
            "settings": {
                "ratio": settings.ratio,
                "scope": settings.scope,
                "max_ratio_per_layer": settings.max_ratio_per_layer,
                "round_to": settings.round_to,
                "skip": list(settings.skip),
            }
        },
    )
    for g in an.groups:
        if g.blocked or _skipped(g, settings):
            continue
        d = np.asarray(dead.get(g.id, np.zeros(0, dtype=np.int64)), dtype=np.int64)
        r = _round_removal(g, max(wanted.get(g.id, 0), len(d)), settings.round_to)
        if r <= 0:
            continue
        s = np.asarray(scores[g.id], dtype=np.float64).copy()
        s[d] = -np.inf
        s[g.pinned] = np.inf
        chosen = np.sort(np.argsort(s, kind="stable")[:r])
        plan.groups.append(
            GroupPlan(g.id, list(g.sources), g.size, [int(i) for i in chosen], int(np.isin(chosen, d).sum()))
        )
    return plan


def _wanted_counts(an: Analysis, scores: Mapping[str, np.ndarray], settings: PlanSettings) -> dict[str, int]:
    cap = settings.max_ratio_per_layer
    if settings.scope == "group":
        return {g.id: math.floor(g.size * min(_group_ratio(g, settings), cap)) for g in an.groups}
    pooled = []
    for g in an.groups:
        if g.blocked or _skipped(g, settings):
            continue
        s = np.asarray(scores[g.id], dtype=np.float64)
        norm = s / s.mean() if s.size and s.mean() > 0 else s
        pooled.append(norm[~g.pinned])
    if not pooled:
        return {}
    allv = np.concatenate(pooled)
    thr = np.quantile(allv, settings.ratio) if allv.size else 0.0
    out = {}
    for g in an.groups:
        if g.id not in scores:
            continue
        s = np.asarray(scores[g.id], dtype=np.float64)
        norm = s / s.mean() if s.size and s.mean() > 0 else s
        out[g.id] = min(int((norm[~g.pinned] < thr).sum()), math.floor(g.size * cap))
    return out


def resolve(an: Analysis, plan: PrunePlan, source: str) -> np.ndarray:
    """Component ids to remove for ``plan`` on this model; ``InputError`` names the first mismatch."""
    by_sources = {tuple(g.sources): g for g in an.groups}
    comps = []
    for gp in plan.groups:
        g = by_sources.get(tuple(gp.sources))
        if g is None:
            raise InputError(
                f"{source}: plan group {gp.id} (layers {', '.join(gp.sources)}) does not exist in "
                "this model; make the plan on this model (--plan-out)"
            )
        if g.size != gp.size:
            raise InputError(
                f"{source}: plan group {gp.id} (layers {', '.join(gp.sources)}) has {gp.size} "
                f"channels in the plan but {g.size} in the model; make the plan on this model"
            )
        idx = np.asarray(gp.remove, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= g.size or len(set(gp.remove)) != idx.size):
            raise InputError(f"{source}: plan group {gp.id}: indices must be distinct and in 0..{g.size - 1}")
        if idx.size >= g.size:
            raise InputError(f"{source}: plan group {gp.id} removes all {g.size} channels; keep at least one")
        if g.pinned[idx].any():
            bad = int(idx[g.pinned[idx]][0])
            raise InputError(
                f"{source}: plan group {gp.id} removes channel {bad}, which cannot be pruned "
                f"({'; '.join(g.reasons) or 'pinned'})"
            )
        comps.append(g.units[idx])
    return np.concatenate(comps) if comps else np.zeros(0, dtype=np.int64)
