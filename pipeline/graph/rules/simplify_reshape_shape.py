"""Replace a computed Reshape target (``Shape -> Gather -> Unsqueeze -> Concat``) by a constant.

Exporters write ``x.view(x.size(0), -1)`` as ``Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)),
[-1]))``. Each piece of the Concat is a constant or a dimension ``d`` of some tensor ``t``
(``Gather``/``Slice`` of ``Shape(t)``, with or without ``Unsqueeze``). Maths, for the piece at
target position ``j``:

    t.shape[d] static            -> that integer
    t is the Reshape's data and d == j, and allowzero == 0
                                 -> 0   (Reshape copies input dimension j: the same value)

so the target becomes a constant and the Shape chain dies. A static dimension equal to 0 is
rejected (Reshape would read a literal 0 as "copy"), as is any dynamic dimension that is not
copied in place. Why our own rule: constant folding (onnx-graphsurgeon, onnxslim) folds the
chain only when every dimension is static, and onnxslim's rewrite from the inferred output
shape only when at most one dimension is dynamic; ``[0, 0, -1]`` (dynamic batch and sequence
copied in place) needs this rule, which also works with onnxslim off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import Rule, add_initializer, const_array, owning_graph
from trtforge.pipeline.graph.rules._shape_dims import Entry, shape_entries


@dataclass(frozen=True)
class ReshapeShapeMatch:
    reshape: ir.Node
    entries: tuple[Entry, ...] | None  # None: a piece is neither constant nor a dimension


class SimplifyReshapeShape(Rule[ReshapeShapeMatch]):
    name: ClassVar[str] = "simplify_reshape_shape"
    op_type: ClassVar[str] = "Reshape"

    def match(self, node: ir.Node) -> ReshapeShapeMatch | None:
        if len(node.inputs) != 2 or node.inputs[1] is None or const_array(node.inputs[1]) is not None:
            return None
        producer = node.inputs[1].producer()
        if producer is None:
            return None
        if producer.op_type == "Concat" and producer.attributes.get_int("axis", 0) in (0, -1):
            pieces = [shape_entries(v) for v in producer.inputs]
        else:
            pieces = [shape_entries(node.inputs[1])]
            if pieces[0] is None:
                return None  # a computed target of another kind: not this pattern
        entries = None if any(p is None for p in pieces) else tuple(e for p in pieces if p for e in p)
        return ReshapeShapeMatch(node, entries)

    def check(self, match: ReshapeShapeMatch) -> str | None:
        if match.entries is None:
            return "a piece of the target shape is neither a constant nor a tensor dimension"
        target = _resolve(match)
        return target if isinstance(target, str) else None

    def rewrite(self, match: ReshapeShapeMatch) -> None:
        target = _resolve(match)
        assert not isinstance(target, str)
        reshape = match.reshape
        hint = f"{reshape.outputs[0].name or reshape.name}_shape"
        value = add_initializer(owning_graph(reshape), hint, np.asarray(target, dtype=np.int64))
        reshape.replace_input_with(1, value)


def _resolve(match: ReshapeShapeMatch) -> list[int] | str:
    """The constant target, or why there is none."""
    data = match.reshape.inputs[0]
    copy_ok = match.reshape.attributes.get_int("allowzero", 0) == 0
    target: list[int] = []
    for j, entry in enumerate(match.entries or ()):
        if isinstance(entry, int):
            target.append(entry)
            continue
        shape = entry.tensor.shape
        dim = shape[entry.dim] if shape is not None and entry.dim < len(shape) else None
        if isinstance(dim, int):
            if dim == 0 and copy_ok:
                return f"dimension {entry.dim} of {entry.tensor.name!r} is 0, which Reshape reads as 'copy'"
            target.append(dim)
        elif entry.tensor is data and entry.dim == j and copy_ok:
            target.append(0)
        else:
            return f"dimension {entry.dim} of {entry.tensor.name!r} is dynamic and not copied in place"
    return target
