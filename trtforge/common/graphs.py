"""Walking a ModelProto with its subgraphs (If branches, Loop and Scan bodies), for counts and analyses.

A node holding a graph attribute runs that graph as part of itself, reading values of the
enclosing graph by name; every count of nodes or weights has to look inside. Light on purpose
(onnx only), so ``inspect`` and ``--help`` paths need no onnx-ir.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import onnx

__all__ = [
    "CONTROL_FLOW_OPS",
    "body_op_counts",
    "describe_body_ops",
    "free_names",
    "has_subgraphs",
    "iter_graphs",
    "node_count",
    "op_counts",
    "subgraphs_of",
]

#: ops that hold graphs and run them as part of themselves
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})


def subgraphs_of(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held by ``node``'s attributes (If: two branches, Loop/Scan: the body)."""
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every graph nested in it, outer ones first."""
    yield graph
    for node in graph.node:
        for sub in subgraphs_of(node):
            yield from iter_graphs(sub)


def free_names(graph: onnx.GraphProto) -> set[str]:
    """Names ``graph`` (a subgraph) reads from enclosing scopes, its nested subgraphs' reads included."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {o for n in graph.node for o in n.output}
    reads = {i for n in graph.node for i in n.input if i} | {o.name for o in graph.output}
    for node in graph.node:
        for sub in subgraphs_of(node):
            reads |= free_names(sub)
    return reads - defined


def has_subgraphs(model: onnx.ModelProto) -> bool:
    return any(subgraphs_of(n) for n in model.graph.node)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes per op type, subgraphs included, sorted by op type."""
    counts = Counter(n.op_type for g in iter_graphs(model.graph) for n in g.node)
    return dict(sorted(counts.items()))


def node_count(model: onnx.ModelProto) -> int:
    """Nodes of the main graph and of every subgraph."""
    return sum(len(g.node) for g in iter_graphs(model.graph))


def body_op_counts(model: onnx.ModelProto, ops: frozenset[str] | set[str]) -> dict[str, int]:
    """Nodes of the op types ``ops`` that sit inside If/Loop/Scan bodies (not in the main graph)."""
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        for sub in subgraphs_of(node):
            counts.update(n.op_type for g in iter_graphs(sub) for n in g.node if n.op_type in ops)
    return dict(sorted(counts.items()))


def describe_body_ops(model: onnx.ModelProto, ops: frozenset[str] | set[str]) -> str:
    """``"; its 4 Conv, 1 LSTM sit inside If/Loop/Scan bodies"`` where ``ops`` nodes hide there, else ``""``:
    the clause a stage adds when it refuses because it found nothing to work on in the main graph."""
    counts = body_op_counts(model, ops)
    if not counts:
        return ""
    listed = ", ".join(f"{n} {op}" for op, n in counts.items())
    return f"; its {listed} sit inside If/Loop/Scan bodies, which this stage does not enter"
