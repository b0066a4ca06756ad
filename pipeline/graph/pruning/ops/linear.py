"""Weighted ops (the prunable producers and the contractions that consume them) and per-channel
normalisations.

Weight layouts: Conv ``W[K, C/g, kh, kw]``; ConvTranspose ``W[C, K/g, kh, kw]``; Gemm ``B[K, N]``
(``B[N, K]`` with ``transB``); MatMul ``B[..., K, N]``; LSTM/GRU/RNN ``W[D, G·H, I]`` (input
features are a sink; hidden units are not pruned, see ``Recurrent``).

Coupling: output channel ``k`` of a producer with a constant weight goes with slice ``k`` of the
weight's output axis and of its bias; an input channel goes with the weight's reduction axis
and is summed over (a *sink*). A grouped Conv removes whole groups, input and output channels
together, and its ``group`` attribute is fixed up in surgery.

Lossless mode: an output channel whose weight slice is all zero holds its bias (times ``beta``
for Gemm) whatever the input; a zero input row of MatMul or a grouped Conv gives a zero
(plus bias) output; BatchNormalization maps ``x`` to ``γ (x − μ) / √(σ² + ε) + β``.

MACs (one per multiply-accumulate): Conv ``|y| · C/g · kh · kw``; ConvTranspose
``|x| · K/g · kh · kw``; Gemm ``|y| · K``; MatMul ``|y| · K``; LSTM/GRU/RNN
``T · N · D · G·H · (I + H)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.cut import Cut
from trtforge.pipeline.graph.pruning.deps import Analysis, Fixup, Space
from trtforge.pipeline.graph.pruning.graph import GraphIndex, attr
from trtforge.pipeline.graph.pruning.ops.base import (
    Carry,
    HandlerTable,
    OpHandler,
    axis_values,
    couple,
    pass_to,
    unknown,
)


def _weight(node: onnx.NodeProto, index: GraphIndex, i: int = 1) -> np.ndarray | None:
    if len(node.input) <= i or not node.input[i]:
        return None
    return index.const(node.input[i])


def _prod(shape: Sequence[int | None] | None) -> int:
    if shape is None or any(d is None for d in shape):
        return 0
    return int(np.prod([int(d or 0) for d in shape], dtype=np.int64))


class Producer(OpHandler):
    """An op whose output channels (axis ``out_axis`` of output 0) are slices of its constant
    weight (input 1) along ``weight_axis`` and of its bias (input ``bias_input``)."""

    out_axis: ClassVar[int] = 1
    bias_input: ClassVar[int | None] = 2

    def weight_axis(self, node: onnx.NodeProto, w: np.ndarray) -> int:
        return 0

    def bias_scale(self, node: onnx.NodeProto) -> float:
        return 1.0

    def declare(self, node: onnx.NodeProto, an: Analysis, w: np.ndarray) -> None:
        """Output channel ``k`` = weight slice ``k`` = bias entry ``k``: one prunable source."""
        out = an.act(node.output[0], self.out_axis)
        if out is None:
            return
        wsp = an.param(node.input[1], self.weight_axis(node, w), "weight")
        if wsp.size != out.size:
            return
        an.link(out, wsp)
        b = self.bias_input
        if b is not None and len(node.input) > b and node.input[b] and an.index.is_const(node.input[b]):
            bias = an.index.const(node.input[b])
            if bias is not None and bias.ndim >= 1 and bias.shape[-1] == out.size:
                an.link(out, an.param(node.input[b], -1, "bias"))
        an.source(node, out)
        if an.index.users(node.input[1]) > 1:
            an.pin(
                out,
                f"weight {node.input[1]!r} of {node.op_type} node {node.name!r} is shared with other nodes",
            )

    def source_constants(self, node: onnx.NodeProto, out: Space, an: Analysis) -> np.ndarray:
        """``y[k] = bias_scale · b[k]`` where weight slice ``k`` is all zero; unknown elsewhere."""
        w = _weight(node, an.index)
        assert w is not None
        axis = self.weight_axis(node, w)
        zero = np.moveaxis(np.abs(w), axis, 0).reshape(w.shape[axis], -1).sum(axis=1) == 0
        bias = np.zeros(out.size)
        b = self.bias_input
        if b is not None and len(node.input) > b and node.input[b]:
            values = axis_values(an, node.input[b], out, 2)  # a 1-D bias aligns with axis 1 of rank 2
            bias = (unknown(out.size) if values is None else values) * self.bias_scale(node)
        return np.where(zero, bias, np.nan)


@dataclass(frozen=True)
class Conv(Producer):
    """Conv (``transpose`` False: ``W[K, C/g, kh, kw]``) and ConvTranspose (``W[C, K/g, kh, kw]``)."""

    transpose: bool = False

    def weight_axis(self, node: onnx.NodeProto, w: np.ndarray) -> int:
        return 1 if self.transpose else 0

    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        w = _weight(node, an.index)
        if w is None or int(attr(node, "group", 1)) != 1:
            return
        self.declare(node, an, w)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        w = _weight(node, an.index)
        if idx != 0 or space.axis != 1 or w is None:
            return super().propagate(node, idx, space, an)
        group = int(attr(node, "group", 1))
        if group == 1:
            an.link(space, an.param(node.input[1], 0 if self.transpose else 1, "weight"))
            an.sink(space)
            return None
        if self.transpose:
            return an.pin(space, f"ConvTranspose node {node.name!r} with group={group} is not supported")
        return _grouped(node, space, an, group, w)

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """``group`` = kept input channels / channels per group (whole groups were removed)."""
        n_in = int(cut.keep[fixup.data["in_space"]].sum())
        for a in node.attribute:
            if a.name == "group":
                a.i = n_in // int(fixup.data["channels_per_group"])

    def map_values(self, node: onnx.NodeProto, out: Space, x: np.ndarray, an: Analysis) -> np.ndarray | None:
        """Grouped Conv: a zero input group gives its bias (0 without one); else unknown."""
        if len(node.input) > 2 and node.input[2]:
            b = axis_values(an, node.input[2], out, 2)
            return np.where(x == 0, unknown(out.size) if b is None else b, np.nan)
        return np.where(x == 0, 0.0, np.nan)

    def macs(self, node: onnx.NodeProto, index: GraphIndex) -> int:
        w = index.shape(node.input[1])
        if not w:
            return 0
        if not self.transpose:
            return _prod(index.shape(node.output[0])) * _prod(w[1:])
        group = int(attr(node, "group", 1))
        return _prod(index.shape(node.input[0])) * _prod(w[1:]) // max(group, 1) * group


def _grouped(node: onnx.NodeProto, space: Space, an: Analysis, group: int, w: np.ndarray) -> None:
    """Grouped/depthwise Conv: whole groups go, input and output channels together."""
    c_in, k_out = space.size, int(w.shape[0])
    if c_in % group or k_out % group:
        return an.pin(space, f"Conv node {node.name!r}: group={group} does not divide the channels")
    cin_g, k_g = c_in // group, k_out // group
    out = pass_to(node, an, space, node.output[0], 1, np.arange(k_out), (np.arange(k_out) // k_g) * cin_g)
    if out is None:
        return None
    an.link(space, space, np.arange(c_in), (np.arange(c_in) // cin_g) * cin_g)
    an.link(out, an.param(node.input[1], 0, "weight"))
    if len(node.input) > 2 and node.input[2]:
        an.link(out, an.param(node.input[2], 0, "bias"))
    an.fixup("group", node, channels_per_group=cin_g, in_space=space.id)
    return None


@dataclass(frozen=True)
class Gemm(Producer):
    """``Y = alpha · A' B' + beta · C``: input channel K of ``A`` is summed against row K of ``B'``."""

    def weight_axis(self, node: onnx.NodeProto, w: np.ndarray) -> int:
        return 0 if attr(node, "transB", 0) else 1

    def bias_scale(self, node: onnx.NodeProto) -> float:
        return float(attr(node, "beta", 1.0))

    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        w = _weight(node, an.index)
        if w is not None:
            self.declare(node, an, w)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        k_axis = 0 if attr(node, "transA", 0) else 1
        if idx != 0 or space.axis != k_axis or _weight(node, an.index) is None:
            return super().propagate(node, idx, space, an)
        an.link(space, an.param(node.input[1], 1 if attr(node, "transB", 0) else 0, "weight"))
        an.sink(space)
        return None

    def macs(self, node: onnx.NodeProto, index: GraphIndex) -> int:
        a, out = index.shape(node.input[0]), index.shape(node.output[0])
        if not a or not out:
            return 0
        k = a[0] if attr(node, "transA", 0) else a[1]
        return _prod(out) * int(k or 0)


