"""Fold ``BatchNormalization(Conv(x, W, b))`` into one ``Conv(x, W', b')``.

Maths: a Conv is linear per output channel ``m`` (axis 0 of ``W``, shape ``[M, C/g, k...]``,
grouping included, since every output channel owns its own filter)::

    Conv(x, W, b)[m] = W[m] (*) x + b[m]
    BN(y)[m] = s[m] * y[m] + t[m]                      (see _batchnorm.py)
    => BN(Conv(x, W, b)) = Conv(x, W', b'),  W'[m] = s[m] * W[m],  b' = s * b + t

A missing ``b`` is 0. Rejected: BN in training mode or with non-constant statistics, a Conv
output that is also a graph output or read by another node (it would lose its un-normalised
value), a weight shared with a node outside the match (folding would duplicate it and break
the tie) or a channel-count mismatch.

Why our own rule: onnxslim's FusionConvBN gives no reason when it declines a match and copies
weights that other nodes share; the fold must also work with onnxslim disabled, and
onnxscript's rewriter (which has such folds) is an optional extra (torch) here.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir

from trtforge.pipeline.graph.rules import _batchnorm as bn_
from trtforge.pipeline.graph.rules._base import Rule, add_initializer, const_array, owning_graph, replace_with


class FoldBatchNormIntoConv(Rule[bn_.BatchNormMatch]):
    name: ClassVar[str] = "fold_bn_into_conv"
    op_type: ClassVar[str] = "BatchNormalization"

    def match(self, node: ir.Node) -> bn_.BatchNormMatch | None:
        return bn_.match_after(node, "Conv")

    def check(self, match: bn_.BatchNormMatch) -> str | None:
        reason = bn_.check_fold(match)
        if reason is not None:
            return reason
        weight = np.asarray(const_array(match.producer.inputs[1]))
        if weight.ndim < 3:
            return f"Conv weight has rank {weight.ndim}; expected [M, C/group, kernel...]"
        return bn_.channels_reason(match.bn, match.producer, weight.shape[0])

    def rewrite(self, match: bn_.BatchNormMatch) -> None:
        conv = match.producer
        weight = np.asarray(const_array(conv.inputs[1]))
        bias_in = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = np.zeros(weight.shape[0]) if bias_in is None else np.asarray(const_array(bias_in))
        scale, shift = bn_.affine(match.bn)
        new_w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        new_b = bias.astype(np.float64) * scale + shift
        graph = owning_graph(conv)
        out = match.bn.outputs[0]
        w = add_initializer(graph, f"{out.name}_weight", new_w.astype(weight.dtype))
        b = add_initializer(graph, f"{out.name}_bias", new_b.astype(weight.dtype))
        node = bn_.fused_node(match, w, b, list(conv.attributes.values()))
        replace_with([conv, match.bn], out, node)
