"""The handler interface: everything pruning knows about one op (or one op family).

Each generic driver walks the graph and asks the node's handler one question:

* coupling (``walk.analyze``): ``source`` declares prunable outputs (a Conv's output channel
  ``k`` with row ``k`` of its weight); ``propagate`` says, for a tracked axis of input ``idx``,
  which output and constant axes carry the same positions (``pass_to``), which other inputs
  must share its indices (``couple``) and where it is summed over (``an.sink``). What it
  cannot map it pins with a reason (``an.pin``); it never guesses.
* surgery (``surgery.apply_removal``): ``fix`` applies a change other than slicing constants
  that the handler asked for with ``an.fixup`` while propagating (a Reshape's target shape,
  a Split's sizes, a Conv's ``group``).
* lossless mode (``lossless.constant_values``): ``source_constants`` and ``constants`` give,
  per position of an output axis, the value it provably holds for every input (NaN: unknown).
* cost (``macs.count``): ``macs`` counts the node's multiply-accumulates.

The defaults are the safe answers for an op nobody described: pin, no fix-up, nothing
constant, no MACs. Handlers are shared by registries (``registry.py``), so they keep no state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.cut import Cut
from trtforge.pipeline.graph.pruning.deps import Analysis, Fixup, Space
from trtforge.pipeline.graph.pruning.graph import GraphIndex, attr
from trtforge.pipeline.graph.pruning.ops.values import Dim, shape_entries


def unknown(size: int) -> np.ndarray:
    """``size`` positions none of which is provably constant (all NaN)."""
    return np.full(size, np.nan)


class Carry(Enum):
    """How provably constant values cross an op, position by position (``x``: the carried input).

    ``NONE``: nothing is provably constant after the op.
    ``MOVES``: ``y[p] = x[q]`` for the position ``q`` carried to ``p`` (layout ops, Identity,
    max pools, means): a constant moves unchanged, when a single input carries into the axis.
    ``ZERO``: ``x[q] = 0`` implies ``y[p] = 0`` and nothing else is known (zero padding,
    averages, sums, products with finite factors).
    """

    NONE = "none"
    MOVES = "moves"
    ZERO = "zero"

    def values(self, size: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Output values from ``inputs`` (per carrying input tensor, its values on the output)."""
        first = next(iter(inputs.values()), None)
        if first is None or self is Carry.NONE:
            return unknown(size)
        if self is Carry.MOVES:
            return first if len(inputs) == 1 else unknown(size)
        return np.where(first == 0, 0.0, np.nan)


class OpHandler:
    """Base handler: no prunable outputs, every tracked input pinned, values carried per ``carry``."""

    carry: Carry = Carry.NONE

    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        """Declare prunable output spaces with ``an.source``; by default there are none."""
        return None

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        """Map ``space`` (a tracked axis of input ``idx``) through ``node``; by default pin it."""
        an.pin(space, f"{node.op_type} node {node.name!r}: input {idx} on axis {space.axis} is not supported")

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        """Apply ``fixup`` (recorded by this handler with ``an.fixup``) after ``cut`` removed positions."""
        raise NotImplementedError(
            f"{type(self).__name__} recorded a {fixup.kind!r} fix-up for {node.op_type} node "
            f"{node.name!r} but does not implement fix()"
        )

    def source_constants(self, node: onnx.NodeProto, out: Space, an: Analysis) -> np.ndarray:
        """Values of ``out`` (declared by ``source``) that hold whatever the input; NaN elsewhere."""
        return unknown(out.size)

    def constants(
        self, node: onnx.NodeProto, out: Space, inputs: Mapping[str, np.ndarray], an: Analysis
    ) -> np.ndarray:
        """Values of ``out`` given ``inputs``: per input tensor that carries positions into
        ``out`` (``an.flow``), its provable values on ``out``'s positions (NaN: unknown).

        By default ``map_values`` of the first carried input, or else the ``carry`` rule; ops
        that combine several inputs (Add, Mul, ...) override this instead."""
        x = next(iter(inputs.values()), None)
        with np.errstate(all="ignore"):
            mapped = None if x is None else self.map_values(node, out, x, an)
        return self.carry.values(out.size, inputs) if mapped is None else mapped

    def map_values(self, node: onnx.NodeProto, out: Space, x: np.ndarray, an: Analysis) -> np.ndarray | None:
        """``out``'s values as a function of the carried input's values ``x``; None: use ``carry``."""
        return None

    def macs(self, node: onnx.NodeProto, index: GraphIndex) -> int:
        """Multiply-accumulates of ``node`` with the static shapes of ``index``; 0 by default."""
        return 0


