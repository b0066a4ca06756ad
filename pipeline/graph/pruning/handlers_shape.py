"""Handlers of layout ops: Concat, Split, Slice, Reshape/Flatten, Squeeze/Unsqueeze, Gather.

A Reshape that splits a projection's channels into ``[3, H, Dh]`` (a fused QKV projection) is
tracked on its head axis when ``fused_qkv.check`` accepts how the "3" axis is consumed, and
pinned with its reason otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from pipeline.graph.pruning import fused_qkv
from pipeline.graph.pruning.deps import Analysis, Space
from pipeline.graph.pruning.graph import attr
from pipeline.graph.pruning.handlers import OpHandler, couple, pass_to, register_op_handler


class Concat(OpHandler):
    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        rank = an.index.rank(space.tensor) or 0
        axis = int(attr(node, "axis", 0)) % max(rank, 1)
        if space.axis != axis:
            for j, other in enumerate(node.input):
                if j != idx:
                    couple(node, an, space, other, axis=space.axis)
            pass_to(node, an, space, node.output[0], space.axis)
            return None
        offset = 0
        for name in node.input[:idx]:
            shape = an.index.shape(name)
            size = None if shape is None else shape[axis]
            if size is None:
                return an.pin(
                    space, f"Concat node {node.name!r}: input {name!r} has no static size on axis {axis}"
                )
            offset += int(size)
        pass_to(node, an, space, node.output[0], axis, offset + np.arange(space.size), np.arange(space.size))
        return None


class Split(OpHandler):
    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        rank = an.index.rank(space.tensor) or 0
        axis = int(attr(node, "axis", 0)) % max(rank, 1)
        if space.axis != axis:
            for out in node.output:
                pass_to(node, an, space, out, space.axis)
            return None
        start = 0
        for out in node.output:
            shape = an.index.shape(out)
            size = None if shape is None else shape[axis]
            if size is None:
                return an.pin(space, f"Split node {node.name!r}: output {out!r} has no static size")
            n = int(size)
            pass_to(node, an, space, out, axis, np.arange(n), start + np.arange(n))
            start += n
        an.fixup("split", node, axis=axis)
        return None


class Slice(OpHandler):
    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        consts = [an.index.const(n) if n else None for n in node.input[1:5]]
        if (
            any(c is None for c, n in zip(consts, node.input[1:5]) if n)
            or consts[0] is None
            or consts[1] is None
        ):
            return an.pin(space, f"Slice node {node.name!r}: starts/ends/axes/steps are computed at run time")
        rank = an.index.rank(space.tensor) or 0
        starts, ends = (np.asarray(c).reshape(-1) for c in consts[:2])
        axes = (
            np.arange(len(starts))
            if len(consts) < 3 or consts[2] is None
            else np.asarray(consts[2]).reshape(-1)
        )
        steps = np.ones(len(starts), dtype=np.int64) if len(consts) < 4 or consts[3] is None else consts[3]
        axes_l = [int(a) % rank for a in axes]
        if space.axis not in axes_l:
            pass_to(node, an, space, node.output[0], space.axis)
            return None
        k = axes_l.index(space.axis)
        if int(np.asarray(steps).reshape(-1)[k]) != 1:
            return an.pin(space, f"Slice node {node.name!r}: strided slice of the channel axis")
        lo, hi, _ = slice(int(starts[k]), int(ends[k])).indices(space.size)
        pos = np.arange(lo, max(lo, hi))
        pass_to(node, an, space, node.output[0], space.axis, np.arange(len(pos)), pos)
        an.fixup("slice", node, axis=space.axis, index=k, tensor=space.tensor)
        return None


class Reshape(OpHandler):
    """Reshape/Flatten: the tracked axis keeps its identity, merges with the axes after it
    (Flatten into Gemm: a channel becomes a block of positions) or splits into heads (the
    outermost new axis is tracked; each head is a block of channels; for a fused QKV
    projection, the head axis after the "3" axis, see ``fused_qkv``)."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        if node.op_type == "Reshape" and an.index.const(node.input[1]) is None:
            return an.pin(space, f"Reshape node {node.name!r}: target shape is computed at run time")
        in_shape, out_shape = an.index.shape(space.tensor), an.index.shape(node.output[0])
        if in_shape is None or out_shape is None or any(d is None for d in in_shape[space.axis :]):
            return an.pin(
                space, f"{node.op_type} node {node.name!r}: shapes after the channel axis are not static"
            )
        c, inner = space.size, int(np.prod([int(d or 0) for d in in_shape[space.axis + 1 :]], dtype=np.int64))
        j = _matching_axis(out_shape, c * inner)
        if j is None:
            return an.pin(
                space, f"{node.op_type} node {node.name!r}: mixes the channel axis with the axes before it"
            )
        if node.op_type == "Reshape" and fused_qkv.looks_fused(out_shape, j, c, inner):
            return _fused_qkv(node, an, space, j, out_shape)
        positions = _positions(c, int(out_shape[j] or 0))
        if positions is None:
            return an.pin(
                space,
                f"{node.op_type} node {node.name!r}: axis of {out_shape[j]} does not divide {c} channels",
            )
        if pass_to(node, an, space, node.output[0], j, *positions) is not None and node.op_type == "Reshape":
            an.fixup("reshape", node, axis=j)
        return None


