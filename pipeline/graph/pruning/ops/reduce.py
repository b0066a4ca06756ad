"""Pools, padding, resampling, reductions and ops that normalise over an axis.

Coupling: pools on NCHW compute ``y[n, c] = f(x[n, c])`` over spatial axes, so channel axis 1
passes through. Pad and Resize work axis by axis: any axis they leave alone (pads 0, scale 1)
passes, wherever it is (``[N, C, T]`` padded in time, NHWC resized in space); their pads, scales
and sizes are read through constant subgraphs and ``Shape`` (``values``). A reduction keeps every
axis it does not reduce over (shifted left past removed axes when ``keepdims=0``); reducing over
the tracked axis is a sink for sums (ReduceSum/L1/L2/SumSquare: a removed channel drops its
term) and pins it otherwise. LpNormalization along the tracked axis passes it and sinks it (its
norm is such a sum). Softmax normalises over one axis (every axis from ``axis`` on before opset
13), LayerNormalization over every axis from ``axis`` on: normalising over the tracked axis pins
it.

Surgery: a literal channel count in Resize's ``sizes`` becomes the kept count. Lossless mode: a
constant channel stays that constant through a max pool, a mean or edge/reflect padding
(``Carry.MOVES``); a zero channel stays zero through averaging, resampling and sums
(``Carry.ZERO``); constant padding with ``v`` keeps only a channel equal to ``v``; anything
else is unknown. No MACs counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.cut import Cut
from trtforge.pipeline.graph.pruning.deps import Analysis, Fixup, Space
from trtforge.pipeline.graph.pruning.graph import attr
from trtforge.pipeline.graph.pruning.ops.base import (
    Carry,
    HandlerTable,
    OpHandler,
    pass_to,
    same_count,
    same_size,
    unknown,
)
from trtforge.pipeline.graph.pruning.ops.values import Dim, folded, shape_entries


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
class Pad(OpHandler):
    """``y = pad(x, pads, mode, v)`` pads each axis ``k`` by ``pads[k]`` before and
    ``pads[k + r]`` after (restricted to ``axes``, input 3, when given); positions are never
    mixed across an axis, so any axis whose two pads are 0 passes through unchanged whatever
    the others pad (a time axis of ``[N, C, T]``, the spatial axes of NHWC). Pads come from the
    attribute (opset < 11) or input 1, folded from constants when an exporter computes them
    (``values.folded``); pads that depend on activations are refused as such.

    Lossless: mode ``constant`` with value ``v`` (input 2 or the ``value`` attribute; 0 by
    default) keeps a channel constant ``c`` only where ``c = v``; ``edge``/``reflect``/``wrap``
    copy positions of the channel, so its constant moves unchanged."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        pads = _axis_pads(node, an, space.axis)
        if isinstance(pads, str):
            return an.pin(space, pads)
        if pads != (0, 0):
            return an.pin(space, f"Pad node {node.name!r} pads the channel axis {space.axis} by {list(pads)}")
        same_size(an, space, node.output[0], space.axis, an.index.rank(space.tensor) or 0)
        pass_to(node, an, space, node.output[0], space.axis)
        return None

    def map_values(self, node: onnx.NodeProto, out: Space, x: np.ndarray, an: Analysis) -> np.ndarray | None:
        mode = attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            return x
        if len(node.input) > 2 and node.input[2]:
            v = folded(an, node.input[2])
            if v is None or v.size != 1:
                return unknown(out.size)
            value = float(v.reshape(-1)[0])
        else:
            value = float(attr(node, "value", 0.0))
        return np.where(x == value, value, np.nan)


def _axis_pads(node: onnx.NodeProto, an: Analysis, axis: int) -> tuple[int, int] | str:
    """(before, after) pads of ``axis``, or why they are not known."""
    rank = an.index.rank(node.input[0]) or 0
    axes: list[int] | None = None
    if len(node.input) > 3 and node.input[3]:
        value = folded(an, node.input[3])
        if value is None:
            return f"Pad node {node.name!r}: its axes are computed at run time from activations"
        axes = [int(a) % max(rank, 1) for a in value.reshape(-1)]
        if axis not in axes:
            return (0, 0)
    raw = attr(node, "pads") if len(node.input) < 2 or not node.input[1] else folded(an, node.input[1])
    if raw is None:
        return (
            f"Pad node {node.name!r}: its pads are computed at run time from activations, so it "
            "cannot be shown to leave the channel axis unpadded"
        )
    pads = [int(p) for p in np.asarray(raw).reshape(-1)]
    k = axes.index(axis) if axes is not None else axis
    half = len(pads) // 2
    if k >= half:
        return (0, 0)
    return (pads[k], pads[k + half])


