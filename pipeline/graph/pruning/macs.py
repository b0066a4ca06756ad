"""Counting parameters and multiply-accumulates of an ONNX model (batch 1, static shapes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from pipeline.graph.pruning.graph import GraphIndex, attr


def _fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = batch if k == 0 else 1
    for vi in m.graph.output:
        vi.type.tensor_type.ClearField("shape")
    return onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)


def count(model: onnx.ModelProto, batch: int = 1) -> dict[str, Any]:
    """``{"params", "macs", "macs_by_op"}``; MACs of Conv/ConvTranspose/Gemm/MatMul for one batch."""
    idx = GraphIndex(_fix_batch(model, batch))
    params = int(
        sum(
            int(np.prod(t.dims, dtype=np.int64))
            for t in model.graph.initializer
            if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
        )
    )
    by_op: dict[str, int] = {}
    for node in idx.nodes:
        n = _node_macs(idx, node)
        if n:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + n
    return {"params": params, "macs": int(sum(by_op.values())), "macs_by_op": by_op}


def _prod(shape: Any) -> int:
    if shape is None or any(d is None for d in shape):
        return 0
    return int(np.prod(shape, dtype=np.int64))


def _node_macs(idx: GraphIndex, node: onnx.NodeProto) -> int:
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        w = idx.shape(node.input[1])
        if not w:
            return 0
        if op == "Conv":
            return _prod(idx.shape(node.output[0])) * _prod(w[1:])
        group = int(attr(node, "group", 1))
        return _prod(idx.shape(node.input[0])) * _prod(w[1:]) // max(group, 1) * group
    if op == "Gemm":
        a = idx.shape(node.input[0])
        out = idx.shape(node.output[0])
        if not a or not out:
            return 0
        k = a[0] if attr(node, "transA", 0) else a[1]
        return _prod(out) * int(k or 0)
    if op == "MatMul":
        a = idx.shape(node.input[0])
        out = idx.shape(node.output[0])
        if not a or not out:
            return 0
        return _prod(out) * int(a[-1] or 0)
    return 0
