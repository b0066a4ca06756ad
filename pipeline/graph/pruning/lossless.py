"""Lossless removal: units that provably contribute nothing.

Per tracked activation axis a vector of constant values is propagated in graph order (NaN =
not provably constant). Each node's handler says what its outputs hold: a producer whose
weight slice is all zero outputs its bias there (``OpHandler.source_constants``); for other
outputs the handler maps the values its inputs carry into the axis (``OpHandler.constants``):
BatchNormalization, ReLU-like activations, pools and element-wise ops with constant operands
map constants to constants, layout ops move them, anything unknown gives NaN. A unit is
*dead* when every contraction that reads it (Conv/Gemm/MatMul input channels) sees exactly 0
there: dropping a zero term from a sum changes nothing, so outputs stay equal up to float
rounding.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis, Flow, Group, Space
from trtforge.pipeline.graph.pruning.importance import unit_index
from trtforge.pipeline.graph.pruning.ops.base import OpHandler, unknown
from trtforge.pipeline.graph.pruning.registry import HandlerRegistry, resolve


def _carried(size: int, f: Flow, src: np.ndarray) -> np.ndarray:
    """Values of ``f``'s output positions: constant only where every input position it carries
    holds the same constant (a head of a Reshape carries many channels)."""
    vals = src[f.in_pos]
    lo, hi = np.full(size, np.inf), np.full(size, -np.inf)
    is_unknown = np.zeros(size, dtype=bool)
    np.minimum.at(lo, f.out_pos, np.where(np.isnan(vals), np.inf, vals))
    np.maximum.at(hi, f.out_pos, np.where(np.isnan(vals), -np.inf, vals))
    np.logical_or.at(is_unknown, f.out_pos, np.isnan(vals))
    return np.where(~is_unknown & (lo == hi), lo, np.nan)


def _output_values(
    an: Analysis,
    node: onnx.NodeProto,
    handler: OpHandler | None,
    out: Space,
    flows: list[Flow],
    const: dict[int, np.ndarray],
) -> np.ndarray:
    """What ``out`` (an output axis of ``node``) provably holds, per position."""
    if handler is None:
        return unknown(out.size)
    if out.source == node.name:
        return handler.source_constants(node, out, an)
    inputs: dict[str, np.ndarray] = {}
    for f in flows:
        src = const.get(f.inp, unknown(an.spaces[f.inp].size))
        inputs[an.spaces[f.inp].tensor] = _carried(out.size, f, src)
    if not inputs:
        return unknown(out.size)
    return handler.constants(node, out, inputs, an)


def constant_values(an: Analysis, registry: HandlerRegistry | None = None) -> dict[int, np.ndarray]:
    """Constant value per position of every tracked activation axis (NaN where not provably
    constant), as the handlers of ``registry`` (default: the default registry) work it out."""
    handlers = resolve(registry)
    by_out: dict[int, list[Flow]] = defaultdict(list)
    for f in an.flows:
        by_out[f.out].append(f)
    act_by_tensor: dict[str, list[Space]] = defaultdict(list)
    for s in an.spaces:
        if s.kind == "act":
            act_by_tensor[s.tensor].append(s)
    const: dict[int, np.ndarray] = {}
    for node in an.index.nodes:
        handler = handlers.get(node.op_type)
        for name in node.output:
            for out in act_by_tensor.get(name, ()):
                flows = [f for f in by_out.get(out.id, ()) if f.node == node.name]
                const[out.id] = _output_values(an, node, handler, out, flows, const)
    return const


def dead_units(an: Analysis, registry: HandlerRegistry | None = None) -> dict[str, np.ndarray]:
    """Per group id: indices of units that are exactly zero wherever a contraction reads them."""
    const = constant_values(an, registry)
    out: dict[str, np.ndarray] = {}
    for g in an.groups:
        dead = _dead_in_group(an, g, const)
        if dead.size:
            out[g.id] = dead
    return out


def _dead_in_group(an: Analysis, g: Group, const: dict[int, np.ndarray]) -> np.ndarray:
    seen = np.zeros(g.size, dtype=bool)
    ok = np.ones(g.size, dtype=bool)
    for i in g.spaces:
        if i not in an.sinks:
            continue
        sp = an.spaces[i]
        mask, units = unit_index(g, an.labels_of(sp))
        vals = const.get(i, unknown(sp.size))[mask]
        seen[units] = True
        bad = units[~(vals == 0)]
        ok[bad] = False
    return np.flatnonzero(ok & seen & ~g.pinned)
