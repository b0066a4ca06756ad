"""What every rewrite rule is, how one is applied, and the small graph helpers rules share.

A rule works on an onnx-ir graph. It names the op type its pattern is anchored on; for
every node of that type, ``match`` returns the matched nodes and values (or None when the
node is not the root of the pattern), ``check`` returns why the match must not be rewritten
(None when it may), and ``rewrite`` replaces the match. Rules hold no state: everything a
rewrite needs travels in the (frozen) match object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import numpy as np
import onnx_ir as ir

M = TypeVar("M")

#: ONNX's default domain, as onnx-ir may spell it
ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Rejection:
    """A match the rule saw and left alone, with the reason."""

    rule: str
    node: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "node": self.node, "reason": self.reason}


@dataclass
class RuleStats:
    """How often a rule rewrote, and what it rejected."""

    applied: int = 0
    rejections: list[Rejection] = field(default_factory=list)


class Rule(ABC, Generic[M]):
    """One graph rewrite: pattern (``op_type`` + ``match``), ``check``, ``rewrite``."""

    name: ClassVar[str]
    op_type: ClassVar[str]

    @abstractmethod
    def match(self, node: ir.Node) -> M | None:
        """The pattern: the matched nodes/values rooted at ``node``, or None when it does not fit."""

    @abstractmethod
    def check(self, match: M) -> str | None:
        """Why ``match`` must not be rewritten, or None when the rewrite is valid."""

    @abstractmethod
    def rewrite(self, match: M) -> None:
        """Replace the match in its graph."""


@dataclass(frozen=True)
class NodeMatch:
    """A match of one node (rules whose pattern is a single node)."""

    node: ir.Node


class PassThroughRule(Rule[NodeMatch]):
    """A node whose first output equals its first input (``y = node(x) = x``): readers of ``y`` read
    ``x`` and the node goes (``bypass``), where ``bypass_reason`` and ``pass_through_reason`` allow.
    ``x`` keeps what ``y``'s type and shape knew more of."""

    def match(self, node: ir.Node) -> NodeMatch | None:
        if not node.inputs or node.inputs[0] is None or not node.outputs:
            return None
        return NodeMatch(node)

    def pass_through_reason(self, node: ir.Node) -> str | None:
        """Why this node does not pass its input through unchanged (a rule's own conditions)."""
        return None

    def check(self, match: NodeMatch) -> str | None:
        node = match.node
        x = node.inputs[0]
        assert x is not None
        return self.pass_through_reason(node) or bypass_reason(node, x, node.outputs[0], self.op_type)

    def rewrite(self, match: NodeMatch) -> None:
        node = match.node
        x, y = node.inputs[0], node.outputs[0]
        assert x is not None
        merge_type(x, y)
        bypass(node, x, y)


def merge_type(x: ir.Value, y: ir.Value) -> None:
    """``x`` keeps what ``y`` knew more of (as onnx-ir's identity pass does): its type when ``x`` has
    none, and per dimension a static size over a symbol, a named symbol over an unnamed one."""
    if x.type is None:
        x.type = y.type
    if x.shape is None:
        x.shape = y.shape
    elif y.shape is not None and len(x.shape) == len(y.shape):
        x.shape = ir.Shape([_merge_dim(a, b) for a, b in zip(x.shape, y.shape, strict=True)])


def _merge_dim(a: int | ir.SymbolicDim, b: int | ir.SymbolicDim) -> int | ir.SymbolicDim:
    if a == b or not isinstance(a, ir.SymbolicDim):
        return a
    if not isinstance(b, ir.SymbolicDim) or a.value is None:
        return b
    return a


def apply_rule(rule: Rule[M], model: ir.Model) -> RuleStats:
    """Apply ``rule`` once to every matching node of the main graph and its subgraphs."""
    stats = RuleStats()
    for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
        if node.graph is None or node.op_type != rule.op_type or node.domain not in ONNX_DOMAINS:
            continue  # removed by an earlier rewrite, or not the anchor op
        found = rule.match(node)
        if found is None:
            continue
        reason = rule.check(found)
        if reason is not None:
            stats.rejections.append(Rejection(rule.name, node_label(node), reason))
            continue
        rule.rewrite(found)
        stats.applied += 1
    return stats


