"""Counting parameters and multiply-accumulates of an ONNX model (batch 1, static shapes).

Each node's handler counts its own MACs (``OpHandler.macs``); ops without a handler, or whose
handler counts none (element-wise, layout), contribute 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.graph import GraphIndex
from trtforge.pipeline.graph.pruning.registry import HandlerRegistry, resolve


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


def count(model: onnx.ModelProto, batch: int = 1, registry: HandlerRegistry | None = None) -> dict[str, Any]:
    """``{"params", "macs", "macs_by_op"}``: floating-point parameters, and MACs for one batch as
    the handlers of ``registry`` (default: the default registry) count them."""
    handlers = resolve(registry)
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
        handler = handlers.get(node.op_type)
        n = 0 if handler is None else handler.macs(node, idx)
        if n:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + n
    return {"params": params, "macs": int(sum(by_op.values())), "macs_by_op": by_op}
