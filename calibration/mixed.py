"""Tensors whose values mix very different ranges, where one per-tensor INT8 scale would collapse
the small part (e.g. a detection head concatenating box coordinates with class scores).

Checked where a per-tensor scale would actually be applied: the inputs of every ``Concat``
(their ranges, compared with each other) and, near the outputs, per-channel ranges of tensors
the plan quantizes. Such tensors are kept float: the concat inputs keep their own scales, and
the concat and its consumers stay float.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from trtforge.calibration.placement import SHAPE_OPS, consumers
from trtforge.calibration.stats import TensorStats


def _ratio(values: np.ndarray) -> float:
    pos = values[values > 0]
    return float(pos.max() / pos.min()) if pos.size >= 2 else 1.0


def find_mixed(
    model: onnx.ModelProto, stats: Mapping[str, TensorStats], quantized: set[str], ratio: float
) -> dict[str, str]:
    """``tensor -> reason`` for tensors that must not get a single per-tensor scale."""
    mixed: dict[str, str] = {}
    inits = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        ins = [t for t in node.input if t in stats and t not in inits]
        amaxes = np.array([stats[t].hist.amax for t in ins])
        r = _ratio(amaxes)
        if len(ins) >= 2 and r > ratio:
            mixed[node.output[0]] = f"Concat {node.name!r} joins ranges {r:.0f}x apart"
    for name in quantized:
        st = stats.get(name)
        if st is None or name in mixed:
            continue
        for axis, amax in st.channel_amax.items():
            r = _ratio(amax)
            if r > ratio:
                mixed[name] = f"channels on axis {axis} span ranges {r:.0f}x apart"
                break
    return _propagate(model, mixed)


def _propagate(model: onnx.ModelProto, mixed: dict[str, str]) -> dict[str, str]:
    """Follow mixed tensors through shape-only ops (their ranges stay mixed)."""
    cons = consumers(model)
    todo = list(mixed)
    while todo:
        t = todo.pop()
        for node in cons.get(t, []):
            if node.op_type in SHAPE_OPS and node.output and node.output[0] not in mixed:
                mixed[node.output[0]] = mixed[t] + f" (through {node.op_type})"
                todo.append(node.output[0])
    return mixed


def nodes_touching(model: onnx.ModelProto, tensors: Mapping[str, str]) -> set[str]:
    """Names of nodes that produce or consume any of ``tensors``."""
    return {n.name for n in model.graph.node if any(t in tensors for t in list(n.input) + list(n.output))}
