"""Fold ``BatchNormalization(Gemm(A, B, C))`` (BN over a 2-D ``[M, N]`` tensor) into one Gemm.

Maths: ``Gemm(A, B, C) = alpha * A' @ B' + beta * C`` with ``B' = B`` (``[K, N]``) or ``B.T``
when ``transB=1`` (``B`` is ``[N, K]``); BN normalises the ``N`` columns (axis 1)::

    BN(Y)[:, n] = s[n] * Y[:, n] + t[n]                (see _batchnorm.py)
    => BN(Gemm(A, B, C)) = alpha * A' @ (B' * s) + (beta * C * s + t)
    => Gemm(A, B'', C'') with beta = 1,  B'' = B * s[None, :] (transB=0) or B * s[:, None] (transB=1),
       C'' = beta * C * s + t   (C broadcast against [N]; a missing C is 0)

``C''`` keeps broadcasting to ``[M, N]`` whenever ``C`` did. Rejections as for Conv (see
fold_bn_into_conv.py). onnxslim has no Gemm+BN fold at all.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir

from trtforge.pipeline.graph.rules import _batchnorm as bn_
from trtforge.pipeline.graph.rules._base import Rule, add_initializer, const_array, owning_graph, replace_with


class FoldBatchNormIntoGemm(Rule[bn_.BatchNormMatch]):
    name: ClassVar[str] = "fold_bn_into_gemm"
    op_type: ClassVar[str] = "BatchNormalization"

    def match(self, node: ir.Node) -> bn_.BatchNormMatch | None:
        return bn_.match_after(node, "Gemm")

    def check(self, match: bn_.BatchNormMatch) -> str | None:
        reason = bn_.check_fold(match)
        if reason is not None:
            return reason
        weight = np.asarray(const_array(match.producer.inputs[1]))
        if weight.ndim != 2:
            return f"Gemm weight has rank {weight.ndim}; expected 2"
        columns = weight.shape[0] if match.producer.attributes.get_int("transB", 0) else weight.shape[1]
        return bn_.channels_reason(match.bn, match.producer, columns)

    def rewrite(self, match: bn_.BatchNormMatch) -> None:
        gemm = match.producer
        weight = np.asarray(const_array(gemm.inputs[1]))
        trans_b = gemm.attributes.get_int("transB", 0)
        beta = gemm.attributes.get_float("beta", 1.0)
        c_in = gemm.inputs[2] if len(gemm.inputs) > 2 else None
        c = np.zeros(1) if c_in is None else np.asarray(const_array(c_in))
        scale, shift = bn_.affine(match.bn)
        new_w = weight.astype(np.float64) * (scale[:, None] if trans_b else scale[None, :])
        new_c = beta * c.astype(np.float64) * scale + shift
        graph = owning_graph(gemm)
        out = match.bn.outputs[0]
        w = add_initializer(graph, f"{out.name}_weight", new_w.astype(weight.dtype))
        b = add_initializer(graph, f"{out.name}_bias", new_c.astype(weight.dtype))
        attributes = [a for name, a in gemm.attributes.items() if name != "beta"]
        node = bn_.fused_node(match, w, b, [*attributes, ir.AttrFloat32("beta", 1.0)])
        replace_with([gemm, match.bn], out, node)
