"""FP16 conversion with FP32 islands (how half precision reaches TensorRT 11: in the ONNX graph).

Uses ONNX Runtime's ``float16.convert_float_to_float16`` (it inserts the Casts around blocked
nodes) with our block list: overflow-prone ops (normalisations, Softmax, reductions, exp/log/pow)
and every node whose output exceeded the FP16 range on calibration data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtforge.calibration.errors import CalibrationError
from trtforge.calibration.placement import check_not_quantized, name_nodes
from trtforge.calibration.stats import collect

FP16_MAX = 65504.0
FP32_OPS = (
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceProd",
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "CumSum",
    "Range",
)


@dataclass(frozen=True)
class Fp16Options:
    keep_io_types: bool = True  # inputs/outputs stay float32 so callers need no change
    fp32_ops: tuple[str, ...] = FP32_OPS
    fp32_nodes: tuple[str, ...] = ()
    overflow_margin: float = 0.5  # block nodes whose |x| exceeds margin * 65504 on the data


@dataclass
class Fp16Result:
    model: onnx.ModelProto
    blocked_ops: list[str]
    overflow_nodes: dict[str, float] = field(default_factory=dict)  # node -> max |x| seen

    def summary(self) -> dict[str, Any]:
        return {
            "fp32_ops": self.blocked_ops,
            "overflow_nodes": self.overflow_nodes,
            "fp16_nodes": sum(1 for n in self.model.graph.node if n.op_type != "Cast"),
        }


def overflow_nodes(
    model: onnx.ModelProto, batches: Iterable[Mapping[str, np.ndarray]], limit: float
) -> dict[str, float]:
    """Nodes with a float output whose |x| exceeds ``limit`` on ``batches``."""
    stats = collect(model, batches, providers=("CPUExecutionProvider",), bins=64)
    producer = {o: n.name for n in model.graph.node for o in n.output}
    out: dict[str, float] = {}
    for name, st in stats.tensors.items():
        if name in producer and st.hist.amax > limit:
            out[producer[name]] = max(out.get(producer[name], 0.0), st.hist.amax)
    return out


def convert_fp16(
    model: onnx.ModelProto,
    options: Fp16Options | None = None,
    batches: Iterable[Mapping[str, np.ndarray]] | None = None,
    source: str = "model",
) -> Fp16Result:
    """Half-precision copy of ``model`` with FP32 islands; ``batches`` (optional) find overflow."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    opts = options or Fp16Options()
    check_not_quantized(model, source)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise CalibrationError(f"{source}: the model already holds FP16 weights; convert the FP32 model")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    name_nodes(m)
    over = overflow_nodes(m, batches, opts.overflow_margin * FP16_MAX) if batches is not None else {}
    present = {n.op_type for n in m.graph.node}
    blocked = sorted(present & set(opts.fp32_ops))
    node_block: Sequence[str] = sorted(set(opts.fp32_nodes) | set(over))
    try:
        out = convert_float_to_float16(
            m,
            keep_io_types=opts.keep_io_types,
            op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(opts.fp32_ops),
            node_block_list=list(node_block),
            disable_shape_infer=False,
        )
    except Exception as exc:  # the converter raises assorted errors on odd graphs
        raise CalibrationError(
            f"{source}: FP16 conversion failed ({exc}); check the model with onnx.checker"
        ) from exc
    from onnxruntime.quantization.onnx_model import ONNXModel

    sorted_model = ONNXModel(out)  # the converter appends its Casts out of order
    sorted_model.topological_sort()
    return Fp16Result(sorted_model.model, blocked, over)
