"""Layout ops: Transpose, Concat, Split, Slice, Reshape/Flatten, Squeeze/Unsqueeze, Gather,
Expand, Tile, and Shape/Size (which read only the shape).

Coupling: a tracked axis keeps its identity through a layout op, moved to the output axis it
lands on: Concat shifts input ``i``'s positions by the sizes of inputs ``0..i-1`` along its axis,
Split and Slice hand out ranges (a Slice of other axes passes the tracked one whatever its
run-time bounds), Expand and Tile pass an axis they do not broadcast or repeat. A Reshape that
keeps the tracked axis and every axis before it (``[N, C, T] -> [N, C, T, 1]``,
``[N, C, H, W] -> [N, C, H·W]``, static or symbolic sizes) passes it unchanged; otherwise it
merges the tracked axis with the axes after it (channel ``c`` becomes the block
``c·inner .. (c+1)·inner − 1``) or splits it into heads (head ``h`` is the block of channels
``h·Dh .. (h+1)·Dh − 1``; a fused QKV split, see ``attention``). Target shapes, sizes and bounds
are read through constant subgraphs and ``Shape`` at run time (``values``).

Surgery: the constants that spell sizes follow the kept counts: a Reshape's target shape on the
tracked axis, a Split's sizes, a Slice's bounds (start ``lo`` becomes the number of kept
positions before ``lo``), an Expand's literal channel count (becomes 1). Lossless mode: values
move unchanged (``Carry.MOVES``). No MACs.
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
    same_count,
    same_size,
)
from trtforge.pipeline.graph.pruning.ops.values import Dim, Entry, folded, shape_entries


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
    (step 1 only); slicing other axes keeps the tracked one whole, whatever their bounds (which
    may be computed at run time, as detectors do): only ``axes`` must be known (constant, or the
    first ``len(starts)`` axes when absent)."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        consts = [an.index.const(n) if n else None for n in node.input[1:5]]
        if (
            any(c is None for c, n in zip(consts, node.input[1:5]) if n)
            or consts[0] is None
            or consts[1] is None
        ):
            rank = an.index.rank(space.tensor) or 0
            cut_axes = _slice_axes(node, an, rank)
            if cut_axes is not None and space.axis not in cut_axes:
                same_size(an, space, node.output[0], space.axis, rank)
                pass_to(node, an, space, node.output[0], space.axis)
                return None
            return an.pin(
                space, f"Slice node {node.name!r}: its bounds on the channel axis are computed at run time"
            )
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
            same_size(an, space, node.output[0], space.axis, rank)
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


def _slice_axes(node: onnx.NodeProto, an: Analysis, rank: int) -> list[int] | None:
    """The axes a Slice cuts (normalised), when known without its bounds' values."""
    if len(node.input) > 3 and node.input[3]:
        axes = folded(an, node.input[3])
        return None if axes is None else [int(a) % max(rank, 1) for a in axes.reshape(-1)]
    starts = an.index.shape(node.input[1])
    if starts is None or len(starts) != 1 or starts[0] is None:
        return None
    return list(range(int(starts[0])))


@dataclass(frozen=True)
class Expand(Layout):
    """``y = x`` broadcast to ``shape`` (right-aligned): along the tracked axis ``a`` of ``x``
    (size ``C > 1``) the output keeps ``x``'s positions when the ``shape`` entry there is 1, this
    very size read at run time (``Shape(x)[a]``), or the literal ``C`` (rewritten to the kept
    count); any other entry is not a valid broadcast of ``C``."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        entries = shape_entries(an, node.input[1])
        rank = an.index.rank(space.tensor) or 0
        if entries is None:
            return an.pin(space, f"Expand node {node.name!r}: its shape is computed at run time")
        out_rank = max(rank, len(entries))
        out_axis = space.axis + out_rank - rank
        k = out_axis - (out_rank - len(entries))
        fix = False
        if 0 <= k < len(entries):
            e = entries[k]
            if isinstance(e, Dim):
                if not same_count(node, an, space, e):
                    return an.pin(
                        space,
                        f"Expand node {node.name!r}: its shape on the channel axis is the size of axis "
                        f"{e.axis} of {e.tensor!r}, not tied to the channels",
                    )
            elif e == space.size:
                if folded(an, node.input[1]) is None:
                    return an.pin(
                        space,
                        f"Expand node {node.name!r}: its run-time shape spells the channel count {e} "
                        "as a constant",
                    )
                fix = True
            elif e != 1:
                return an.pin(space, f"Expand node {node.name!r} expands the channel axis to {e}")
        same_size(an, space, node.output[0], out_axis, out_rank)
        if pass_to(node, an, space, node.output[0], out_axis) is not None and fix:
            an.fixup("expand", node, index=k, axis=out_axis)
        return None

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """The literal channel count in ``shape`` becomes 1 (a broadcast of the kept channels)."""
        shape = folded(cut.an, node.input[1])
        if shape is None:
            return
        new = shape.copy()
        new.reshape(-1)[fixup.data["index"]] = 1
        if cut.an.index.is_const(node.input[1]):
            cut.set_node_const(node, 1, new)
        else:
            node.input[1] = cut.add_initializer(f"{node.name}__shape", new)


@dataclass(frozen=True)
class Tile(Layout):
    """``y`` repeats ``x`` ``repeats[k]`` times along each axis ``k``: with ``repeats[a] = 1`` the
    tracked axis passes; otherwise the channels repeat (pinned)."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0:
            return super().propagate(node, idx, space, an)
        repeats = folded(an, node.input[1])
        if repeats is None:
            return an.pin(space, f"Tile node {node.name!r}: its repeats are computed at run time")
        r = int(repeats.reshape(-1)[space.axis])
        if r != 1:
            return an.pin(space, f"Tile node {node.name!r} repeats the channel axis {r} times")
        same_size(an, space, node.output[0], space.axis, an.index.rank(space.tensor) or 0)
        pass_to(node, an, space, node.output[0], space.axis)
        return None


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
        if not self.flatten:
            kept = _keeps_prefix(node, an, space)
            if isinstance(kept, str):
                return an.pin(space, kept)
            if kept is not None:
                same_size(an, space, node.output[0], space.axis, len(shape_entries(an, node.input[1]) or ()))
                if pass_to(node, an, space, node.output[0], space.axis) is not None and kept:
                    an.fixup("reshape", node, axis=space.axis)
                return None
            if folded(an, node.input[1]) is None:
                return an.pin(
                    space,
                    f"Reshape node {node.name!r}: target shape is computed at run time and does not "
                    "keep the axes up to the channel axis",
                )
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
        """The target shape's entry on the tracked axis becomes its kept count (0 and -1 stay); a
        target folded from constants (not stored as one) is replaced by a new initializer."""
        j = fixup.data["axis"]
        shape = folded(cut.an, node.input[1])
        n = cut.kept(node.output[0], j)
        if shape is None or n is None:
            return
        if int(shape[j]) > 0 and int(shape[j]) != n:
            new = shape.copy()
            new[j] = n
            if cut.an.index.is_const(node.input[1]):
                cut.set_node_const(node, 1, new)
            else:
                node.input[1] = cut.add_initializer(f"{node.name}__shape", new)


