"""Surgery: remove a set of units from a prepared model, consistently.

Initializer axes are sliced (weights, biases, BN parameters, per-channel constants) and the
static shapes recorded in ``value_info`` follow; every other change is the business of the op
that asked for it while the analysis walked the graph (``an.fixup``): its handler's ``fix``
rewrites Reshape target shapes, Split sizes, Slice bounds, Conv ``group`` counts. A constant
shared with nodes whose value must not change is cloned for the node that changes, never
edited under the others (``cut.Cut``).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.cut import Cut
from trtforge.pipeline.graph.pruning.deps import Analysis, Space
from trtforge.pipeline.graph.pruning.registry import HandlerRegistry, resolve

log = logging.getLogger(__name__)


def apply_removal(
    an: Analysis, remove: np.ndarray, registry: HandlerRegistry | None = None
) -> onnx.ModelProto:
    """Remove the units (component ids) in ``remove`` from ``an.index.model`` in place; return it.

    ``registry`` must be the one the analysis was walked with (default: the default registry):
    its handlers apply the fix-ups they recorded."""
    cut = Cut(an, {s.id: ~np.isin(an.labels_of(s), remove) for s in an.spaces})
    _slice_params(cut)
    _update_shapes(cut)
    handlers = resolve(registry)
    nodes = {n.name: n for n in an.index.nodes}
    for fix in an.fixups:
        node = nodes[fix.node]
        handler = handlers.get(node.op_type)
        if handler is None:
            raise ValueError(
                f"{node.op_type} node {node.name!r} asked for a {fix.kind!r} fix-up but the registry "
                "has no handler for it; apply the removal with the registry the analysis used"
            )
        handler.fix(node, fix, cut)
    log.debug("pruning surgery: %d fix-ups applied", len(an.fixups))
    return an.index.model


def _slice_params(cut: Cut) -> None:
    an = cut.an
    by_tensor: dict[str, list[Space]] = defaultdict(list)
    for s in an.spaces:
        if s.kind == "param" and not cut.keep[s.id].all():
            by_tensor[s.tensor].append(s)
    for name, spaces in by_tensor.items():
        value = an.index.const(name)
        assert value is not None
        for s in spaces:
            value = np.take(value, np.flatnonzero(cut.keep[s.id]), axis=s.axis)
        cut.write_const(name, np.ascontiguousarray(value))
        _retype(an, name, value.shape)


def _retype(an: Analysis, name: str, shape: tuple[int, ...]) -> None:
    """Keep value_info / graph-input entries that describe a sliced initializer in step with it."""
    graph = an.index.model.graph
    for vi in list(graph.value_info) + list(graph.input):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == len(shape):
                for d, n in zip(dims, shape):
                    d.ClearField("dim_param")
                    d.dim_value = int(n)


def _update_shapes(cut: Cut) -> None:
    changed = {
        (s.tensor, s.axis): int(cut.keep[s.id].sum())
        for s in cut.an.spaces
        if s.kind == "act" and not cut.keep[s.id].all()
    }
    if not changed:
        return
    graph = cut.an.index.model.graph
    for vi in list(graph.value_info) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        for axis in range(len(dims)):
            n = changed.get((vi.name, axis))
            if n is not None:
                dims[axis].ClearField("dim_param")
                dims[axis].dim_value = n
