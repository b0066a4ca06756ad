"""Fold ``BatchNormalization(ConvTranspose(x, W, b))`` into one ``ConvTranspose(x, W', b')``.

Maths: ConvTranspose's weight is ``[C, M/g, k...]`` (input channels first). With ``g``
groups, input channel ``c`` of group ``q = c // (C/g)`` feeds output channels
``q*(M/g) .. (q+1)*(M/g) - 1``, and ``W[c, j]`` feeds output channel ``m = q*(M/g) + j``::

    y[m] = sum_{c in group q} W[c, j] (*)^T x[c] + b[m]
    BN(y)[m] = s[m] * y[m] + t[m]                      (see _batchnorm.py)
    => W'[c, j] = s[q*(M/g) + j] * W[c, j],   b' = s * b + t

i.e. ``W`` viewed as ``[g, C/g, M/g, k...]`` is scaled by ``s`` viewed as ``[g, 1, M/g, 1...]``.
A missing ``b`` is 0. Rejections as for Conv (see fold_bn_into_conv.py), plus a channel
count not divisible by ``group``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir

from trtforge.pipeline.graph.rules import _batchnorm as bn_
from trtforge.pipeline.graph.rules._base import Rule, add_initializer, const_array, owning_graph, replace_with


class FoldBatchNormIntoConvTranspose(Rule[bn_.BatchNormMatch]):
    name: ClassVar[str] = "fold_bn_into_conv_transpose"
    op_type: ClassVar[str] = "BatchNormalization"

    def match(self, node: ir.Node) -> bn_.BatchNormMatch | None:
        return bn_.match_after(node, "ConvTranspose")

    def check(self, match: bn_.BatchNormMatch) -> str | None:
        reason = bn_.check_fold(match)
        if reason is not None:
            return reason
        weight = np.asarray(const_array(match.producer.inputs[1]))
        group = match.producer.attributes.get_int("group", 1)
        if weight.ndim < 3:
            return f"ConvTranspose weight has rank {weight.ndim}; expected [C, M/group, kernel...]"
        if group < 1 or weight.shape[0] % group:
            return f"ConvTranspose has {weight.shape[0]} input channels, not divisible by group={group}"
        return bn_.channels_reason(match.bn, match.producer, weight.shape[1] * group)

    def rewrite(self, match: bn_.BatchNormMatch) -> None:
        deconv = match.producer
        weight = np.asarray(const_array(deconv.inputs[1]))
        group = deconv.attributes.get_int("group", 1)
        c_in, m_per_group, *kernel = weight.shape
        bias_in = deconv.inputs[2] if len(deconv.inputs) > 2 else None
        bias = np.zeros(m_per_group * group) if bias_in is None else np.asarray(const_array(bias_in))
        scale, shift = bn_.affine(match.bn)
        grouped = weight.astype(np.float64).reshape(group, c_in // group, m_per_group, *kernel)
        factor = scale.reshape(group, 1, m_per_group, *([1] * len(kernel)))
        new_w = (grouped * factor).reshape(weight.shape)
        new_b = bias.astype(np.float64) * scale + shift
        graph = owning_graph(deconv)
        out = match.bn.outputs[0]
        w = add_initializer(graph, f"{out.name}_weight", new_w.astype(weight.dtype))
        b = add_initializer(graph, f"{out.name}_bias", new_b.astype(weight.dtype))
        node = bn_.fused_node(match, w, b, list(deconv.attributes.values()))
        replace_with([deconv, match.bn], out, node)
