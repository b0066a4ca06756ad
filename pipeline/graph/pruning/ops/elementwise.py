"""Element-wise ops: ``y[..., c, ...] = f(x1[..., c, ...], x2[..., c, ...], ...)``.

Coupling: the tracked axis passes through (inputs right-aligned against the output, as numpy
broadcasting does) and every other data input shares its positions unless it broadcasts
(size 1) there. Surgery: nothing beyond slicing the constants coupled in. Lossless mode: a
channel that holds the constant ``c`` holds ``f(c)`` after a unary op with a known ``f``, and
``a ∘ b`` after Add/Sub/Mul/Div with a channel-wise constant other operand (``0 · x = 0`` and
``0 / x = 0`` whatever ``x``). No MACs are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.deps import Analysis, Space
from trtforge.pipeline.graph.pruning.graph import attr
from trtforge.pipeline.graph.pruning.ops.base import (
    HandlerTable,
    OpHandler,
    couple,
    operand_values,
    pass_to,
    unknown,
)

UnaryFn = Callable[[onnx.NodeProto, np.ndarray], np.ndarray]
BinaryFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Elementwise(OpHandler):
    """Broadcasting n-ary ops; ``data_inputs`` None means every input is data (Add, Where, ...)."""

    data_inputs: tuple[int, ...] | None = None

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if self.data_inputs is not None and idx not in self.data_inputs:
            return super().propagate(node, idx, space, an)
        out_rank = an.index.rank(node.output[0])
        if out_rank is None:
            return an.pin(space, f"{node.op_type} node {node.name!r}: output rank unknown")
        in_rank = an.index.rank(space.tensor) or 0
        out_axis = space.axis + out_rank - in_rank
        for j, other in enumerate(node.input):
            if j == idx or not other or (self.data_inputs is not None and j not in self.data_inputs):
                continue
            o_rank = an.index.rank(other)
            couple(node, an, space, other, out_axis - (out_rank - (o_rank or 0)))
        pass_to(node, an, space, node.output[0], out_axis)
        return None


@dataclass(frozen=True)
class Unary(Elementwise):
    """``y = f(x)``; other inputs (Dropout's ratio) are not data. ``fn`` maps a constant channel
    value to the output's (None: not worked out, so nothing is provably constant)."""

    data_inputs: tuple[int, ...] | None = (0,)
    fn: UnaryFn | None = None

    def map_values(self, node: onnx.NodeProto, out: Space, x: np.ndarray, an: Analysis) -> np.ndarray | None:
        return None if self.fn is None else self.fn(node, x)


@dataclass(frozen=True)
class Clip(Unary):
    """``y = min(max(x, lo), hi)`` with ``lo``/``hi`` read from constant inputs 1 and 2."""

    def map_values(self, node: onnx.NodeProto, out: Space, x: np.ndarray, an: Analysis) -> np.ndarray | None:
        lo, hi = (_bound(node, an, i) for i in (1, 2))
        low, high = -np.inf if lo is None else float(lo), np.inf if hi is None else float(hi)
        return np.asarray(np.clip(x, low, high))


def _bound(node: onnx.NodeProto, an: Analysis, i: int) -> np.ndarray | None:
    return an.index.const(node.input[i]) if len(node.input) > i and node.input[i] else None


@dataclass(frozen=True)
class Arithmetic(Elementwise):
    """``y = a ∘ b``: ``fn`` applies ``∘`` to the per-channel values of both operands, each taken
    from the carried input or, for a constant operand, from its value along the channel axis."""

    fn: BinaryFn | None = None

    def constants(
        self, node: onnx.NodeProto, out: Space, inputs: Mapping[str, np.ndarray], an: Analysis
    ) -> np.ndarray:
        if self.fn is None or not inputs:
            return unknown(out.size)
        a, b = (operand_values(an, name, out, inputs) for name in node.input[:2])
        with np.errstate(all="ignore"):
            return self.fn(a, b)


def _same(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return x


def _relu(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(x, 0.0))


def _leaky_relu(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(x > 0, x, float(attr(node, "alpha", 0.01)) * x))


def _sigmoid(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _tanh(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(np.tanh(x))


def _neg(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(-x)


def _abs(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(x))


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a + b)


def _sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a - b)


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.where((a == 0) | (b == 0), 0.0, a * b))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(a == 0, 0.0, a / b))


UNARY_VALUES: dict[str, UnaryFn] = {
    "Relu": _relu,
    "LeakyRelu": _leaky_relu,
    "Sigmoid": _sigmoid,
    "Tanh": _tanh,
    "Neg": _neg,
    "Abs": _abs,
    "Identity": _same,
    "Dropout": _same,
}
BINARY_VALUES: dict[str, BinaryFn] = {"Add": _add, "Sub": _sub, "Mul": _mul, "Div": _div}
UNARY = (
    *UNARY_VALUES,
    *("Gelu", "Erf", "Elu", "Selu", "Celu", "Softplus", "Softsign", "HardSigmoid", "HardSwish", "Mish"),
    *("Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Cast"),
    *("ThresholdedRelu", "Silu"),
)
NARY = (
    *BINARY_VALUES,
    *("Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where", "Equal", "Less", "Greater", "And", "Or"),
)

HANDLERS: HandlerTable = (
    *((op, Unary(fn=UNARY_VALUES.get(op))) for op in UNARY),
    ("Clip", Clip()),
    *((op, Arithmetic(fn=BINARY_VALUES.get(op))) for op in NARY),
)
