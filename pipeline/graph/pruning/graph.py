"""A read-only index over an ONNX graph: producers, consumers, constants and static shapes.

The pruner works on a *prepared* copy of the user's model: every node gets a unique name
(``<op>_<i>`` where it had none) and shapes are inferred, so that plans can name nodes and
the analysis knows channel counts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.pipeline.errors import InputError, first_line

Dims = tuple[int | None, ...]


def prepare(model: onnx.ModelProto, source: str = "model") -> onnx.ModelProto:
    """A copy with unique node names and inferred shapes (the input model is never touched)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    used = {n.name for n in out.graph.node if n.name}
    for i, node in enumerate(out.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
    names = [n.name for n in out.graph.node]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{source}: node name {dup!r} is used twice; give nodes unique names (re-export)")
    try:
        return infer_shapes(out)
    except Exception as exc:  # onnx raises InferenceError and ValidationError variants
        first = first_line(exc, 200)
        raise InputError(
            f"{source}: ONNX shape inference fails ({first}); fix or re-export the model"
        ) from exc


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference (data propagation on), carried on past the ai.onnx.ml ops it does not know
    that keep their input's shape (``_ML_ELEMENTWISE``)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    if _ml_elementwise_shapes(inferred):
        inferred = onnx.shape_inference.infer_shapes(inferred, strict_mode=False, data_prop=True)
    return inferred


#: ai.onnx.ml ops whose float output has their input's shape; ONNX's shape inference knows none of
#: them, so a skl2onnx pipeline (Scaler -> MatMul ...) would leave every shape after them unknown
_ML_ELEMENTWISE = frozenset({"Scaler", "Normalizer", "Imputer", "Binarizer"})


def _ml_elementwise_shapes(model: onnx.ModelProto) -> int:
    """Add the output shape of each ``_ML_ELEMENTWISE`` node whose input shape is known; in place.
    Returns how many were added (then shape inference is run again past them)."""
    graph = model.graph
    known = {v.name: v for v in [*graph.input, *graph.value_info, *graph.output]}
    added = 0
    for node in graph.node:
        if node.domain != "ai.onnx.ml" or node.op_type not in _ML_ELEMENTWISE or not node.input:
            continue
        src, out = known.get(node.input[0]), node.output[0]
        if src is None or not src.type.tensor_type.HasField("shape"):
            continue
        if out in known and known[out].type.tensor_type.HasField("shape"):
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in src.type.tensor_type.shape.dim
        ]
        info = onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, dims)
        graph.value_info.append(info)
        known[out] = info
        added += 1
    return added


class GraphIndex:
    """Producers, consumers, constants (initializers and Constant nodes) and static shapes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.inits = {t.name: t for t in graph.initializer}
        self.const_nodes = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for i, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, i))
        self.graph_inputs = {v.name for v in graph.input if v.name not in self.inits}
        self.graph_outputs = {v.name for v in graph.output}
        self.shapes: dict[str, Dims] = {}
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = _dims(vi)
            if dims is not None:
                self.shapes[vi.name] = dims
        for name, t in self.inits.items():
            self.shapes[name] = tuple(int(d) for d in t.dims)
        self._const_cache: dict[str, np.ndarray] = {}

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant-node output, else None."""
        if name in self._const_cache:
            return self._const_cache[name]
        value: np.ndarray | None = None
        if name in self.inits:
            value = numpy_helper.to_array(self.inits[name])
        elif name in self.const_nodes:
            value = _constant_value(self.const_nodes[name])
        if value is not None:
            self._const_cache[name] = value
        return value

    def is_const(self, name: str) -> bool:
        return name in self.inits or name in self.const_nodes

    def shape(self, name: str) -> Dims | None:
        if name in self.shapes:
            return self.shapes[name]
        value = self.const(name)
        return None if value is None else tuple(int(d) for d in value.shape)

    def rank(self, name: str) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)

    def users(self, name: str) -> int:
        """How many node inputs read ``name``."""
        return len(self.consumers.get(name, ()))


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None


def _dims(vi: onnx.ValueInfoProto) -> Dims | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)