@dataclass(frozen=True)
class Resize(OpHandler):
    """Resize/Upsample resample each axis on its own (nearest, linear and cubic are separable):
    ``y[.., i, ..] = Σ_j w(i, j) x[.., j, ..]`` along an axis with scale ``s``. With ``s = 1``
    every coordinate mode maps ``i`` to ``i`` exactly (linear and cubic weights ``[0, 1, 0, 0]``),
    except ``tf_half_pixel_for_nn`` rounding ``i + 0.5`` up (``ceil``/``round_prefer_ceil``),
    so a channel axis with scale 1 passes through. The scale of the tracked axis comes from
    ``scales`` (input 2, or input 1 / the attribute for opset 10 and Upsample) or from ``sizes``
    (input 3): an entry reading the input's own size at run time (``Shape(x)[a]``) follows the
    pruned count by itself; a literal count ``C`` is rewritten to the kept count; any other value
    resamples the channel axis and pins it. ``axes`` (opset 18) restricts both to its axes."""

    carry: Carry = Carry.ZERO  # resampling zeros gives zeros

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        why, fix = self._check(node, an, space)
        if why is not None:
            return an.pin(space, why)
        same_size(an, space, node.output[0], space.axis, an.index.rank(space.tensor) or 0)
        if pass_to(node, an, space, node.output[0], space.axis) is not None and fix is not None:
            an.fixup("resize_sizes", node, index=fix, tensor=node.output[0], axis=space.axis)
        return None

    def _check(self, node: onnx.NodeProto, an: Analysis, space: Space) -> tuple[str | None, int | None]:
        a, name = space.axis, f"{node.op_type} node {node.name!r}"
        rank = an.index.rank(space.tensor) or 0
        axes_attr = attr(node, "axes")
        axes = list(range(rank)) if axes_attr is None else [int(k) % max(rank, 1) for k in axes_attr]
        if a not in axes:
            return None, None
        k = axes.index(a)
        ctm = _text(attr(node, "coordinate_transformation_mode", b"half_pixel"))
        nearest = _text(attr(node, "nearest_mode", b"round_prefer_floor"))
        mode = _text(attr(node, "mode", b"nearest"))
        if ctm == "tf_crop_and_resize":
            return f"{name} crops (tf_crop_and_resize), which may cut the channel axis", None
        if ctm == "tf_half_pixel_for_nn" and mode == "nearest" and nearest in ("ceil", "round_prefer_ceil"):
            return (
                f"{name}: tf_half_pixel_for_nn with {nearest} shifts every axis, the channel axis too",
                None,
            )
        sizes = node.input[3] if len(node.input) > 3 and node.input[3] else None
        if sizes is not None:
            entries = shape_entries(an, sizes)
            if entries is None or k >= len(entries):
                return f"{name}: its output sizes are computed at run time from activations", None
            e = entries[k]
            if isinstance(e, Dim) and same_count(node, an, space, e):
                return None, None
            if isinstance(e, int) and e == space.size:
                if folded(an, sizes) is None:
                    return f"{name}: its run-time sizes spell the channel count {e} as a constant", None
                return None, k
            return f"{name} resamples the channel axis to {e}", None
        scales_name = _scales_input(node)
        raw = attr(node, "scales") if scales_name is None else folded(an, scales_name)
        if raw is None:
            return f"{name}: its scales are computed at run time from activations", None
        scales = np.asarray(raw, dtype=np.float64).reshape(-1)
        if k >= scales.size or scales[k] != 1.0:
            return f"{name} resamples the channel axis (scale {scales[k] if k < scales.size else '?'})", None
        return None, None

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """The literal channel count in ``sizes`` becomes the kept count."""
        n = cut.kept(fixup.data["tensor"], fixup.data["axis"])
        sizes = folded(cut.an, node.input[3])
        if n is None or sizes is None:
            return
        new = sizes.copy()
        new.reshape(-1)[fixup.data["index"]] = n
        if cut.an.index.is_const(node.input[3]):
            cut.set_node_const(node, 3, new)
        else:
            node.input[3] = cut.add_initializer(f"{node.name}__sizes", new)


def _scales_input(node: onnx.NodeProto) -> str | None:
    """The scales input: 2 from opset 11 on, 1 for opset-10 Resize and Upsample; None if absent."""
    if node.op_type == "Upsample" or len(node.input) == 2:
        return node.input[1] if len(node.input) > 1 and node.input[1] else None
    return node.input[2] if len(node.input) > 2 and node.input[2] else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


