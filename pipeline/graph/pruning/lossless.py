"""Lossless removal: units that provably contribute nothing.

Per tracked activation axis a vector of constant values is propagated in graph order (NaN =
not provably constant): a producer whose weight slice is all zero outputs its bias there;
BatchNormalization, ReLU-like activations, pools and element-wise ops with constant operands
map constants to constants; layout ops move them. A unit is *dead* when every contraction
that reads it (Conv/Gemm/MatMul input channels) sees exactly 0 there: dropping a zero term
from a sum changes nothing, so outputs stay equal up to float rounding.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from pipeline.graph.pruning.deps import Analysis, Flow, Group, Space
from pipeline.graph.pruning.graph import attr
from pipeline.graph.pruning.importance import unit_index

_MOVE = {
    "Transpose",
    "Reshape",
    "Flatten",
    "Concat",
    "Split",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Gather",
    "Identity",
    "Dropout",
    "MaxPool",
    "GlobalMaxPool",
    "GlobalAveragePool",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
}
_ZERO_ONLY = {"AveragePool", "Pad", "Resize", "Upsample", "MatMul", "ReduceSum", "Conv"}


def _unary(node: onnx.NodeProto, c: np.ndarray) -> np.ndarray:
    op = node.op_type
    with np.errstate(all="ignore"):
        if op == "Relu":
            return np.maximum(c, 0.0)
        if op == "LeakyRelu":
            return np.where(c > 0, c, float(attr(node, "alpha", 0.01)) * c)
        if op == "Sigmoid":
            return 1.0 / (1.0 + np.exp(-c))
        if op == "Tanh":
            return np.tanh(c)
        if op in ("Neg", "Abs"):
            return -c if op == "Neg" else np.abs(c)
    return np.full_like(c, np.nan)


def _binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "Add":
            return a + b
        if op == "Sub":
            return a - b
        if op == "Mul":
            return np.where((a == 0) | (b == 0), 0.0, a * b)
        if op == "Div":
            return np.where(a == 0, 0.0, a / b)
    return np.full_like(a, np.nan)


def _axis_values(an: Analysis, name: str, out: Space, out_rank: int) -> np.ndarray | None:
    """Per-position values of a constant operand along ``out``'s axis (None unless it is constant there)."""
    value = an.index.const(name)
    if value is None:
        return None
    axis = out.axis - (out_rank - value.ndim)
    v = value.astype(np.float64)
    if axis < 0 or v.shape[axis] == 1:
        flat = v.reshape(-1)
        return np.full(out.size, flat[0]) if np.all(flat == flat[0]) else None
    moved = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1)
    return moved[:, 0] if np.all(moved == moved[:, :1]) else None


def _source_values(an: Analysis, node: onnx.NodeProto, out: Space) -> np.ndarray:
    w = an.index.const(node.input[1])
    assert w is not None
    w_axis = {"Conv": 0, "ConvTranspose": 1, "MatMul": w.ndim - 1}.get(node.op_type)
    if w_axis is None:
        w_axis = 0 if attr(node, "transB", 0) else 1
    zero = np.moveaxis(np.abs(w), w_axis, 0).reshape(w.shape[w_axis], -1).sum(axis=1) == 0
    bias = np.zeros(out.size)
    if node.op_type != "MatMul" and len(node.input) > 2 and node.input[2]:
        b = _axis_values(an, node.input[2], out, 2)  # 1-D bias aligns with axis 1 of a rank-2 view
        if b is None:
            b = np.full(out.size, np.nan)
        bias = b * (float(attr(node, "beta", 1.0)) if node.op_type == "Gemm" else 1.0)
    return np.where(zero, bias, np.nan)


def _node_values(
    an: Analysis, node: onnx.NodeProto, out: Space, flows: list[Flow], const: dict[int, np.ndarray]
) -> np.ndarray:
    op = node.op_type
    res = np.full(out.size, np.nan)
    out_rank = an.index.rank(out.tensor) or 0
    per_input: dict[str, np.ndarray] = {}
    for f in flows:
        src = const.get(f.inp, np.full(an.spaces[f.inp].size, np.nan))
        per_input[an.spaces[f.inp].tensor] = _carried(out.size, f, src)
    if not per_input:
        return res
    first = next(iter(per_input.values()))
    if op in _MOVE:
        return first if len(per_input) == 1 else res
    if op in _ZERO_ONLY or (op == "Conv" and int(attr(node, "group", 1)) > 1):
        if op == "Conv" and len(node.input) > 2 and node.input[2]:
            b = _axis_values(an, node.input[2], out, 2)
            return np.where(first == 0, b if b is not None else np.nan, np.nan)
        return np.where(first == 0, 0.0, np.nan)
    if op == "BatchNormalization":
        p = [_axis_values(an, n, out, 2) for n in node.input[1:5]]
        if any(x is None for x in p):
            return res
        scale, bias, mean, var = (x for x in p if x is not None)
        return scale * (first - mean) / np.sqrt(var + float(attr(node, "epsilon", 1e-5))) + bias
    if op in ("Add", "Sub", "Mul", "Div"):
        vals = [per_input.get(n, _axis_values(an, n, out, out_rank)) for n in node.input[:2]]
        a, b = (np.full(out.size, np.nan) if v is None else v for v in vals)
        return _binary(op, a, b)
    if op == "Clip":
        lo = an.index.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = an.index.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return np.clip(first, -np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))
    return _unary(node, first)


def _carried(size: int, f: Flow, src: np.ndarray) -> np.ndarray:
    """Values of ``f``'s output positions: constant only where every input position it carries
    holds the same constant (a head of a Reshape carries many channels)."""
    vals = src[f.in_pos]
    lo, hi = np.full(size, np.inf), np.full(size, -np.inf)
    unknown = np.zeros(size, dtype=bool)
    np.minimum.at(lo, f.out_pos, np.where(np.isnan(vals), np.inf, vals))
    np.maximum.at(hi, f.out_pos, np.where(np.isnan(vals), -np.inf, vals))
    np.logical_or.at(unknown, f.out_pos, np.isnan(vals))
    return np.where(~unknown & (lo == hi), lo, np.nan)


def constant_values(an: Analysis) -> dict[int, np.ndarray]:
    """Constant value per position of every tracked activation axis (NaN where not provably constant)."""
    by_out: dict[int, list[Flow]] = defaultdict(list)
    for f in an.flows:
        by_out[f.out].append(f)
    act_by_tensor: dict[str, list[Space]] = defaultdict(list)
    for s in an.spaces:
        if s.kind == "act":
            act_by_tensor[s.tensor].append(s)
    const: dict[int, np.ndarray] = {}
    for node in an.index.nodes:
        for name in node.output:
            for out in act_by_tensor.get(name, ()):
                if out.source == node.name:
                    const[out.id] = _source_values(an, node, out)
                else:
                    flows = [f for f in by_out.get(out.id, ()) if f.node == node.name]
                    const[out.id] = _node_values(an, node, out, flows, const)
    return const


def dead_units(an: Analysis) -> dict[str, np.ndarray]:
    """Per group id: indices of units that are exactly zero wherever a contraction reads them."""
    const = constant_values(an)
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
        vals = const.get(i, np.full(sp.size, np.nan))[mask]
        seen[units] = True
        bad = units[~(vals == 0)]
        ok[bad] = False
    return np.flatnonzero(ok & seen & ~g.pinned)
