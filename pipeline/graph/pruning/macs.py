"""Counting parameters and multiply-accumulates of an ONNX model, on real input shapes.

Each node's handler counts its own MACs (``OpHandler.macs``); ops without a handler, or whose
handler counts none (element-wise, layout), contribute 0. MACs depend on the input shapes: they
are counted on the shapes given (the user's data), else on the model's static shapes with a
dynamic first (batch) dimension set to ``batch``. Any other dynamic dimension (the H and W of a
detector that takes any image size) leaves the count unknown: counting on 1x1 would understate it
by orders of magnitude. Parameters include weights held in ``Constant`` nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import onnx

from trtforge.pipeline.graph.constants import FLOAT_TYPES, parameter_count
from trtforge.pipeline.graph.pruning.graph import GraphIndex, infer_shapes
from trtforge.pipeline.graph.pruning.registry import HandlerRegistry, resolve

Shapes = Mapping[str, Sequence[int]]


def input_shapes(
    model: onnx.ModelProto, batch: int = 1, given: Shapes | None = None
) -> dict[str, list[int]] | str:
    """The shape of every graph input MACs are counted on, or why there is none.

    ``given`` (the shapes of the user's data) wins; otherwise static dimensions, with a dynamic
    first dimension set to ``batch``. A dynamic dimension past the first makes the answer a reason.
    """
    inits = {t.name for t in model.graph.initializer}
    out: dict[str, list[int]] = {}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        if given is not None and vi.name in given:
            out[vi.name] = [int(d) for d in given[vi.name]]
            continue
        dims = vi.type.tensor_type.shape.dim
        shape: list[int] = []
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif k == 0:
                shape.append(batch)
            else:
                name = d.dim_param or "?"
                return (
                    f"input {vi.name!r} has dynamic dimension {k} ({name}); MACs depend on it: "
                    "pass data (--validation-data / --calibration-data) or its size (--shapes "
                    f"{vi.name}:...) to count them"
                )
        out[vi.name] = shape
    return out


def _fix_shapes(model: onnx.ModelProto, shapes: Shapes) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    for vi in m.graph.input:
        if vi.name not in shapes:
            continue
        tensor = vi.type.tensor_type
        tensor.shape.ClearField("dim")
        for n in shapes[vi.name]:
            tensor.shape.dim.add().dim_value = int(n)
    for vi in m.graph.output:
        vi.type.tensor_type.ClearField("shape")
    return infer_shapes(m)


def count(
    model: onnx.ModelProto,
    batch: int = 1,
    registry: HandlerRegistry | None = None,
    shapes: Shapes | None = None,
) -> dict[str, Any]:
    """``{"params", "macs", "macs_by_op", "input_shapes", "macs_unknown"}``: floating-point parameters
    (initializers and Constant nodes), and MACs on ``shapes`` (default: the model's static shapes at
    ``batch``) as the handlers of ``registry`` (default: the default registry) count them. Where the
    shapes are unknown, ``macs`` is None and ``macs_unknown`` says why."""
    params = parameter_count(model, FLOAT_TYPES)
    fixed = input_shapes(model, batch, shapes)
    if isinstance(fixed, str):
        return {"params": params, "macs": None, "macs_by_op": {}, "input_shapes": None, "macs_unknown": fixed}
    handlers = resolve(registry)
    idx = GraphIndex(_fix_shapes(model, fixed))
    by_op: dict[str, int] = {}
    for node in idx.nodes:
        handler = handlers.get(node.op_type)
        n = 0 if handler is None else handler.macs(node, idx)
        if n:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + n
    return {
        "params": params,
        "macs": int(sum(by_op.values())),
        "macs_by_op": by_op,
        "input_shapes": fixed,
        "macs_unknown": None,
    }
