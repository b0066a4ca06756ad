"""Remove inference-mode ``Dropout``: ``Dropout(x) = x``.

Maths: with ``training_mode`` false (the default; opset >= 12 takes it as an optional input,
opsets 7-11 have no training mode) Dropout is the identity on its first output, whatever the
``ratio``. Rejected: a ``training_mode`` input that is not a constant false, an explicit
``is_test=0`` (opset < 7 training mode), a mask output someone reads, and a Dropout whose output
is a graph output that its input cannot take over (``_base.bypass_reason``: a graph input or
initializer, another graph output, or a value read from an outer scope by a subgraph).

Why our own rule: onnx-ir's IdentityEliminationPass handles Identity only, and onnxslim erases
every Dropout without looking at ``training_mode`` or the mask.
"""

from __future__ import annotations

from typing import ClassVar

import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import PassThroughRule, const_array


class RemoveDropout(PassThroughRule):
    name: ClassVar[str] = "remove_dropout"
    op_type: ClassVar[str] = "Dropout"

    def pass_through_reason(self, node: ir.Node) -> str | None:
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            mode = const_array(node.inputs[2])
            if mode is None or mode.size != 1 or bool(mode.reshape(-1)[0]):
                return "Dropout's training_mode input is not a constant false"
        if "is_test" in node.attributes and node.attributes.get_int("is_test", 0) == 0:
            return "Dropout has is_test=0 (training mode)"
        mask = [v for v in node.outputs[1:] if v.is_graph_output() or v.consumers()]
        if mask:
            return f"Dropout's mask output {mask[0].name!r} is in use"
        return None
