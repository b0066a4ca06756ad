"""Read a shape vector computed from ``Shape`` ops as a list of constants and tensor dimensions.

``Concat(Unsqueeze(Gather(Shape(t), 0)), [-1])`` reads as ``[DimRef(t, 0), -1]``. Used by the
rules that replace computed shapes with constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import const_array


@dataclass(frozen=True)
class DimRef:
    """Dimension ``dim`` of ``tensor``."""

    tensor: ir.Value
    dim: int


Entry = int | DimRef  # a literal value or a dimension of a tensor


def shape_entries(value: ir.Value | None) -> list[Entry] | None:
    """A Concat input as target entries, or None when it is not a constant or a dimension."""
    if value is None:
        return None
    array = const_array(value)
    if array is not None:
        return [int(v) for v in array.reshape(-1)] if array.ndim <= 1 else None
    node = value.producer()
    if node is None:
        return None
    if node.op_type == "Unsqueeze":
        inner = shape_entries(node.inputs[0])
        return inner if inner is not None and len(inner) == 1 else None
    if node.op_type == "Shape":
        return _shape_dims(node, None)
    if node.op_type in ("Gather", "Slice") and node.inputs[0] is not None:
        source = node.inputs[0].producer()
        if source is None or source.op_type != "Shape":
            return None
        return _shape_dims(source, node)
    return None


def _shape_dims(shape_node: ir.Node, select: ir.Node | None) -> list[Entry] | None:
    """Dimensions of ``Shape(t)`` picked by a Gather/Slice ``select`` (all of them when None).

    Without a known rank of ``t`` only non-negative picks of a plain ``Shape`` resolve.
    """
    t = shape_node.inputs[0]
    if t is None:
        return None
    rank = None if t.shape is None else len(t.shape)
    dims: list[int] | None = None  # None: the identity map on non-negative indices
    if rank is not None:
        dims = list(range(rank))[shape_node.attributes.get_int("start", 0) : _end(shape_node, rank)]
    elif "start" in shape_node.attributes or "end" in shape_node.attributes:
        return None
    picked = _pick(select, rank if dims is None else len(dims))
    if picked is None:
        return None
    if dims is not None:
        picked = [dims[i] for i in picked]
    return [DimRef(t, d) for d in picked]


def _pick(select: ir.Node | None, size: int | None) -> list[int] | None:
    """Indices a Gather/Slice picks from a shape vector of ``size`` (None: unknown) elements."""
    if select is None:
        return None if size is None else list(range(size))
    args = [const_array(v) for v in select.inputs[1:]]
    if any(a is None for a in args) or not args:
        return None
    if select.op_type == "Gather":
        index = args[0]
        if select.attributes.get_int("axis", 0) != 0 or index is None or index.ndim > 1:
            return None
        picks = [int(i) for i in index.reshape(-1)]
        if size is None:
            return picks if all(i >= 0 for i in picks) else None
        return [i % size for i in picks] if all(-size <= i < size for i in picks) else None
    starts, ends, *rest = [int(a.reshape(-1)[0]) if a is not None and a.size == 1 else None for a in args]
    axes = rest[0] if rest else 0
    steps = rest[1] if len(rest) > 1 else 1
    if starts is None or ends is None or axes not in (0, -1) or steps != 1:
        return None
    if size is None:
        return list(range(starts, ends)) if 0 <= starts <= ends < 2**31 else None
    return list(range(size))[starts:ends]


def _end(shape_node: ir.Node, rank: int) -> int:
    return shape_node.attributes.get_int("end", rank) if "end" in shape_node.attributes else rank