@dataclass(frozen=True)
class MatMul(Producer):
    """``Y[..., M, N] = A[..., M, K] B[..., K, N]``: K is contracted, M and N pass, batch axes couple.
    With a constant ``B``, output channel ``n`` is column ``n`` of ``B`` (no bias input)."""

    out_axis: ClassVar[int] = -1
    bias_input: ClassVar[int | None] = None
    carry: Carry = Carry.ZERO  # a zero row of A (or column of B) gives a zero row (column) of Y

    def weight_axis(self, node: onnx.NodeProto, w: np.ndarray) -> int:
        return w.ndim - 1

    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        w = _weight(node, an.index)
        if w is not None and w.ndim >= 2:
            self.declare(node, an, w)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        ranks = [an.index.rank(n) for n in node.input[:2]]
        out_rank = an.index.rank(node.output[0])
        if None in ranks or out_rank is None or min(r or 0 for r in ranks) < 2:
            return super().propagate(node, idx, space, an)
        ra, rb = int(ranks[0] or 0), int(ranks[1] or 0)
        r = ra if idx == 0 else rb
        other = node.input[1 - idx]
        if (idx == 0 and space.axis == r - 1) or (idx == 1 and space.axis == r - 2):
            return _contract(node, an, space, other, rb - 2 if idx == 0 else ra - 1)
        if (idx == 0 and space.axis == r - 2) or (idx == 1 and space.axis == r - 1):
            pass_to(node, an, space, node.output[0], out_rank - (2 if idx == 0 else 1))
            return None
        out_axis = space.axis + out_rank - r  # a batch axis: both operands and the output share it
        couple(node, an, space, other, out_axis - (out_rank - (rb if idx == 0 else ra)))
        pass_to(node, an, space, node.output[0], out_axis)
        return None

    def macs(self, node: onnx.NodeProto, index: GraphIndex) -> int:
        a, out = index.shape(node.input[0]), index.shape(node.output[0])
        if not a or not out:
            return 0
        return _prod(out) * int(a[-1] or 0)


