"""Pools, resampling, reductions and ops that normalise over an axis.

Coupling: pools, Pad and Resize on NCHW compute ``y[n, c] = f(x[n, c])`` over spatial axes, so
channel axis 1 passes through (unless Pad pads it or Resize bakes the channel count into its
output sizes). A reduction keeps every axis it does not reduce over (shifted left past removed
axes when ``keepdims=0``); Softmax normalises over one axis, LayerNormalization over every axis
from ``axis`` on: reducing or normalising over the tracked axis pins it.

Lossless mode: a constant channel stays that constant through a max pool or a mean
(``Carry.MOVES``); a zero channel stays zero through zero padding, averaging, resampling and
sums (``Carry.ZERO``); anything else is unknown. No surgery fix-ups, no MACs counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis, Space
from trtforge.pipeline.graph.pruning.graph import attr
from trtforge.pipeline.graph.pruning.ops.base import Carry, HandlerTable, OpHandler, pass_to


@dataclass(frozen=True)
class ChannelOnly(OpHandler):
    """Pools and per-channel spatial ops: axis 1 (NCHW channels) of input 0 passes through."""

    carry: Carry = Carry.NONE

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0 or space.axis != 1:
            return super().propagate(node, idx, space, an)
        why = self.refusal(node, an, space.axis)
        if why is not None:
            return an.pin(space, why)
        pass_to(node, an, space, node.output[0], 1)
        return None

    def refusal(self, node: onnx.NodeProto, an: Analysis, axis: int) -> str | None:
        """Why ``axis`` cannot pass through ``node`` after all; None when it can."""
        return None


@dataclass(frozen=True)
class Pad(ChannelOnly):
    """Pad: fine while the pads of the channel axis are both 0 (``pads`` from the attribute or
    input 1, restricted to ``axes`` from input 3 when given)."""

    def refusal(self, node: onnx.NodeProto, an: Analysis, axis: int) -> str | None:
        return None if _pad_keeps_axis(node, an, axis) else f"Pad node {node.name!r} pads the channel axis"


@dataclass(frozen=True)
class Resize(ChannelOnly):
    """Resize: fine unless its output ``sizes`` (input 3) are given, which fix the channel count."""

    def refusal(self, node: onnx.NodeProto, an: Analysis, axis: int) -> str | None:
        if len(node.input) > 3 and node.input[3]:
            return f"Resize node {node.name!r} has explicit output sizes (channel count baked in)"
        return None


def _pad_keeps_axis(node: onnx.NodeProto, an: Analysis, axis: int) -> bool:
    pads = attr(node, "pads") if len(node.input) < 2 else an.index.const(node.input[1])
    if pads is None:
        return False
    pads = list(np.asarray(pads).reshape(-1))
    if len(node.input) > 3 and node.input[3]:
        axes = an.index.const(node.input[3])
        if axes is None:
            return False
        rank = an.index.rank(node.input[0]) or 0
        axes_l = [int(a) % rank for a in np.asarray(axes).reshape(-1)]
        return axis not in axes_l or (
            pads[axes_l.index(axis)] == 0 and pads[axes_l.index(axis) + len(axes_l)] == 0
        )
    half = len(pads) // 2
    return axis >= half or (pads[axis] == 0 and pads[axis + half] == 0)


@dataclass(frozen=True)
class Reduce(OpHandler):
    """ReduceMean & co.: fine over other axes; reducing over the tracked axis pins it."""

    carry: Carry = Carry.NONE

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        axes = (
            attr(node, "axes") if len(node.input) < 2 or not node.input[1] else an.index.const(node.input[1])
        )
        rank = an.index.rank(space.tensor) or 0
        if axes is None or len(np.asarray(axes).reshape(-1)) == 0:
            return an.pin(
                space, f"{node.op_type} node {node.name!r}: reduces over all axes (or axes not constant)"
            )
        axes_l = sorted(int(a) % rank for a in np.asarray(axes).reshape(-1))
        if space.axis in axes_l:
            return an.pin(space, f"{node.op_type} node {node.name!r}: reduces over the channel axis")
        keep = int(attr(node, "keepdims", 1))
        out_axis = space.axis if keep else space.axis - sum(1 for a in axes_l if a < space.axis)
        pass_to(node, an, space, node.output[0], out_axis)
        return None


@dataclass(frozen=True)
class AxisOp(OpHandler):
    """Softmax/LogSoftmax (over ``axis``) and LayerNormalization (``trailing``: over every axis
    from ``axis`` on): fine unless the op normalises over the tracked axis."""

    trailing: bool = False

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        rank = an.index.rank(space.tensor) or 0
        axis = int(attr(node, "axis", -1)) % rank
        covered = space.axis >= axis if self.trailing else space.axis == axis
        if covered:
            return an.pin(space, f"{node.op_type} node {node.name!r} normalises over the channel axis")
        pass_to(node, an, space, node.output[0], space.axis)
        return None


HANDLERS: HandlerTable = (
    *((op, ChannelOnly(carry=Carry.MOVES)) for op in ("MaxPool", "GlobalMaxPool", "GlobalAveragePool")),
    *((op, ChannelOnly(carry=Carry.ZERO)) for op in ("AveragePool", "Upsample")),
    *((op, ChannelOnly()) for op in ("LpPool", "GlobalLpPool")),
    ("Pad", Pad(carry=Carry.ZERO)),
    ("Resize", Resize(carry=Carry.ZERO)),
    *((op, Reduce(carry=Carry.MOVES)) for op in ("ReduceMean", "ReduceMax", "ReduceMin")),
    ("ReduceSum", Reduce(carry=Carry.ZERO)),
    *((op, Reduce()) for op in ("ReduceL1", "ReduceL2", "ReduceProd")),
    ("Softmax", AxisOp()),
    ("LogSoftmax", AxisOp()),
    ("LayerNormalization", AxisOp(trailing=True)),
)
