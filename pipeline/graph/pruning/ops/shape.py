"""Layout ops: Transpose, Concat, Split, Slice, Reshape/Flatten, Squeeze/Unsqueeze, Gather, and
Shape/Size (which read only the shape).

Coupling: a tracked axis keeps its identity through a layout op, moved to the output axis it
lands on: Concat shifts input ``i``'s positions by the sizes of inputs ``0..i-1`` along its axis,
Split and Slice hand out ranges, a Reshape merges the tracked axis with the axes after it
(channel ``c`` becomes the block ``c·inner .. (c+1)·inner − 1``) or splits it into heads (head
``h`` is the block of channels ``h·Dh .. (h+1)·Dh − 1``; a fused QKV split, see ``attention``).

Surgery: the constants that spell sizes follow the kept counts: a Reshape's target shape on the
tracked axis, a Split's sizes, a Slice's bounds (start ``lo`` becomes the number of kept
positions before ``lo``). Lossless mode: values move unchanged (``Carry.MOVES``). No MACs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.cut import Cut
from trtforge.pipeline.graph.pruning.deps import Analysis, Fixup, Space
from trtforge.pipeline.graph.pruning.graph import attr
from trtforge.pipeline.graph.pruning.ops import attention
from trtforge.pipeline.graph.pruning.ops.base import (
    Carry,
    HandlerTable,
    OpHandler,
    couple,
    data_axis,
    pass_to,
)


@dataclass(frozen=True)
class Layout(OpHandler):
    """A layout op: constants move with their positions."""

    carry: Carry = Carry.MOVES


@dataclass(frozen=True)
class Transpose(Layout):
    """``y = transpose(x, perm)``: input axis ``a`` becomes output axis ``perm.index(a)``."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        rank = an.index.rank(space.tensor) or 0
        perm = list(attr(node, "perm", list(range(rank))[::-1]))
        pass_to(node, an, space, node.output[0], perm.index(space.axis))


@dataclass(frozen=True)
class Concat(Layout):
    """On ``axis``, position ``p`` of input ``i`` lands at ``offset_i + p``, ``offset_i = Σ_{j<i} |x_j|``;
    on any other axis every input shares the output's positions."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        axis = data_axis(node, an, space)
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


@dataclass(frozen=True)
class Split(Layout):
    """On ``axis``, output ``k`` holds input positions ``start_k + p``, ``start_k = Σ_{j<k} |y_j|``;
    any other axis passes to every output."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        axis = data_axis(node, an, space)
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

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """The sizes become the kept counts of the outputs (in the ``split`` attribute or input)."""
        axis = fixup.data["axis"]
        sizes = []
        for out in node.output:
            n = cut.kept(out, axis)
            shape = cut.an.index.shape(out)
            sizes.append(n if n is not None else int((shape or [0] * (axis + 1))[axis] or 0))
        for a in node.attribute:
            if a.name == "split":
                del a.ints[:]
                a.ints.extend(sizes)
                return
        for k in range(len(node.attribute) - 1, -1, -1):
            if node.attribute[k].name == "num_outputs":
                del node.attribute[k]
        arr = np.array(sizes, dtype=np.int64)
        if len(node.input) > 1 and node.input[1]:
            cut.set_node_const(node, 1, arr)
            return
        node.input.append(cut.add_initializer(f"{node.name}__split", arr))


@dataclass(frozen=True)
class Slice(Layout):
    """With constant bounds, output position ``p`` of the tracked axis is input position ``lo + p``
    (step 1 only); slicing other axes keeps the tracked one whole."""

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

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """``[lo, hi)`` becomes ``[kept before lo, kept before hi)`` on the tracked axis."""
        sp = cut.an.space_of(fixup.data["tensor"], fixup.data["axis"])
        if sp is None or cut.keep[sp.id].all():
            return
        k = fixup.data["index"]
        starts, ends = cut.an.index.const(node.input[1]), cut.an.index.const(node.input[2])
        assert starts is not None and ends is not None
        lo, hi, _ = slice(int(starts[k]), int(ends[k])).indices(sp.size)
        mask = cut.keep[sp.id]
        new_lo = int(mask[:lo].sum())
        new_hi = new_lo + int(mask[lo : max(lo, hi)].sum())
        s2, e2 = starts.copy(), ends.copy()
        s2[k], e2[k] = new_lo, new_hi
        cut.set_node_const(node, 1, s2)
        cut.set_node_const(node, 2, e2)


