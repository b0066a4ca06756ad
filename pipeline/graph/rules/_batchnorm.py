"""What the three BatchNormalization folds share: the pattern, the checks on BN, its affine form.

Inference-mode BatchNormalization over channel axis 1 is a per-channel affine map::

    BN(y)[c] = gamma[c] * (y[c] - mean[c]) / sqrt(var[c] + eps) + beta[c]
             = s[c] * y[c] + t[c],   s = gamma / sqrt(var + eps),   t = beta - mean * s

so when ``y = W (*) x + b`` is linear in a weight whose output channels are known, the BN
folds into it: ``W'[c] = s[c] * W[c]`` (along the output-channel axis) and ``b' = s * b + t``.
The sums are done in float64 and cast back to the weight's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import (
    ONNX_DOMAINS,
    const_array,
    node_label,
    shared_weight_reason,
    sole_consumer_reason,
)

FLOAT_KINDS = ("f",)


@dataclass(frozen=True)
class BatchNormMatch:
    """``bn(producer(x, W[, b]))``: the producer (Conv/ConvTranspose/Gemm) and the BN."""

    producer: ir.Node
    bn: ir.Node


def match_after(bn: ir.Node, producer_op: str) -> BatchNormMatch | None:
    """The pattern: ``bn``'s data input comes from a ``producer_op`` node with a weight input."""
    if not bn.inputs or bn.inputs[0] is None:
        return None
    producer = bn.inputs[0].producer()
    if producer is None or producer.op_type != producer_op or producer.domain not in ONNX_DOMAINS:
        return None
    if len(producer.inputs) < 2 or producer.inputs[1] is None:
        return None
    return BatchNormMatch(producer, bn)


def check_batchnorm(bn: ir.Node) -> str | None:
    """Why ``bn`` is not a foldable inference-mode BatchNormalization, or None."""
    if len(bn.inputs) != 5 or any(v is None for v in bn.inputs):
        return "BatchNormalization does not have its 5 inputs"
    if bn.attributes.get_int("training_mode", 0) != 0:
        return "BatchNormalization runs in training mode (batch statistics)"
    if bn.attributes.get_int("spatial", 1) != 1:
        return "BatchNormalization has spatial=0 (per-element statistics)"
    extra = [v for v in bn.outputs[1:] if v.is_graph_output() or v.consumers()]
    if extra:
        return f"BatchNormalization's statistics output {extra[0].name!r} is in use (training graph)"
    params = [const_array(v) for v in bn.inputs[1:]]
    if any(p is None for p in params):
        return "BatchNormalization scale/bias/mean/var are not all constants"
    if any(v is not None and v.is_graph_input() for v in bn.inputs[1:]):
        return "BatchNormalization scale/bias/mean/var are graph inputs, so they may change at run time"
    sizes = {p.size for p in params if p is not None}
    if any(p is not None and p.ndim != 1 for p in params) or len(sizes) != 1:
        return "BatchNormalization scale/bias/mean/var are not 1-D vectors of one length"
    return None


def check_fold(found: BatchNormMatch) -> str | None:
    """Checks every fold shares: BN itself, the producer's output and weights."""
    reason = check_batchnorm(found.bn)
    if reason is not None:
        return reason
    producer = found.producer
    assert producer.outputs and found.bn.inputs[0] is producer.outputs[0]
    reason = sole_consumer_reason(producer.outputs[0], found.bn, producer.op_type)
    if reason is not None:
        return reason
    weights = list(producer.inputs[1:3])
    arrays = [const_array(v) for v in weights]
    if arrays[0] is None:
        return f"{producer.op_type} weight {weights[0].name if weights[0] else ''!r} is not a constant"
    if len(arrays) > 1 and weights[1] is not None and arrays[1] is None:
        return f"{producer.op_type} bias {weights[1].name!r} is not a constant"
    if arrays[0].dtype.kind not in FLOAT_KINDS:
        return f"{producer.op_type} weight has dtype {arrays[0].dtype}, not a float type"
    return shared_weight_reason(weights, [producer])


def affine(bn: ir.Node) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` in float64 with ``BN(y) = s * y + t`` per channel (call after ``check_batchnorm``)."""
    gamma, beta, mean, var = (np.asarray(const_array(v), dtype=np.float64) for v in bn.inputs[1:])
    eps = bn.attributes.get_float("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def channels_reason(bn: ir.Node, producer: ir.Node, channels: int) -> str | None:
    """Why BN's channel count does not fit the producer's output channels, or None."""
    n = int(np.asarray(const_array(bn.inputs[1])).size)
    if n != channels:
        return f"BatchNormalization has {n} channels but {node_label(producer)} produces {channels}"
    return None


def fused_node(found: BatchNormMatch, weight: ir.Value, bias: ir.Value, attributes: list[ir.Attr]) -> ir.Node:
    """The producer again, with new weight/bias inputs, in place of producer + BN."""
    producer = found.producer
    return ir.Node(
        producer.domain,
        producer.op_type,
        [producer.inputs[0], weight, bias],
        attributes=attributes,
        name=producer.name,
        doc_string=producer.doc_string,
    )