#: reductions that add one term per position: a removed channel drops its term, a zero one adds
#: nothing (Σx, Σ|x|, √Σx², Σx²), like the input channels of a Conv (a *sink*)
SUMS = ("ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare")
_WHY_NOT_A_SUM = {
    "ReduceMean": "averages over the channel axis (it divides by the channel count)",
    "ReduceMax": "takes the maximum over the channel axis",
    "ReduceMin": "takes the minimum over the channel axis",
    "ReduceProd": "multiplies over the channel axis",
    "ReduceLogSumExp": "reduces over the channel axis with log Σ exp (a zero channel adds exp(0) = 1)",
}


@dataclass(frozen=True)
class Reduce(OpHandler):
    """ReduceMean & co.: every axis it does not reduce passes (shifted left past reduced axes
    when ``keepdims=0``). Reducing over the tracked axis: a sum-like reduction (``SUMS``) is a
    sink, the others pin it with the reason. ``axes`` from the attribute or input 1 (folded
    from constants); none means every axis, or nothing with ``noop_with_empty_axes=1``."""

    carry: Carry = Carry.NONE

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        rank = an.index.rank(space.tensor) or 0
        from_input = len(node.input) > 1 and bool(node.input[1])
        axes = folded(an, node.input[1]) if from_input else attr(node, "axes")
        if from_input and axes is None:
            return an.pin(space, f"{node.op_type} node {node.name!r}: its axes are computed at run time")
        axes_l = sorted(int(a) % rank for a in np.asarray(axes if axes is not None else []).reshape(-1))
        if not axes_l:
            if int(attr(node, "noop_with_empty_axes", 0)):
                pass_to(node, an, space, node.output[0], space.axis)
                return None
            axes_l = list(range(rank))
        if space.axis in axes_l:
            if node.op_type in SUMS:
                an.sink(space)
                return None
            why = _WHY_NOT_A_SUM.get(node.op_type, "reduces over the channel axis")
            return an.pin(space, f"{node.op_type} node {node.name!r} {why}")
        keep = int(attr(node, "keepdims", 1))
        out_axis = space.axis if keep else space.axis - sum(1 for a in axes_l if a < space.axis)
        pass_to(node, an, space, node.output[0], out_axis)
        return None


@dataclass(frozen=True)
class LpNormalization(OpHandler):
    """``y = x / ‖x‖_p`` along ``axis`` (default -1): along another axis it is element-wise for
    the tracked one (passes). Along the tracked axis, ``y[c] = x[c] / (Σ_k |x[k]|^p)^(1/p)``:
    channel ``c`` of ``y`` goes with channel ``c`` of ``x`` (passes) and the norm sums over the
    channels (a sink: a removed channel drops its term, a zero one adds nothing), the same as
    ``ReduceL2`` + ``Div`` spelled out."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        rank = an.index.rank(space.tensor) or 0
        if int(attr(node, "axis", -1)) % max(rank, 1) == space.axis:
            an.sink(space)
        pass_to(node, an, space, node.output[0], space.axis)
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
        # before opset 13 Softmax/LogSoftmax flatten the input to 2-D at ``axis`` (default 1) and
        # normalise over every axis from ``axis`` on
        legacy = not self.trailing and _opset(an) < 13
        axis = int(attr(node, "axis", 1 if legacy else -1)) % rank
        covered = space.axis >= axis if self.trailing or legacy else space.axis == axis
        if covered:
            return an.pin(space, f"{node.op_type} node {node.name!r} normalises over the channel axis")
        pass_to(node, an, space, node.output[0], space.axis)
        return None


def _opset(an: Analysis) -> int:
    return next((int(o.version) for o in an.index.model.opset_import if o.domain in ("", "ai.onnx")), 0)


HANDLERS: HandlerTable = (
    *((op, ChannelOnly(carry=Carry.MOVES)) for op in ("MaxPool", "GlobalMaxPool", "GlobalAveragePool")),
    ("AveragePool", ChannelOnly(carry=Carry.ZERO)),
    *((op, ChannelOnly()) for op in ("LpPool", "GlobalLpPool")),
    ("Pad", Pad()),
    *((op, Resize()) for op in ("Resize", "Upsample")),
    *((op, Reduce(carry=Carry.MOVES)) for op in ("ReduceMean", "ReduceMax", "ReduceMin")),
    ("ReduceSum", Reduce(carry=Carry.ZERO)),
    *((op, Reduce()) for op in ("ReduceL1", "ReduceL2", "ReduceProd", "ReduceSumSquare", "ReduceLogSumExp")),
    ("LpNormalization", LpNormalization()),
    ("Softmax", AxisOp()),
    ("LogSoftmax", AxisOp()),
    ("LayerNormalization", AxisOp(trailing=True)),
)
