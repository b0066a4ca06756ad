"""Values of the small tensors that parameterise layout ops (pads, target shapes, sizes, axes).

Exporters rarely store these as one constant: torch computes ``Pad``'s pads with
``ConstantOfShape``/``Concat``/``Slice``/``Transpose`` on constants, and a target shape as
``Concat(Gather(Shape(x), 0), Gather(Shape(x), 1), [-1])``. Two views serve the handlers:

* ``folded(an, name)``: the value of a tensor computed from constants only (initializers,
  Constant nodes and any deterministic standard op applied to them, evaluated with ONNX's
  reference implementation), else None. A tensor that reads an activation, even only its shape,
  is not constant: pruning changes activation shapes.
* ``shape_entries(an, name)``: a 1-D integer tensor as a list of entries, each an ``int`` or a
  ``Dim(tensor, axis)``, "axis ``axis`` of ``tensor`` at run time" (what ``Shape`` reads). A
  ``Dim`` of a pruned axis follows the pruned size by itself, with no fix-up.

Computed values are cached per graph index (surgery rewrites stored constants only, which are
always read afresh).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis
from trtforge.pipeline.graph.pruning.graph import GraphIndex, attr

log = logging.getLogger(__name__)

MAX_DEPTH = 64
MAX_ELEMENTS = 1 << 16  # parameter tensors are small; never evaluate a weight-sized subgraph
_NONDETERMINISTIC = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial")


@dataclass(frozen=True)
class Dim:
    """Axis ``axis`` of ``tensor``, read at run time (``Shape``)."""

    tensor: str
    axis: int


Entry = int | Dim

_CACHE: weakref.WeakKeyDictionary[GraphIndex, dict[str, np.ndarray | None]] = weakref.WeakKeyDictionary()


def folded(an: Analysis, name: str) -> np.ndarray | None:
    """The value of ``name`` when only constants determine it; None otherwise."""
    return _folded(an.index, name, 0)


def _folded(index: GraphIndex, name: str, depth: int) -> np.ndarray | None:
    value = index.const(name)  # stored constants first: surgery may have rewritten one since
    if value is not None:
        return value
    cache = _CACHE.setdefault(index, {})
    if name in cache:
        return cache[name]
    node = index.producer.get(name)
    if node is not None and depth < MAX_DEPTH:
        value = _evaluate(index, node, name, depth)
    cache[name] = value
    return value


def _evaluate(index: GraphIndex, node: onnx.NodeProto, name: str, depth: int) -> np.ndarray | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NONDETERMINISTIC:
        return None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    if node.op_type in ("Shape", "Size"):  # of a constant only: an activation's shape changes
        x = _folded(index, node.input[0], depth + 1)
        if x is None:
            return None
    inputs: dict[str, np.ndarray] = {}
    for t in node.input:
        if not t:
            continue
        v = _folded(index, t, depth + 1)
        if v is None or v.size > MAX_ELEMENTS:
            return None
        inputs[t] = v
    try:
        from onnx.reference import ReferenceEvaluator

        opsets = {o.domain: o.version for o in index.model.opset_import}
        graph = onnx.helper.make_graph(
            [node],
            "fold",
            [
                onnx.helper.make_tensor_value_info(t, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for t, v in inputs.items()
            ],
            [
                onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                for o in node.output
                if o
            ],
        )
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()]
        )
        outs: list[Any] = list(ReferenceEvaluator(model).run(None, inputs))
    except Exception:  # what the reference cannot evaluate is not constant
        log.debug("pruning: cannot fold %s node %r", node.op_type, node.name, exc_info=True)
        return None
    names = [o for o in node.output if o]
    for o, v in zip(names, outs):
        _CACHE.setdefault(index, {})[o] = np.asarray(v)
    return np.asarray(outs[names.index(name)]) if name in names else None


def shape_entries(an: Analysis, name: str, depth: int = 0) -> list[Entry] | None:
    """``name`` (a 1-D or scalar integer tensor) entry by entry; None when not worked out.

    Supported producers: constants (folded), ``Shape`` (with ``start``/``end``), ``Concat``,
    ``Gather`` and step-1 ``Slice`` with constant indices, and ``Unsqueeze``/``Squeeze``/
    ``Reshape``/``Identity``/``Cast`` of such a list (which keep its entries)."""
    value = folded(an, name)
    if value is not None:
        if not np.issubdtype(value.dtype, np.integer) or value.ndim > 1:
            return None
        return [int(v) for v in value.reshape(-1)]
    node = an.index.producer.get(name)
    if node is None or depth > MAX_DEPTH:
        return None
    op = node.op_type
    if op == "Shape":
        rank = an.index.rank(node.input[0])
        if rank is None:
            return None
        start, end = int(attr(node, "start", 0)), attr(node, "end", None)
        axes = range(rank)[slice(start, None if end is None else int(end))]
        return [Dim(node.input[0], k) for k in axes]
    if op == "Concat":
        out: list[Entry] = []
        for t in node.input:
            part = shape_entries(an, t, depth + 1)
            if part is None:
                return None
            out.extend(part)
        return out
    if op in ("Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast"):
        return shape_entries(an, node.input[0], depth + 1)
    if op == "Gather":
        data, index = shape_entries(an, node.input[0], depth + 1), folded(an, node.input[1])
        if data is None or index is None or int(attr(node, "axis", 0)) != 0:
            return None
        try:
            return [data[int(i)] for i in index.reshape(-1)]
        except IndexError:
            return None
    if op == "Slice":
        data = shape_entries(an, node.input[0], depth + 1)
        bounds = [folded(an, t) if t else None for t in node.input[1:5]]
        if data is None or any(b is None for b, t in zip(bounds, node.input[1:5]) if t) or len(bounds) < 2:
            return None
        starts, ends = (np.asarray(b).reshape(-1) for b in bounds[:2])
        steps = bounds[3] if len(bounds) > 3 and bounds[3] is not None else np.ones(1, dtype=np.int64)
        if starts.size != 1 or int(np.asarray(steps).reshape(-1)[0]) != 1:
            return None
        return data[slice(*slice(int(starts[0]), int(ends[0])).indices(len(data))[:2])]
    return None


def same_dim(an: Analysis, entry: Entry, tensor: str, axis: int) -> bool:
    """``entry`` provably equals axis ``axis`` of ``tensor`` whatever pruning does to either."""
    if isinstance(entry, Dim):
        return entry.tensor == tensor and entry.axis == axis
    return False
