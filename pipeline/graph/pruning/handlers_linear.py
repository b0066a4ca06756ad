"""Handlers of weighted ops (the prunable producers and the contractions that consume them) and
of per-channel normalisations.

Weight layouts: Conv ``W[K, C/g, kh, kw]``; ConvTranspose ``W[C, K/g, kh, kw]``; Gemm ``B[K, N]``
(``B[N, K]`` with ``transB``); MatMul ``B[..., K, N]``.
"""

from __future__ import annotations

import numpy as np
import onnx

from pipeline.graph.pruning.deps import Analysis, Space
from pipeline.graph.pruning.graph import attr
from pipeline.graph.pruning.handlers import OpHandler, couple, pass_to, register_op_handler


def _weight(node: onnx.NodeProto, an: Analysis, i: int) -> np.ndarray | None:
    if len(node.input) <= i or not node.input[i]:
        return None
    return an.index.const(node.input[i])


def _declare_source(node: onnx.NodeProto, an: Analysis, out_axis: int, w_axis: int, bias: int | None) -> None:
    out = an.act(node.output[0], out_axis)
    if out is None:
        return
    w = an.param(node.input[1], w_axis, "weight")
    if w.size != out.size:
        return
    an.link(out, w)
    if (
        bias is not None
        and len(node.input) > bias
        and node.input[bias]
        and an.index.is_const(node.input[bias])
    ):
        b = an.index.const(node.input[bias])
        if b is not None and b.ndim >= 1 and b.shape[-1] == out.size:
            an.link(out, an.param(node.input[bias], -1, "bias"))
    an.source(node, out)
    if an.index.users(node.input[1]) > 1:
        an.pin(
            out, f"weight {node.input[1]!r} of {node.op_type} node {node.name!r} is shared with other nodes"
        )


class Conv(OpHandler):
    transpose = False

    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        w = _weight(node, an, 1)
        if w is None or int(attr(node, "group", 1)) != 1:
            return
        _declare_source(node, an, 1, 1 if self.transpose else 0, 2)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        w = _weight(node, an, 1)
        if idx != 0 or space.axis != 1 or w is None:
            return super().propagate(node, idx, space, an)
        group = int(attr(node, "group", 1))
        if group == 1:
            an.link(space, an.param(node.input[1], 0 if self.transpose else 1, "weight"))
            an.sink(space)
            return None
        if self.transpose:
            return an.pin(space, f"ConvTranspose node {node.name!r} with group={group} is not supported")
        return self._grouped(node, space, an, group, w)

    @staticmethod
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


class ConvTranspose(Conv):
    transpose = True


class Gemm(OpHandler):
    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        if _weight(node, an, 1) is None:
            return
        _declare_source(node, an, 1, 0 if attr(node, "transB", 0) else 1, 2)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        k_axis = 0 if attr(node, "transA", 0) else 1
        if idx != 0 or space.axis != k_axis or _weight(node, an, 1) is None:
            return super().propagate(node, idx, space, an)
        an.link(space, an.param(node.input[1], 1 if attr(node, "transB", 0) else 0, "weight"))
        an.sink(space)
        return None


class MatMul(OpHandler):
    def source(self, node: onnx.NodeProto, an: Analysis) -> None:
        w = _weight(node, an, 1)
        if w is None or w.ndim < 2:
            return
        _declare_source(node, an, -1, -1, None)

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        ranks = [an.index.rank(n) for n in node.input[:2]]
        out_rank = an.index.rank(node.output[0])
        if None in ranks or out_rank is None or min(r or 0 for r in ranks) < 2:
            return super().propagate(node, idx, space, an)
        ra, rb = int(ranks[0] or 0), int(ranks[1] or 0)
        r = ra if idx == 0 else rb
        other = node.input[1 - idx]
        if (idx == 0 and space.axis == r - 1) or (idx == 1 and space.axis == r - 2):
            other_axis = rb - 2 if idx == 0 else ra - 1  # contraction: K of A with K of B
            if an.index.is_const(other):
                an.link(space, an.param(other, other_axis, "weight"))
            else:
                couple(node, an, space, other, other_axis)
                o = an.act(other, other_axis)
                if o is not None:
                    an.sink(o)
            an.sink(space)
            return None
        if (idx == 0 and space.axis == r - 2) or (idx == 1 and space.axis == r - 1):
            pass_to(node, an, space, node.output[0], out_rank - (2 if idx == 0 else 1))
            return None
        out_axis = space.axis + out_rank - r  # a batch axis: both operands and the output share it
        couple(node, an, space, other, out_axis - (out_rank - (rb if idx == 0 else ra)))
        pass_to(node, an, space, node.output[0], out_axis)
        return None


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


register_op_handler("Conv", Conv())
register_op_handler("ConvTranspose", ConvTranspose())
register_op_handler("Gemm", Gemm())
register_op_handler("MatMul", MatMul())
register_op_handler("BatchNormalization", Norm())
register_op_handler("InstanceNormalization", Norm())
