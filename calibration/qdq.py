"""Writing explicit Q/DQ models for each target.

``tensorrt``: our own writer, because TensorRT wants Q/DQ only on the *inputs* named by
:func:`calibration.placement.plan_tensorrt` (ONNX Runtime's quantizer also wraps weighted-op
outputs, which breaks TensorRT's conv+BN+ReLU+add fusions): signed INT8, zero point 0,
activation scales per tensor, weights stored as INT8 initializers + a per-channel
``DequantizeLinear`` on the output-channel axis.

``onnxruntime-cpu``: ONNX Runtime's ``QDQQuantizer`` with our ranges: uint8 activations,
int8 symmetric per-channel weights, removable Relu/Clip folded, so the CPU kernels fuse the
groups into QLinearConv/QGemm/QLinearMatMul/QLinearAdd.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtforge.calibration.placement import Placement
from trtforge.calibration.ranges import QMAX, symmetric_scale, weight_amax


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def quantize_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 per-channel scale) with symmetric ranges on ``axis``."""
    scale = symmetric_scale(weight_amax(w, axis))
    shape = [1] * w.ndim
    shape[axis % w.ndim] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


def write_tensorrt(
    model: onnx.ModelProto, plan: Placement, amax: Mapping[str, float], skip: Collection[str] = ()
) -> onnx.ModelProto:
    """Q/DQ model for TensorRT; groups (node names) in ``skip`` stay float."""
    m = _copy(model)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    acts = [a for a in plan.activations if a.node not in skip and a.tensor in amax]
    weights = [w for w in plan.weights if w.node not in skip]
    by_node: dict[str, list[tuple[int, str]]] = {}
    new_inits: list[TensorProto] = []
    qdq_nodes: dict[str, list[onnx.NodeProto]] = {}  # consumer node -> nodes to emit before it
    made: dict[str, str] = {}
    for a in acts:
        if a.tensor not in made:
            out = f"{a.tensor}_DequantizeLinear_Output"
            scale = numpy_helper.from_array(symmetric_scale(amax[a.tensor]).reshape(()), f"{a.tensor}_scale")
            zp = numpy_helper.from_array(np.zeros((), np.int8), f"{a.tensor}_zero_point")
            new_inits += [scale, zp]
            q = helper.make_node(
                "QuantizeLinear",
                [a.tensor, scale.name, zp.name],
                [f"{a.tensor}_QuantizeLinear_Output"],
                name=f"{a.tensor}_QuantizeLinear",
            )
            dq = helper.make_node(
                "DequantizeLinear",
                [q.output[0], scale.name, zp.name],
                [out],
                name=f"{a.tensor}_DequantizeLinear",
            )
            qdq_nodes.setdefault(a.node, []).extend([q, dq])
            made[a.tensor] = out
        by_node.setdefault(a.node, []).append((a.index, made[a.tensor]))
    for w in weights:
        key = f"w:{w.initializer}:{w.axis}"
        if key not in made:
            arr = numpy_helper.to_array(inits[w.initializer]).astype(np.float32)
            q_arr, scale_arr = quantize_weight(arr, w.axis)
            qi = numpy_helper.from_array(q_arr, f"{w.initializer}_quantized")
            si = numpy_helper.from_array(scale_arr, f"{w.initializer}_scale")
            zi = numpy_helper.from_array(
                np.zeros_like(scale_arr, dtype=np.int8), f"{w.initializer}_zero_point"
            )
            new_inits += [qi, si, zi]
            dq = helper.make_node(
                "DequantizeLinear",
                [qi.name, si.name, zi.name],
                [f"{w.initializer}_DequantizeLinear_Output"],
                name=f"{w.initializer}_DequantizeLinear",
                axis=w.axis,
            )
            qdq_nodes.setdefault(w.node, []).append(dq)
            made[key] = dq.output[0]
        by_node.setdefault(w.node, []).append((w.index, made[key]))
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        nodes.extend(qdq_nodes.get(node.name, []))
        for idx, name in by_node.get(node.name, []):
            node.input[idx] = name
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    _drop_unused_initializers(m)
    return m


def _drop_unused_initializers(m: onnx.ModelProto) -> None:
    used = {t for n in m.graph.node for t in n.input} | {o.name for o in m.graph.output}
    keep = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)


def write_onnxruntime(
    model: onnx.ModelProto,
    plan: Placement,
    ranges: Mapping[str, tuple[float, float]],
    skip: Collection[str] = (),
    reduce_range: bool = False,
) -> onnx.ModelProto:
    """Q/DQ model for ONNX Runtime CPU via its ``QDQQuantizer``; nodes in ``skip`` stay float."""
    from onnxruntime.quantization import CalibrationMethod, QDQQuantizer, QuantType, TensorsData

    nodes = [n for n in plan.nodes if n not in skip]
    if not nodes:  # an empty list means "everything" to ONNX Runtime
        return _copy(model)
    by_name = {n.name: n for n in model.graph.node}
    op_types = sorted({by_name[n].op_type for n in nodes})
    data = {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()}
    inferred = onnx.shape_inference.infer_shapes(_copy(model))
    quantizer = QDQQuantizer(
        inferred,
        True,
        reduce_range,
        QuantType.QInt8,
        QuantType.QUInt8,
        TensorsData(CalibrationMethod.MinMax, data),
        nodes,
        [],
        op_types,
        {"ActivationSymmetric": False, "WeightSymmetric": True, "QDQKeepRemovableActivations": False},
    )
    quantizer.quantize_model()
    quantizer.model.topological_sort()
    out: onnx.ModelProto = quantizer.model.model
    _drop_value_info(out)
    return out


def _drop_value_info(m: onnx.ModelProto) -> None:
    """Inferred value_info (float types of now-quantized tensors) goes stale; let consumers re-infer."""
    del m.graph.value_info[:]


def activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Per-tensor activation scales of a Q/DQ model (``QuantizeLinear`` input -> scale), for checks."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out: dict[str, float] = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1:
            out[n.input[0]] = float(inits[n.input[1]].reshape(-1)[0])
    return out
