"""Turn ``Add(MatMul(A, B), C)`` into ``Gemm(A, B, C)`` where that is exact.

Maths: ``Gemm(A, B, C) = alpha * A @ B + beta * C`` with ``alpha = beta = 1`` and no
transposes is ``A @ B + C``, provided that

* ``A`` is 2-D ``[M, K]`` (Gemm takes matrices only; MatMul also broadcasts batches),
* ``B`` is a constant 2-D ``[K, N]`` (the weight; it is reused as is, never copied, so
  sharing it with other nodes is harmless),
* ``C`` is a constant whose shape broadcasts *unidirectionally* to ``[M, N]``: rank <= 2,
  each trailing dimension 1 or equal to ``[M, N]``'s (Add broadcasts both ways, Gemm only
  ``C`` to the output), of ``A``'s dtype, and a float type (as Gemm's schema wants).

The MatMul output must feed only this Add. Why our own rule: onnxslim's FusionGemm also
rewrites N-D inputs into Reshape-Gemm-Reshape with the static shape baked in (two nodes
added to save one), so the fuse stage skips it and does only the exact 2-D case here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import onnx_ir as ir

from trtforge.pipeline.graph.rules._base import (
    ONNX_DOMAINS,
    Rule,
    const_array,
    replace_with,
    sole_consumer_reason,
)

_FLOAT_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


@dataclass(frozen=True)
class MatMulAddMatch:
    matmul: ir.Node
    add: ir.Node
    bias: ir.Value


class MatMulAddToGemm(Rule[MatMulAddMatch]):
    name: ClassVar[str] = "matmul_add_to_gemm"
    op_type: ClassVar[str] = "Add"

    def match(self, node: ir.Node) -> MatMulAddMatch | None:
        if len(node.inputs) != 2 or any(v is None for v in node.inputs):
            return None
        for i in (0, 1):
            value, other = node.inputs[i], node.inputs[1 - i]
            assert value is not None and other is not None
            producer = value.producer()
            if producer is not None and producer.op_type == "MatMul" and producer.domain in ONNX_DOMAINS:
                return MatMulAddMatch(producer, node, other)
        return None

    def check(self, match: MatMulAddMatch) -> str | None:
        a, b = match.matmul.inputs
        assert a is not None and b is not None
        reason = sole_consumer_reason(match.matmul.outputs[0], match.add, "MatMul")
        if reason is not None:
            return reason
        if a.shape is None:
            return f"rank of MatMul input {a.name!r} is unknown; Gemm needs a 2-D input"
        if len(a.shape) != 2:
            return f"MatMul input {a.name!r} has rank {len(a.shape)}; Gemm needs a 2-D input"
        if a.dtype not in _FLOAT_TYPES:
            return f"MatMul input {a.name!r} has dtype {a.dtype}; Gemm takes float types"
        weight = const_array(b)
        if weight is None or weight.ndim != 2:
            return f"MatMul weight {b.name!r} is not a constant 2-D matrix"
        bias = const_array(match.bias)
        if bias is None:
            return f"Add operand {match.bias.name!r} is not a constant"
        if match.bias.dtype is not None and match.bias.dtype != a.dtype:
            return f"bias {match.bias.name!r} has dtype {match.bias.dtype}, the input {a.dtype}"
        target = (a.shape[0], weight.shape[1])
        if not _broadcasts_to(bias.shape, target):
            dims = "x".join(str(d) for d in target)
            return f"bias shape {list(bias.shape)} does not broadcast one way to Gemm's output [{dims}]"
        return None

    def rewrite(self, match: MatMulAddMatch) -> None:
        a, b = match.matmul.inputs
        gemm = ir.Node(
            "",
            "Gemm",
            [a, b, match.bias],
            name=match.matmul.name or match.add.name,
            doc_string=match.matmul.doc_string,
        )
        replace_with([match.matmul, match.add], match.add.outputs[0], gemm)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[object, int]) -> bool:
    """Unidirectional (numpy-style, one way) broadcast of ``shape`` to the 2-D ``target``."""
    if len(shape) > 2:
        return False
    for dim, want in zip(reversed(shape), reversed(target)):
        if dim != 1 and not (isinstance(want, int) and dim == want):
            return False
    return True
