"""Per-op handlers keyed by ``op_type``: how a tracked channel axis passes through an op.

A handler may declare its outputs prunable (``source``: Conv/Gemm/MatMul output channels)
and says, for a tracked input axis (``propagate``), which output axes and initializer axes
move with it, which other inputs must share its indices (``require``), and where it is
summed over (``sink``). Anything it cannot map is *pinned* with a reason, never guessed.
Extend with ``register_op_handler("MyOp", handler)``; an op without a handler pins every
tracked tensor it reads.

Element-wise, pooling, reduction and axis ops live here; layout ops (Concat, Split, Slice,
Reshape, Squeeze, Gather, fused QKV) in ``handlers_shape.py``; weighted ops and
normalisations in ``handlers_linear.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from pipeline.graph.pruning.deps import Analysis, Space
from pipeline.graph.pruning.graph import attr


class OpHandler:
    """Base handler: no prunable outputs; every tracked input is pinned."""

    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        return None

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        an.pin(space, f"{node.op_type} node {node.name!r}: input {idx} on axis {space.axis} is not supported")


_HANDLERS: dict[str, OpHandler] = {}


def register_op_handler(op_type: str, handler: OpHandler) -> None:
    """Register (or replace) the handler for ``op_type``."""
    _HANDLERS[op_type] = handler


def get_handler(op_type: str) -> OpHandler | None:
    from pipeline.graph.pruning import handlers_linear, handlers_shape  # noqa: F401  (register their ops)

    return _HANDLERS.get(op_type)


def pass_to(
    node: onnx.NodeProto,
    an: Analysis,
    space: Space,
    out_name: str,
    out_axis: int,
    out_pos: np.ndarray | None = None,
    in_pos: np.ndarray | None = None,
) -> Space | None:
    """Track ``out_name`` at ``out_axis`` as carrying ``space`` (identity unless positions given)."""
    out = an.act(out_name, out_axis)
    if out is None:
        an.pin(
            space,
            f"{node.op_type} node {node.name!r}: output {out_name!r} has no static size on axis {out_axis}",
        )
        return None
    if out_pos is None and out.size != space.size:
        an.pin(space, f"{node.op_type} node {node.name!r}: output size {out.size} != input size {space.size}")
        return None
    an.flow(node, out, space, out_pos, in_pos)
    an.reach(out)
    return out


def couple(node: onnx.NodeProto, an: Analysis, space: Space, other: str, axis: int) -> None:
    """``other`` (another input of ``node``) shares ``space``'s indices at ``axis`` (unless broadcast)."""
    shape = an.index.shape(other)
    if shape is None:
        an.pin(space, f"{node.op_type} node {node.name!r}: input {other!r} has no known shape")
        return
    if axis < 0 or axis >= len(shape) or shape[axis] == 1:
        return  # broadcast along the tracked axis
    if an.index.is_const(other):
        an.link(an.param(other, axis, "other"), space)
        return
    o = an.act(other, axis)
    if o is None or o.size != space.size:
        an.pin(space, f"{node.op_type} node {node.name!r}: input {other!r} does not match on axis {axis}")
        return
    an.link(o, space)
    producer = an.index.producer.get(other)
    what = f"{producer.op_type} node {producer.name!r}" if producer is not None else "a graph input"
    an.require(
        o,
        f"coupled through {node.op_type} node {node.name!r} to {other!r} from {what}, "
        "which no prunable layer controls",
    )


class Elementwise(OpHandler):
    """Unary and broadcasting n-ary element-wise ops: the axis passes through; other inputs couple."""

    def __init__(self, data_inputs: Sequence[int] | None = None) -> None:
        self.data_inputs = data_inputs  # None: every input is data (Add, Mul, Where ...)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if self.data_inputs is not None and idx not in self.data_inputs:
            return super().propagate(node, idx, space, an)
        out_rank = an.index.rank(node.output[0])
        if out_rank is None:
            return an.pin(space, f"{node.op_type} node {node.name!r}: output rank unknown")
        in_rank = an.index.rank(space.tensor) or 0
        out_axis = space.axis + out_rank - in_rank
        for j, other in enumerate(node.input):
            if j == idx or not other or (self.data_inputs is not None and j not in self.data_inputs):
                continue
            o_rank = an.index.rank(other)
            couple(node, an, space, other, out_axis - (out_rank - (o_rank or 0)))
        pass_to(node, an, space, node.output[0], out_axis)
        return None


class Transpose(OpHandler):
    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        rank = an.index.rank(space.tensor) or 0
        perm = list(attr(node, "perm", list(range(rank))[::-1]))
        pass_to(node, an, space, node.output[0], perm.index(space.axis))


class ChannelOnly(OpHandler):
    """Pools and per-channel ops that keep axis 1 (NCHW channels) and touch only spatial axes."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0 or space.axis != 1:
            return super().propagate(node, idx, space, an)
        if node.op_type == "Pad" and not _pad_keeps_axis(node, an, space.axis):
            return an.pin(space, f"Pad node {node.name!r} pads the channel axis")
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
            return an.pin(
                space, f"Resize node {node.name!r} has explicit output sizes (channel count baked in)"
            )
        pass_to(node, an, space, node.output[0], 1)
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


class Reduce(OpHandler):
    """ReduceMean & co.: fine over other axes; reducing over the tracked axis pins it."""

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


class AxisOp(OpHandler):
    """Softmax/LogSoftmax/LayerNormalization: fine unless the op normalises over the tracked axis."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        rank = an.index.rank(space.tensor) or 0
        axis = int(attr(node, "axis", -1)) % rank
        covered = space.axis >= axis if node.op_type == "LayerNormalization" else space.axis == axis
        if covered:
            return an.pin(space, f"{node.op_type} node {node.name!r} normalises over the channel axis")
        pass_to(node, an, space, node.output[0], space.axis)
        return None


class NoEffect(OpHandler):
    """Shape/Size read only the (consistently changed) shape."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        return None


UNARY = (
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Exp",
    "Log",
    "Sqrt",
    "Abs",
    "Neg",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Identity",
    "Dropout",
    "Cast",
    "ThresholdedRelu",
    "Silu",
)
NARY = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "And",
    "Or",
)

for _op in UNARY:
    register_op_handler(_op, Elementwise(data_inputs=(0,)))
register_op_handler("Clip", Elementwise(data_inputs=(0,)))
for _op in NARY:
    register_op_handler(_op, Elementwise())
for _op in (
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "Pad",
    "Resize",
    "Upsample",
):
    register_op_handler(_op, ChannelOnly())
register_op_handler("Transpose", Transpose())
for _op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceProd"):
    register_op_handler(_op, Reduce())
for _op in ("Softmax", "LogSoftmax", "LayerNormalization"):
    register_op_handler(_op, AxisOp())
for _op in ("Shape", "Size"):
    register_op_handler(_op, NoEffect())
