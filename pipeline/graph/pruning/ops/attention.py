"""Fused QKV projections: one ``Linear(d, 3d)`` whose output holds Q, K and V, split into heads.

torch exports ``Attention.forward`` with ``qkv = Linear(d, 3d)(x)`` (the dynamo and the
TorchScript exporter alike) as::

    qkv = MatMul(x, W[d, 3d]) + b                  [B, T, 3d]       channel c = s*d + h*Dh + e
    Reshape(qkv, [B, T, 3, H, Dh])                  s = c // d, h = (c // Dh) % H, e = c % Dh
    Transpose(perm=[2, 0, 3, 1, 4])                 (optional)       [3, B, H, T, Dh]
    Gather(axis=0, index s) for s = 0, 1, 2         (or Split into 3, or Slice [s, s+1))
    q @ k^T -> Softmax -> @ v -> Transpose -> Reshape [B, T, H*Dh] -> MatMul(W_o)

Head ``h`` is the set ``{s*d + h*Dh + e : s in 0..2, e in 0..Dh-1}`` of ``3*Dh`` output
channels of the projection. Removing a set of heads keeps, in every block ``s``, the channels
of the kept heads in their order, so the pruned output ``[B, T, 3*H'*Dh]`` reshapes to
``[B, T, 3, H', Dh]``: the Reshape's ``H`` becomes ``H'``, ``Dh`` stays (the Reshape handler's
ordinary fix-up on the head axis). Q, K and V lose the same head indices by construction (one
unit covers all three blocks); downstream, the attention MatMuls couple the head (batch) axes
of q, k and v, and the output Reshape maps head ``h`` to rows ``h*Dh .. h*Dh + Dh - 1`` of
``W_o`` (ordinary handlers).

The Reshape is tracked on its head axis only when the "3" axis is consumed exactly as above:
every reader of the Reshape output (through at most one Transpose) selects one of Q, K, V on
that axis, and together they select each exactly once. Anything else is refused with the
reason (the projection stays unpruned). What happens to q, k and v after the selection is
checked by the ordinary handlers, which pin anything they do not understand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis, Space
from trtforge.pipeline.graph.pruning.graph import attr
from trtforge.pipeline.graph.pruning.ops.base import pass_to


def looks_fused(out_shape: Sequence[int | None], j: int, channels: int, inner: int) -> bool:
    """A Reshape that splits the (innermost) channel axis into trailing ``[3, H, Dh]``."""
    return inner == 1 and len(out_shape) == j + 3 and out_shape[j] == 3 and channels % 3 == 0


def track_heads(
    node: onnx.NodeProto, an: Analysis, space: Space, j: int, out_shape: Sequence[int | None]
) -> None:
    """Track the head axis ``j + 1``: channel ``c`` belongs to head ``(c // Dh) % H`` (all of Q, K, V)."""
    heads, head_dim = int(out_shape[j + 1] or 0), int(out_shape[j + 2] or 0)
    why = check(node, an, j)
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


def check(node: onnx.NodeProto, an: Analysis, j: int) -> str | None:
    """None when axis ``j`` (the "3" axis) of ``node``'s output is read as Q, K, V; else why not."""
    tensor, axis = node.output[0], j
    readers = an.index.consumers.get(tensor, [])
    if len(readers) == 1 and readers[0][0].op_type == "Transpose" and tensor not in an.index.graph_outputs:
        transpose = readers[0][0]
        rank = an.index.rank(tensor) or 0
        perm = [int(p) for p in attr(transpose, "perm", list(range(rank))[::-1])]
        tensor, axis = transpose.output[0], perm.index(j)
        readers = an.index.consumers.get(tensor, [])
    if tensor in an.index.graph_outputs:
        return f"{tensor!r} is a graph output"
    chosen: list[int] = []
    for reader, i in readers:
        picked = _selected(reader, i, an, axis) if i == 0 else None
        if picked is None:
            return (
                f"{reader.op_type} node {reader.name!r} reads {tensor!r}; only a Gather, Split or "
                f"Slice selecting one of Q, K, V on axis {axis} is understood"
            )
        chosen.extend(picked)
    if sorted(chosen) != [0, 1, 2]:
        return f"the readers of {tensor!r} select {sorted(chosen)} on axis {axis}, not Q, K and V once each"
    return None


def _selected(node: onnx.NodeProto, i: int, an: Analysis, axis: int) -> list[int] | None:
    """Which of Q, K, V (0, 1, 2) ``node`` selects on ``axis`` of its data input, or None."""
    rank = an.index.rank(node.input[0]) or 0
    if node.op_type == "Gather":
        if int(attr(node, "axis", 0)) % max(rank, 1) != axis:
            return None
        index = an.index.const(node.input[1])
        if index is None or index.size != 1 or index.ndim > 1:
            return None
        return [int(index.reshape(-1)[0]) % 3]
    if node.op_type == "Split":
        if int(attr(node, "axis", 0)) % max(rank, 1) != axis or len(node.output) != 3:
            return None
        sizes = [an.index.shape(o) for o in node.output]
        if any(s is None or len(s) != rank or s[axis] != 1 for s in sizes):
            return None
        return [0, 1, 2]
    if node.op_type == "Slice":
        return _sliced(node, an, axis, rank)
    return None


def _sliced(node: onnx.NodeProto, an: Analysis, axis: int, rank: int) -> list[int] | None:
    """The one position a Slice with constant bounds, on ``axis`` only and step 1, keeps."""
    names = list(node.input[1:5])
    consts = [an.index.const(n) if n else None for n in names]
    if len(names) < 2 or any(c is None for c, n in zip(consts, names) if n):
        return None
    starts, ends = (np.asarray(c).reshape(-1) for c in consts[:2])
    axes = consts[2] if len(consts) > 2 and consts[2] is not None else np.arange(len(starts))
    steps = consts[3] if len(consts) > 3 and consts[3] is not None else np.ones(len(starts))
    axes_l = [int(a) % max(rank, 1) for a in np.asarray(axes).reshape(-1)]
    if axes_l != [axis] or int(np.asarray(steps).reshape(-1)[0]) != 1:
        return None
    lo, hi, _ = slice(int(starts[0]), int(ends[0])).indices(3)
    return [lo] if hi - lo == 1 else None