def _contract(node: onnx.NodeProto, an: Analysis, space: Space, other: str, other_axis: int) -> None:
    """The contraction axis K of one operand goes with K of the other (a weight, or coupled)."""
    if an.index.is_const(other):
        an.link(space, an.param(other, other_axis, "weight"))
    else:
        couple(node, an, space, other, other_axis)
        o = an.act(other, other_axis)
        if o is not None:
            an.sink(o)
    an.sink(space)


@dataclass(frozen=True)
class Norm(OpHandler):
    """BatchNormalization / InstanceNormalization: per-channel parameters on axis 1."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0 or space.axis != 1:
            return super().propagate(node, idx, space, an)
        for k, name in enumerate(node.input[1:], start=1):
            if not name:
                continue
            if not an.index.is_const(name):
                return an.pin(space, f"{node.op_type} node {node.name!r}: parameter {name!r} is not constant")
            an.link(space, an.param(name, 0, "bn_scale" if k == 1 else "other"))
        pass_to(node, an, space, node.output[0], 1)
        return None


@dataclass(frozen=True)
class BatchNorm(Norm):
    """Inference BatchNormalization: ``y[c] = γ[c] (x[c] − μ[c]) / √(σ²[c] + ε) + β[c]``."""

    def map_values(self, node: onnx.NodeProto, out: Space, x: np.ndarray, an: Analysis) -> np.ndarray | None:
        params = [axis_values(an, n, out, 2) for n in node.input[1:5]]
        if any(p is None for p in params):
            return None
        scale, bias, mean, var = (p for p in params if p is not None)
        return np.asarray(scale * (x - mean) / np.sqrt(var + float(attr(node, "epsilon", 1e-5))) + bias)


@dataclass(frozen=True)
class Recurrent(OpHandler):
    """LSTM / GRU / RNN (``gates`` = 4 / 3 / 1): ``X[T, N, I]`` (``[N, T, I]`` with ``layout=1``),
    ``W[D, G·H, I]``, ``R[D, G·H, H]``, hidden size ``H``, ``D`` directions.

    Every gate of every step computes ``W_g x_t + R_g h_{t-1} + b_g``: input feature ``i`` is
    summed against column ``i`` of ``W`` (a *sink*, like a Conv's input channel), so the input's
    feature axis prunes with ``W[:, :, i]``. Hidden units are not pruned: unit ``h`` feeds every
    unit's gates through ``R[:, :, h]`` at the next step, so removing it is not removing a term
    of one sum, and the outputs ``Y``/``Y_h``/``Y_c`` are never tracked. The time and batch axes
    of ``X`` are pinned with that reason.

    MACs: ``T · N · D · G · H · (I + H)`` (the gate matmuls)."""

    gates: int = 4

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        rank = an.index.rank(space.tensor) or 0
        w = _weight(node, an.index)
        if idx == 0 and space.axis == rank - 1 and w is not None and w.ndim == 3:
            an.link(space, an.param(node.input[1], 2, "weight"))
            an.sink(space)
            return None
        what = "its input's time or batch axis" if idx == 0 else f"input {idx}"
        why = "W is computed at run time" if idx == 0 and w is None else "hidden units are not pruned"
        return an.pin(space, f"{node.op_type} node {node.name!r}: {what} cannot be pruned ({why})")

    def macs(self, node: onnx.NodeProto, index: GraphIndex) -> int:
        x, w = index.shape(node.input[0]), index.shape(node.input[1])
        if not x or not w or len(x) != 3 or len(w) != 3:
            return 0
        steps = _prod(x[:2])  # T · N in either layout
        d, gh, i = (int(v or 0) for v in w)
        return steps * d * gh * (i + gh // max(self.gates, 1))


HANDLERS: HandlerTable = (
    ("Conv", Conv()),
    ("ConvTranspose", Conv(transpose=True)),
    ("Gemm", Gemm()),
    ("MatMul", MatMul()),
    ("BatchNormalization", BatchNorm()),
    ("InstanceNormalization", Norm()),
    ("LSTM", Recurrent(gates=4)),
    ("GRU", Recurrent(gates=3)),
    ("RNN", Recurrent(gates=1)),
)
