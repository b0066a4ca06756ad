"""Importance criteria: callables ``(group, analysis) -> score per unit`` (higher = keep).

Scores of a unit add up over every tensor axis of its group, each axis normalised by its
mean so that layers of different scale weigh alike (Torch-Pruning's group importance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from trtforge.pipeline.graph.pruning.deps import Analysis, Group, Space

Importance = Callable[[Group, Analysis], np.ndarray]


def unit_index(group: Group, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For positions with component ``labels``: (mask of positions in ``group``, their unit index)."""
    order = np.argsort(group.units)
    srt = group.units[order]
    pos = np.searchsorted(srt, labels).clip(max=max(len(srt) - 1, 0))
    mask = (srt[pos] == labels) if len(srt) else np.zeros(len(labels), dtype=bool)
    return mask, order[pos[mask]]


def per_unit(group: Group, an: Analysis, space: Space, values: np.ndarray) -> np.ndarray:
    """Sum ``values`` (one per position of ``space``) per unit of ``group``, normalised by its mean."""
    mask, units = unit_index(group, an.labels_of(space))
    out = np.bincount(units, weights=values[mask], minlength=group.size)
    mean = out.mean() if out.size else 0.0
    return out / mean if mean > 0 else out


def _reduce(value: np.ndarray, axis: int, p: float) -> np.ndarray:
    moved = np.moveaxis(np.abs(value.astype(np.float64)), axis, 0).reshape(value.shape[axis], -1)
    return np.asarray((moved**p).sum(axis=1))


def _spaces(group: Group, an: Analysis, roles: Iterable[str]) -> list[Space]:
    wanted = set(roles)
    return [
        an.spaces[i] for i in group.spaces if an.spaces[i].kind == "param" and an.spaces[i].role in wanted
    ]


def magnitude(p: float = 1.0) -> Importance:
    """L1 (p=1) or L2 (p=2) norm of the unit's weight slices (producers' rows, consumers' columns)."""

    def score(group: Group, an: Analysis) -> np.ndarray:
        total = np.zeros(group.size)
        for sp in _spaces(group, an, ("weight",)):
            value = an.index.const(sp.tensor)
            assert value is not None
            total += per_unit(group, an, sp, _reduce(value, sp.axis, p))
        return total

    return score


def bn_scale() -> Importance:
    """|gamma| of the BatchNormalization layers in the group; L1 magnitude where there is none."""
    fallback = magnitude(1.0)

    def score(group: Group, an: Analysis) -> np.ndarray:
        spaces = _spaces(group, an, ("bn_scale",))
        if not spaces:
            return fallback(group, an)
        total = np.zeros(group.size)
        for sp in spaces:
            value = an.index.const(sp.tensor)
            assert value is not None
            total += per_unit(group, an, sp, np.abs(value.astype(np.float64)).reshape(-1))
        return total

    return score


def activation(stats: Mapping[tuple[str, int], np.ndarray]) -> Importance:
    """Mean |activation| (measured on calibration data) over the activation axes of the group."""
    fallback = magnitude(1.0)

    def score(group: Group, an: Analysis) -> np.ndarray:
        total = np.zeros(group.size)
        used = False
        for i in group.spaces:
            sp = an.spaces[i]
            if sp.kind == "act" and (sp.tensor, sp.axis) in stats:
                total += per_unit(group, an, sp, stats[(sp.tensor, sp.axis)])
                used = True
        return total if used else fallback(group, an)

    return score


def activation_stats(
    an: Analysis, feeds: Iterable[Mapping[str, np.ndarray]]
) -> dict[tuple[str, int], np.ndarray]:
    """Mean |x| per position of every tracked activation axis, run on ONNX Runtime."""
    import onnx

    from trtforge.pipeline.backends.onnxruntime import OrtRunner

    wanted = sorted({s.tensor for s in an.spaces if s.kind == "act" and s.id in an.reached})
    model = onnx.ModelProto()
    model.CopyFrom(an.index.model)
    present = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    runner = OrtRunner(model.SerializeToString()).load()
    sums: dict[tuple[str, int], np.ndarray] = {}
    count = 0
    for feed in feeds:
        outs = runner.run(feed, wanted)
        count += 1
        for s in an.spaces:
            if s.kind == "act" and s.tensor in outs:
                v = np.abs(outs[s.tensor].astype(np.float64))
                red = np.moveaxis(v, s.axis, 0).reshape(v.shape[s.axis], -1).mean(axis=1)
                key = (s.tensor, s.axis)
                sums[key] = sums.get(key, 0) + red
    return {k: v / max(count, 1) for k, v in sums.items()}


CRITERIA = ("l1", "l2", "bn", "activation")


def criterion(name: str, stats: Mapping[tuple[str, int], np.ndarray] | None = None) -> Importance:
    if name == "l1":
        return magnitude(1.0)
    if name == "l2":
        return magnitude(2.0)
    if name == "bn":
        return bn_scale()
    if name == "activation":
        return activation(stats or {})
    raise ValueError(f"unknown criterion {name!r}; valid: {', '.join(CRITERIA)}")