def node_label(node: ir.Node) -> str:
    return node.name or f"{node.op_type}({', '.join(v.name or '?' for v in node.outputs)})"


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant content (initializer or Constant node output), or None."""
    if value is None:
        return None
    try:
        tensor = ir.convenience.get_const_tensor(value)
    except ValueError:  # a malformed Constant node
        return None
    return None if tensor is None else np.asarray(tensor.numpy())


def sole_consumer_reason(value: ir.Value, consumer: ir.Node, what: str) -> str | None:
    """Why ``value`` cannot vanish into ``consumer``: it is a graph output, has other consumers, or
    ``consumer`` is in a subgraph reading it from an outer scope (one node cannot replace two that
    live in different graphs)."""
    producer = value.producer()
    if producer is not None and producer.graph is not consumer.graph:
        return f"{what} output {value.name!r} is read by {node_label(consumer)} inside a subgraph"
    if value.is_graph_output():
        return f"{what} output {value.name!r} is also a graph output"
    others = [n for n in value.consumers() if n is not consumer]
    if others:
        return f"{what} output {value.name!r} has other consumers ({node_label(others[0])})"
    return None


def bypass_reason(node: ir.Node, x: ir.Value, y: ir.Value, what: str) -> str | None:
    """Why ``node``'s output ``y`` cannot be replaced by its input ``x`` (``y = node(x) = x``), or None.

    Readers of ``y`` may always read ``x`` instead: ``x`` is visible wherever ``y`` is (``y``'s
    graph and the subgraphs nested in it). A graph output is different: ``x`` takes over its place
    and its name, which needs ``x`` to be produced by a node of that same graph. ONNX wants a
    subgraph's outputs produced inside it, and a value can be the output of one graph only, so an
    ``x`` read from an outer scope (an If branch ending in ``Identity(outer)``) must stay behind
    the node; so must a graph input or initializer (the model's signature would change) and a value
    that already is a graph output (it would be listed twice under one name).
    """
    if not y.is_graph_output():
        return None
    if x.is_graph_input() or x.is_initializer():
        return f"{what} connects {x.name!r} straight to graph output {y.name!r}"
    producer = x.producer()
    if producer is None or producer.graph is not node.graph:
        return f"{what} output {y.name!r} ends a subgraph and reads {x.name!r} from an outer scope"
    if x.is_graph_output():
        return f"{what} input {x.name!r} and output {y.name!r} are both graph outputs"
    return None


def bypass(node: ir.Node, x: ir.Value, y: ir.Value) -> None:
    """Replace ``y`` by ``x`` everywhere and remove ``node`` (call after ``bypass_reason`` is None)."""
    was_output, name = y.is_graph_output(), y.name
    ir.convenience.replace_all_uses_with(y, x, replace_graph_outputs=True)
    owning_graph(node).remove(node, safe=True)
    if was_output:
        x.name = name  # the graph output keeps its name: the model's signature does not change


def shared_weight_reason(values: Iterable[ir.Value | None], inside: Iterable[ir.Node]) -> str | None:
    """Why folding would have to duplicate a weight: it is used outside the match or is a graph input."""
    members = set(inside)
    for value in values:
        if value is None:
            continue
        if value.is_graph_input():
            return f"weight {value.name!r} is a graph input, so it may change at run time"
        outside = [n for n in value.consumers() if n not in members]
        if outside:
            return f"weight {value.name!r} is shared with a node outside the match ({node_label(outside[0])})"
    return None


def add_initializer(graph: ir.Graph, hint: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as a new initializer of ``graph`` under a fresh name derived from ``hint``."""
    taken = _value_names(graph)
    name, i = hint, 0
    while name in taken:
        i += 1
        name = f"{hint}_{i}"
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    value.shape = ir.Shape(array.shape)
    value.dtype = ir.DataType.from_numpy(array.dtype)
    graph.register_initializer(value)
    return value


def _value_names(graph: ir.Graph) -> set[str]:
    """Names of the values ``graph`` and its subgraphs define or read (outer-scope ones included)."""
    graphs = [graph]
    names: set[str] = set()
    for node in ir.traversal.RecursiveGraphIterator(graph):
        names.update(v.name for v in (*node.inputs, *node.outputs) if v is not None and v.name)
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                graphs.append(attr.as_graph())
            elif attr.type == ir.AttributeType.GRAPHS:
                graphs.extend(attr.as_graphs())
    for g in graphs:
        names.update(v.name for v in g.inputs if v.name)
        names.update(g.initializers)
    return names


def replace_with(old_nodes: list[ir.Node], old_output: ir.Value, new_node: ir.Node) -> None:
    """Put ``new_node`` in place of ``old_nodes``; its first output takes over ``old_output``.

    The new output inherits the old one's name, type and shape, and its place among the
    graph outputs, so consumers and the model's signature see no difference.
    """
    graph = old_nodes[-1].graph
    assert isinstance(graph, ir.Graph), "rules rewrite nodes of graphs, not functions"
    ir.convenience.replace_nodes_and_values(
        graph, old_nodes[-1], old_nodes, [new_node], [old_output], [new_node.outputs[0]]
    )


def owning_graph(node: ir.Node) -> ir.Graph:
    graph = node.graph
    assert isinstance(graph, ir.Graph), "rules rewrite nodes of graphs, not functions"
    return graph
