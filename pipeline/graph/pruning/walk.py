"""The coupling walk: build a solved ``Analysis`` of a prepared model by asking each node's handler.

Every node's handler may declare prunable outputs (``source``); then each reached space is
handed to the handler of every node that reads it (``propagate``) until nothing new is
reached. A space that reaches a graph output, or a node whose op has no handler in the
registry, is pinned with the reason. See ``deps.py`` for the model of channels.
"""

from __future__ import annotations

import logging

import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis
from trtforge.pipeline.graph.pruning.graph import GraphIndex
from trtforge.pipeline.graph.pruning.registry import HandlerRegistry, resolve

log = logging.getLogger(__name__)


def analyze(model: onnx.ModelProto, registry: HandlerRegistry | None = None) -> Analysis:
    """Walk a *prepared* model (``graph.prepare``) from every prunable producer; solve it.

    ``registry``: the handlers to ask (default: the default registry)."""
    handlers = resolve(registry)
    an = Analysis(GraphIndex(model))
    idx = an.index
    for node in idx.nodes:
        handler = handlers.get(node.op_type)
        if handler is not None:
            handler.source(node, an)
    while an.queue:
        space = an.queue.popleft()
        if space.tensor in idx.graph_outputs:
            an.pin(space, f"tensor {space.tensor!r} is a graph output")
        for node, i in idx.consumers.get(space.tensor, ()):
            handler = handlers.get(node.op_type)
            if handler is None:
                an.pin(space, f"{node.op_type} node {node.name!r} is not understood by the pruner")
                continue
            handler.propagate(node, i, space, an)
    an.solve()
    log.debug("pruning analysis: %d spaces, %d atoms, %d groups", len(an.spaces), an.n_atoms, len(an.groups))
    return an