def _keeps_prefix(node: onnx.NodeProto, an: Analysis, space: Space) -> bool | str | None:
    """Does Reshape ``node`` keep the tracked axis ``a`` and every axis before it?

    Row-major, ``x[i_0, .., i_a, rest]`` sits at ``((i_0·d_1 + ..)·d_a + i_a)·R + rest`` with
    ``R = d_{a+1}·..``. A target ``[d_0, .., d_a, e_{a+1}, ..]`` (any trailing ``e`` with product
    ``R``) puts it at ``y[i_0, .., i_a, rest']`` with the same ``i_a``: channel ``c`` stays channel
    ``c`` and only the axes after it are regrouped (``[N, C, T] -> [N, C, T, 1]``,
    ``[N, C, H, W] -> [N, C, H·W]``), for any sizes, static or not. Entries are read with
    ``values.shape_entries``: 0 copies the input's size (``allowzero=0``), ``Dim(x, k)`` is
    ``x``'s run-time size, ``-1`` is solved symbolically from the element count.

    Returns None when this is not such a reshape (the caller tries merging/splitting), a reason
    when it is but cannot be rewritten, else whether the target spells the channel count ``C``
    literally (a fix-up then writes the kept count)."""
    target = shape_entries(an, node.input[1])
    in_shape = an.index.shape(space.tensor)
    a = space.axis
    if target is None or in_shape is None or len(target) <= a:
        return None
    x = space.tensor
    ins: list[Entry] = [int(d) if d is not None else Dim(x, k) for k, d in enumerate(in_shape)]
    zero_copies = not int(attr(node, "allowzero", 0))
    outs: list[Entry | None] = []
    for j, e in enumerate(target):
        if isinstance(e, Dim):
            outs.append(ins[e.axis] if e.tensor == x and e.axis < len(ins) else e)
        elif e == 0 and zero_copies:
            if j >= len(ins):
                return None
            outs.append(ins[j])
        elif e == -1:
            outs.append(None)
        else:
            outs.append(int(e))
    if outs.count(None) > 1:
        return None
    if None in outs:
        solved = _quotient(ins, [o for o in outs if o is not None])
        if solved is None:
            return None
        outs[outs.index(None)] = solved
    if any(outs[j] != ins[j] for j in range(a + 1)):
        return None
    entry = target[a]
    literal = not isinstance(entry, Dim) and int(entry) > 0
    if literal and folded(an, node.input[1]) is None:
        return (
            f"Reshape node {node.name!r}: its run-time target shape spells the channel count "
            f"{space.size} as a constant, which pruning cannot rewrite"
        )
    return literal


def _quotient(num: Sequence[Entry], den: Sequence[Entry]) -> Entry | None:
    """``prod(num) / prod(den)`` as one entry (an int or a single ``Dim``), when it is one."""
    coef_n = int(np.prod([d for d in num if isinstance(d, int)], dtype=np.int64))
    coef_d = int(np.prod([d for d in den if isinstance(d, int)], dtype=np.int64))
    syms = [d for d in num if isinstance(d, Dim)]
    for d in den:
        if isinstance(d, Dim):
            if d not in syms:
                return None
            syms.remove(d)
    if coef_d == 0 or coef_n % coef_d:
        return None
    coef = coef_n // coef_d
    if not syms:
        return coef
    return syms[0] if len(syms) == 1 and coef == 1 else None


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
    ("Expand", Expand()),
    ("Tile", Tile()),
    ("Shape", ShapeOnly()),
    ("Size", ShapeOnly()),
)
