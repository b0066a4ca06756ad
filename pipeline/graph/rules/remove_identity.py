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

from typing import ClassVar

import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import PassThroughRule


class RemoveIdentity(PassThroughRule):
    name: ClassVar[str] = "remove_identity"
    op_type: ClassVar[str] = "Identity"

    def pass_through_reason(self, node: ir.Node) -> str | None:
        if len(node.inputs) != 1 or len(node.outputs) != 1:
            return "Identity without exactly one input and one output"
        return None