HandlerTable = tuple[tuple[str, OpHandler], ...]  # what each handler module exports as HANDLERS


def axis_values(an: Analysis, name: str, out: Space, out_rank: int) -> np.ndarray | None:
    """Per-position values of constant ``name`` along ``out``'s axis, broadcast numpy-style
    against a rank-``out_rank`` output; None unless it is constant along every other axis."""
    value = an.index.const(name)
    if value is None:
        return None
    axis = out.axis - (out_rank - value.ndim)
    v = value.astype(np.float64)
    if axis < 0 or v.shape[axis] == 1:
        flat = v.reshape(-1)
        return np.full(out.size, flat[0]) if np.all(flat == flat[0]) else None
    moved = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1)
    return np.asarray(moved[:, 0]) if np.all(moved == moved[:, :1]) else None


def operand_values(an: Analysis, name: str, out: Space, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Values of input ``name`` on ``out``'s positions: carried (``inputs``) or, for a constant,
    its value along ``out``'s axis (NaN where neither is known)."""
    if name in inputs:
        return inputs[name]
    value = axis_values(an, name, out, an.index.rank(out.tensor) or 0)
    return unknown(out.size) if value is None else value


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


def same_size(an: Analysis, space: Space, tensor: str, axis: int, rank: int) -> None:
    """Axis ``axis`` of ``tensor`` (of rank ``rank``) has ``space``'s size: a handler proved it
    (a Pad that leaves the axis alone), where ONNX shape inference left it unknown (pads or
    shapes computed by a subgraph it does not propagate values through)."""
    shape = an.index.shapes.get(tensor)
    if shape is not None and len(shape) != rank:
        return
    dims: list[int | None] = list(shape) if shape is not None else [None] * rank
    if 0 <= axis < rank and dims[axis] is None:
        dims[axis] = space.size
        an.index.shapes[tensor] = tuple(dims)


def couple(node: onnx.NodeProto, an: Analysis, space: Space, other: str, axis: int) -> None:
    """``other`` (another input of ``node``) shares ``space``'s indices at ``axis`` (unless broadcast)."""
    shape = an.index.shape(other)
    if shape is None:
        an.pin(space, f"{node.op_type} node {node.name!r}: input {other!r} has no known shape")
        return
    if axis < 0 or axis >= len(shape) or shape[axis] == 1:
        return  # broadcast along the tracked axis
    if expanded_from_one(an, other, axis, space):
        return  # broadcast too, spelled out at run time
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


def expanded_from_one(an: Analysis, name: str, axis: int, space: Space) -> bool:
    """``name`` is ``Expand(s, shape)`` with ``s`` of size 1 on ``axis`` and ``shape`` reading
    ``space``'s own size there at run time (``Shape(x)[a]``): every position holds the same
    value, and the size follows ``x`` after pruning (torch's ``F.normalize``: the norm of
    ``ReduceL2`` expanded to ``Shape(x)`` before ``Div``)."""
    node = an.index.producer.get(name)
    if node is None or node.op_type != "Expand" or len(node.input) < 2:
        return False
    rank, src = an.index.rank(name), an.index.shape(node.input[0])
    entries = shape_entries(an, node.input[1])
    if rank is None or src is None or entries is None:
        return False
    k = axis - (rank - len(src))
    if k >= 0 and src[k] != 1:
        return False
    e = axis - (rank - len(entries))
    entry = entries[e] if 0 <= e < len(entries) else None
    return isinstance(entry, Dim) and same_count(node, an, space, entry)


def same_count(node: onnx.NodeProto, an: Analysis, space: Space, dim: Dim) -> bool:
    """``node`` sizes an axis by ``dim`` (another tensor's size, read at run time) where it must
    equal ``space``'s count: true for ``space`` itself; for another tensor's axis of the same
    size, that axis is coupled to ``space`` position by position (so the two keep the same
    channels, hence the same count) and must be controlled by a prunable layer. False when the
    sizes differ or are unknown."""
    if dim.tensor == space.tensor and dim.axis == space.axis:
        return True
    other = an.act(dim.tensor, dim.axis)
    if other is None or other.size != space.size:
        return False
    an.link(other, space)
    an.require(
        other,
        f"{node.op_type} node {node.name!r} takes its size from axis {dim.axis} of {dim.tensor!r}, "
        "which no prunable layer controls",
    )
    return True


def data_axis(node: onnx.NodeProto, an: Analysis, space: Space, default: int = 0) -> int:
    """The op's ``axis`` attribute, normalised against the rank of the tracked tensor."""
    rank = an.index.rank(space.tensor) or 0
    return int(attr(node, "axis", default)) % max(rank, 1)
