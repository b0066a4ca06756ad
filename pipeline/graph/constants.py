"""Weights held in ``Constant`` nodes: counting them, and lifting them to initializers.

Some exporters (a DB-style text detector, graphs frozen from TensorFlow, models that went
through certain optimisers) write every weight as a ``Constant`` node instead of an
initializer. What looks for weights among initializers only then sees none: a parameter count
of 0, a quantizer that finds no weight to quantize. ``parameter_count`` counts both kinds, in
subgraphs too; ``lift_constant_weights`` returns a copy where every float ``Constant`` became an
initializer of its graph (same name, same value: the model computes the same thing), for a stage
that needs weights as initializers (ONNX Runtime's quantizer, for one, quantizes initializers only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.common.graphs import iter_graphs

__all__ = [
    "FLOAT_TYPES",
    "WEIGHT_TYPES",
    "LiftedWeights",
    "constant_tensor",
    "lift_constant_weights",
    "parameter_count",
]

#: float element types: weights, biases, normalisation statistics of a float model
FLOAT_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
)
#: element types of weights in any model: float ones, and those of quantized weights and biases
#: (int64 and bool are shapes, indices and masks, not parameters)
WEIGHT_TYPES = (
    *FLOAT_TYPES,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
    onnx.TensorProto.INT32,
    onnx.TensorProto.FLOAT8E4M3FN,
    onnx.TensorProto.FLOAT8E5M2,
)


@dataclass(frozen=True)
class LiftedWeights:
    """A copy of the model with float Constant nodes as initializers, and how many were lifted."""

    model: onnx.ModelProto
    lifted: int


def constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a ``Constant`` node holds (``value`` or ``value_float(s)``/``value_int(s)``), else None."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    for a in node.attribute:
        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
            tensor: onnx.TensorProto = a.t
            return tensor
        if a.name == "value_float":
            return numpy_helper.from_array(np.array(a.f, dtype=np.float32))
        if a.name == "value_floats":
            return numpy_helper.from_array(np.array(list(a.floats), dtype=np.float32))
        if a.name == "value_int":
            return numpy_helper.from_array(np.array(a.i, dtype=np.int64))
        if a.name == "value_ints":
            return numpy_helper.from_array(np.array(list(a.ints), dtype=np.int64))
    return None  # sparse_value, value_string(s): not weights


def _elements(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims, dtype=np.int64))


def parameter_count(model: onnx.ModelProto, types: tuple[int, ...] = WEIGHT_TYPES) -> int:
    """Elements of a type in ``types`` held by initializers and ``Constant`` nodes, in every graph."""
    total = 0
    for graph in iter_graphs(model.graph):
        total += sum(_elements(t) for t in graph.initializer if t.data_type in types)
        for node in graph.node:
            t = constant_tensor(node)
            if t is not None and t.data_type in types:
                total += _elements(t)
    return total


def lift_constant_weights(model: onnx.ModelProto) -> LiftedWeights:
    """A copy of ``model`` where every float ``Constant`` node became an initializer of its graph.

    The initializer takes the node's output name, so readers (inside subgraphs too) are untouched.
    Left alone: a Constant whose output is a graph output (an initializer is not produced by a
    node), and every Constant of a model older than IR version 4 (initializers were inputs then).
    The caller's model is never touched.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if out.ir_version < 4:
        return LiftedWeights(out, 0)
    lifted = 0
    # innermost graphs first: rewriting a graph's node list copies its nodes, subgraphs included
    for graph in reversed(list(iter_graphs(out.graph))):
        outputs = {v.name for v in graph.output}
        keep = []
        for node in graph.node:
            t = constant_tensor(node)
            if t is None or t.data_type not in FLOAT_TYPES or node.output[0] in outputs:
                keep.append(node)
                continue
            init = onnx.TensorProto()
            init.CopyFrom(t)
            init.name = node.output[0]
            graph.initializer.append(init)
        if len(keep) < len(graph.node):
            lifted += len(graph.node) - len(keep)
            del graph.node[:]
            graph.node.extend(keep)
            # a value_info of a lifted output would describe an initializer: tools that retype
            # initializers (FP16 conversion) leave it stale and the checker rejects the mismatch
            inits = {t.name for t in graph.initializer}
            stale = [v for v in graph.value_info if v.name in inits]
            for v in stale:
                graph.value_info.remove(v)
    return LiftedWeights(out, lifted)