@dataclass(frozen=True)
class Reshape(Layout):
    """Reshape (``flatten`` False) and Flatten: the tracked axis keeps its identity, merges with
    the axes after it (Flatten into Gemm: a channel becomes a block of positions) or splits into
    heads (the outermost new axis is tracked; each head is a block of channels; for a fused QKV
    projection, the head axis after the "3" axis, see ``attention``)."""

    flatten: bool = False

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        if not self.flatten and an.index.const(node.input[1]) is None:
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
        if not self.flatten and attention.looks_fused(out_shape, j, c, inner):
            return attention.track_heads(node, an, space, j, out_shape)
        positions = _positions(c, int(out_shape[j] or 0))
        if positions is None:
            return an.pin(
                space,
                f"{node.op_type} node {node.name!r}: axis of {out_shape[j]} does not divide {c} channels",
            )
        if pass_to(node, an, space, node.output[0], j, *positions) is not None and not self.flatten:
            an.fixup("reshape", node, axis=j)
        return None

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """The target shape's entry on the tracked axis becomes its kept count (0 and -1 stay)."""
        j = fixup.data["axis"]
        shape = cut.an.index.const(node.input[1])
        n = cut.kept(node.output[0], j)
        if shape is None or n is None:
            return
        if int(shape[j]) > 0 and int(shape[j]) != n:
            new = shape.copy()
            new[j] = n
            cut.set_node_const(node, 1, new)


def _positions(c: int, o: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(output positions, input positions) linking ``c`` channels to an output axis of ``o``."""
    if o == c:
        return np.arange(c), np.arange(c)
    if o and o % c == 0:
        return np.arange(o), np.repeat(np.arange(c), o // c)
    if o and c % o == 0:
        return np.repeat(np.arange(o), c // o), np.arange(c)
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


@dataclass(frozen=True)
class Squeeze(Layout):
    """Squeeze drops size-1 ``axes`` (the tracked axis shifts left past them); Unsqueeze
    (``unsqueeze`` True) inserts them (it lands on the ``axis``-th axis not inserted)."""

    unsqueeze: bool = False

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        axes = attr(node, "axes") if len(node.input) < 2 else an.index.const(node.input[1])
        if axes is None:
            return an.pin(space, f"{node.op_type} node {node.name!r}: axes are not constant")
        axes_l = [int(a) for a in np.asarray(axes).reshape(-1)]
        if not self.unsqueeze:
            rank = an.index.rank(space.tensor) or 0
            out_axis = space.axis - sum(1 for a in axes_l if a % rank < space.axis)
        else:
            rank = (an.index.rank(space.tensor) or 0) + len(axes_l)
            norm = sorted(a % rank for a in axes_l)
            kept = [k for k in range(rank) if k not in norm]
            out_axis = kept[space.axis]
        pass_to(node, an, space, node.output[0], out_axis)
        return None


@dataclass(frozen=True)
class Gather(Layout):
    """Gather along another axis than the tracked one keeps it (shifted by the index rank)."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        axis = data_axis(node, an, space)
        if axis == space.axis:
            return an.pin(space, f"Gather node {node.name!r} selects positions along the channel axis")
        ind_rank = an.index.rank(node.input[1])
        if ind_rank is None:
            return an.pin(space, f"Gather node {node.name!r}: the rank of its indices is unknown")
        out_axis = space.axis if space.axis < axis else space.axis - 1 + ind_rank
        pass_to(node, an, space, node.output[0], out_axis)
        return None


@dataclass(frozen=True)
class ShapeOnly(OpHandler):
    """Shape/Size read only the shape, which surgery changes consistently: nothing to track."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        return None


HANDLERS: HandlerTable = (
    ("Transpose", Transpose()),
    ("Concat", Concat()),
    ("Split", Split()),
    ("Slice", Slice()),
    ("Reshape", Reshape()),
    ("Flatten", Reshape(flatten=True)),
    ("Squeeze", Squeeze()),
    ("Unsqueeze", Squeeze(unsqueeze=True)),
    ("Gather", Gather()),
    ("Shape", ShapeOnly()),
    ("Size", ShapeOnly()),
)
