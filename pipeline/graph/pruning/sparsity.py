"""2:4 semi-structured sparsity for TensorRT's sparse tensor cores (``BuilderFlag.SPARSE_WEIGHTS``).

In every run of four consecutive weights along the input-channel (reduction) axis at most two
are non-zero: Conv ``W[K, C, kh, kw]`` along C for each output channel and kernel position,
Gemm/MatMul along K. The two largest magnitudes of each run are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.pipeline.graph.pruning.graph import GraphIndex, attr


@dataclass(frozen=True)
class SparseLayer:
    node: str
    op: str
    weight: str
    shape: tuple[int, ...]
    axis: int  # reduction axis of the weight
    eligible: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "op": self.op,
            "weight": self.weight,
            "shape": list(self.shape),
            "eligible": self.eligible,
            "reason": self.reason,
        }


def _reduction_axis(node: onnx.NodeProto, w: np.ndarray) -> int | None:
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm":
        return 1 if attr(node, "transB", 0) else 0
    if node.op_type == "MatMul" and w.ndim >= 2:
        return w.ndim - 2
    return None


def layers(model: onnx.ModelProto) -> list[SparseLayer]:
    """Every Conv/Gemm/MatMul with a constant weight and whether it can take the 2:4 pattern."""
    idx = GraphIndex(model)
    out = []
    for node in idx.nodes:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        w = idx.const(node.input[1])
        if w is None or idx.const(node.input[0]) is not None:
            continue
        axis = _reduction_axis(node, w)
        if axis is None:
            continue
        reason = ""
        if w.shape[axis] % 4:
            reason = f"input channels ({w.shape[axis]}) not a multiple of 4"
        elif node.op_type == "Conv" and int(attr(node, "group", 1)) != 1:
            reason = "grouped/depthwise Conv"
        elif idx.users(node.input[1]) > 1:
            reason = "weight shared with other nodes"
        elif not np.issubdtype(w.dtype, np.floating):
            reason = f"weight dtype {w.dtype} is not floating point"
        out.append(
            SparseLayer(node.name, node.op_type, node.input[1], tuple(w.shape), axis, not reason, reason)
        )
    return out


def mask_2_4(w: np.ndarray, axis: int) -> np.ndarray:
    """Boolean mask keeping the 2 largest |w| in every run of 4 along ``axis``."""
    moved = np.moveaxis(np.abs(w), axis, -1)
    runs = moved.reshape(*moved.shape[:-1], moved.shape[-1] // 4, 4)
    order = np.argsort(runs, axis=-1, kind="stable")
    keep = np.zeros(runs.shape, dtype=bool)
    np.put_along_axis(keep, order[..., 2:], True, axis=-1)
    return np.moveaxis(keep.reshape(moved.shape), -1, axis)


def is_2_4(w: np.ndarray, axis: int) -> bool:
    """True when every run of four along ``axis`` has at most two non-zeros."""
    if w.shape[axis] % 4:
        return False
    moved = np.moveaxis(w, axis, -1)
    runs = moved.reshape(*moved.shape[:-1], moved.shape[-1] // 4, 4)
    return bool(((runs != 0).sum(axis=-1) <= 2).all())


def apply_2_4(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[SparseLayer]]:
    """A copy with every eligible weight pruned to 2:4; also the masks (for recovery) and the layer list."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    found = layers(out)
    inits = {t.name: t for t in out.graph.initializer}
    masks: dict[str, np.ndarray] = {}
    for layer in found:
        if not layer.eligible or layer.weight not in inits:
            continue
        w = numpy_helper.to_array(inits[layer.weight])
        mask = mask_2_4(w, layer.axis)
        inits[layer.weight].CopyFrom(numpy_helper.from_array((w * mask).astype(w.dtype), layer.weight))
        masks[layer.weight] = mask
    return out, masks, found
