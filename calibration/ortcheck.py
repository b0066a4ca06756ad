"""What ONNX Runtime actually runs: op counts of the optimized graph it writes
(``SessionOptions.optimized_model_filepath``), to confirm Q/DQ groups were fused."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import onnx

FUSED_INT8 = (
    "QLinearConv",
    "QGemm",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearConcat",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
    "QLinearMul",
    "QLinearSigmoid",
    "MatMulIntegerToFloat",
    "ConvInteger",
    "MatMulInteger",
    "QLinearLeakyRelu",
    "QLinearSoftmax",
)


def optimized_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count in the graph ONNX Runtime CPU runs at full optimization."""
    from trtforge.common.ort import SessionConfig, create_session

    with tempfile.TemporaryDirectory(prefix="trtforge-opt-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        create_session(model, SessionConfig(optimized_model_path=path), source="the quantized model")
        optimized = onnx.load(str(path))
    return dict(Counter(n.op_type for n in optimized.graph.node))


def fusion_summary(counts: dict[str, int]) -> dict[str, int]:
    """Fused INT8 kernels and leftover Q/DQ nodes in an optimized op count."""
    fused = sum(v for k, v in counts.items() if k in FUSED_INT8)
    loose = counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0)
    return {"fused_int8_ops": fused, "unfused_qdq": loose}
