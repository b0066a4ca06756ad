"""Remove ``Identity``: ``Identity(x) = x``, in the main graph and in every subgraph.

Maths: none; readers of the output read the input instead. Where the output is a graph output,
the input takes over its place and its name. Rejected (``_base.bypass_reason``): an input that
is a graph input or initializer while the output is a graph output (the model's signature would
change), an input that already is a graph output, and an Identity ending a subgraph (If branch,
Loop or Scan body) that reads a value of an outer scope: ONNX wants every subgraph output
produced by a node of that subgraph, so such an Identity is the way a branch returns an outer
value and must stay.

Why our own rule: onnx-ir's ``IdentityEliminationPass`` ignores scopes. On an If branch ending
in ``Identity(outer value)`` it makes the outer value the branch's output and renames it: onnx-ir
raises "already an output of a different graph" when two branches (or the main graph) return
that value, and otherwise writes a branch whose output no node of it produces, which the checker
rejects. It also lists a value twice among the outputs when ``y = Identity(x)`` and ``x`` are
both graph outputs (renaming ``x``, so an output of the model disappears).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import Rule, bypass, bypass_reason


@dataclass(frozen=True)
class IdentityMatch:
    node: ir.Node


class RemoveIdentity(Rule[IdentityMatch]):
    name: ClassVar[str] = "remove_identity"
    op_type: ClassVar[str] = "Identity"

    def match(self, node: ir.Node) -> IdentityMatch | None:
        if len(node.inputs) != 1 or node.inputs[0] is None or len(node.outputs) != 1:
            return None
        return IdentityMatch(node)

    def check(self, match: IdentityMatch) -> str | None:
        node = match.node
        x = node.inputs[0]
        assert x is not None
        return bypass_reason(node, x, node.outputs[0], "Identity")

    def rewrite(self, match: IdentityMatch) -> None:
        node = match.node
        x, y = node.inputs[0], node.outputs[0]
        assert x is not None
        _merge_type(x, y)
        bypass(node, x, y)


def _merge_type(x: ir.Value, y: ir.Value) -> None:
    """``x`` keeps what ``y`` knew more of (as onnx-ir's pass does): its type when ``x`` has none, and
    per dimension a static size over a symbol, a named symbol over an unnamed one."""
    if x.type is None:
        x.type = y.type
    if x.shape is None:
        x.shape = y.shape
    elif y.shape is not None and len(x.shape) == len(y.shape):
        x.shape = ir.Shape([_merge_dim(a, b) for a, b in zip(x.shape, y.shape)])


def _merge_dim(a: int | ir.SymbolicDim, b: int | ir.SymbolicDim) -> int | ir.SymbolicDim:
    if a == b or not isinstance(a, ir.SymbolicDim):
        return a
    if not isinstance(b, ir.SymbolicDim) or a.value is None:
        return b
    return a