def _positions(c: int, o: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(output positions, input positions) linking ``c`` channels to an output axis of ``o``."""
    if o == c:
        return np.arange(c), np.arange(c)
    if o and o % c == 0:
        return np.arange(o), np.repeat(np.arange(c), o // c)
    if o and c % o == 0:
        return np.repeat(np.arange(o), c // o), np.arange(c)
    return None


def _fused_qkv(
    node: onnx.NodeProto, an: Analysis, space: Space, j: int, out_shape: Sequence[int | None]
) -> None:
    """Track the head axis ``j + 1``: channel ``c`` belongs to head ``(c // Dh) % H`` (all of Q, K, V)."""
    heads, head_dim = int(out_shape[j + 1] or 0), int(out_shape[j + 2] or 0)
    why = fused_qkv.check(node, an, j)
    if why is not None:
        return an.pin(
            space,
            f"Reshape node {node.name!r} splits {space.size} channels into [3, {heads}, {head_dim}] "
            f"like a fused QKV projection, but {why}",
        )
    in_pos = np.arange(space.size)
    if pass_to(node, an, space, node.output[0], j + 1, (in_pos // head_dim) % heads, in_pos) is not None:
        an.fixup("reshape", node, axis=j + 1)
    return None


def _matching_axis(shape: Sequence[int | None], extent: int) -> int | None:
    """The output axis from which the trailing dims hold exactly ``extent`` elements."""
    prod = 1
    for j in range(len(shape) - 1, -1, -1):
        d = shape[j]
        if d is None:
            return None
        prod *= int(d)
        if prod == extent:
            return j
        if prod > extent:
            return None
    return None


class Squeeze(OpHandler):
    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        axes = attr(node, "axes") if len(node.input) < 2 else an.index.const(node.input[1])
        if axes is None:
            return an.pin(space, f"{node.op_type} node {node.name!r}: axes are not constant")
        axes_l = [int(a) for a in np.asarray(axes).reshape(-1)]
        if node.op_type == "Squeeze":
            rank = an.index.rank(space.tensor) or 0
            out_axis = space.axis - sum(1 for a in axes_l if a % rank < space.axis)
        else:
            rank = (an.index.rank(space.tensor) or 0) + len(axes_l)
            norm = sorted(a % rank for a in axes_l)
            kept = [k for k in range(rank) if k not in norm]
            out_axis = kept[space.axis]
        pass_to(node, an, space, node.output[0], out_axis)
        return None


class Gather(OpHandler):
    """Gather along another axis than the tracked one keeps it (shifted by the index rank)."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        rank = an.index.rank(space.tensor) or 0
        axis = int(attr(node, "axis", 0)) % max(rank, 1)
        if axis == space.axis:
            return an.pin(space, f"Gather node {node.name!r} selects positions along the channel axis")
        ind_rank = an.index.rank(node.input[1])
        if ind_rank is None:
            return an.pin(space, f"Gather node {node.name!r}: the rank of its indices is unknown")
        out_axis = space.axis if space.axis < axis else space.axis - 1 + ind_rank
        pass_to(node, an, space, node.output[0], out_axis)
        return None


register_op_handler("Concat", Concat())
register_op_handler("Split", Split())
register_op_handler("Slice", Slice())
register_op_handler("Reshape", Reshape())
register_op_handler("Flatten", Reshape())
register_op_handler("Squeeze", Squeeze())
register_op_handler("Unsqueeze", Squeeze())
register_op_handler("Gather", Gather())
