"""Writing explicit Q/DQ models for each target.

``tensorrt``: our own writer, because TensorRT wants Q/DQ only on the *inputs* named by
:func:`calibration.placement.plan_tensorrt` (ONNX Runtime's quantizer also wraps weighted-op
outputs, which breaks TensorRT's conv+BN+ReLU+add fusions): signed INT8, zero point 0,
activation scales per tensor, weights stored as INT8 initializers + a per-channel
``DequantizeLinear`` on the output-channel axis.

``onnxruntime-cpu``: ONNX Runtime's ``QDQQuantizer`` with our ranges: uint8 activations,
int8 symmetric per-channel weights, removable Relu/Clip folded, so the CPU kernels fuse the
groups into QLinearConv/QGemm/QLinearMatMul/QLinearAdd. Biases it cannot quantize per channel
are reshaped or kept float first (:func:`normalise_gemm_bias`); a node it still fails on is
left float with the reason recorded (:func:`write_onnxruntime`), never a traceback.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Collection, Mapping, MutableMapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtforge.calibration.errors import CalibrationError, first_line
from trtforge.calibration.placement import Placement
from trtforge.calibration.ranges import QMAX, symmetric_scale, weight_amax

log = logging.getLogger(__name__)


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


#: at most this many quantizer runs go into finding the nodes ONNX Runtime's quantizer fails on
ISOLATION_RUNS = 48


def write_onnxruntime(
    model: onnx.ModelProto,
    plan: Placement,
    ranges: Mapping[str, tuple[float, float]],
    skip: Collection[str] = (),
    reduce_range: bool = False,
    excluded: MutableMapping[str, str] | None = None,
    source: str = "model",
) -> onnx.ModelProto:
    """Q/DQ model for ONNX Runtime CPU via its ``QDQQuantizer``; nodes in ``skip`` stay float.

    A failure inside the library (it raises plain ``ValueError``/``IndexError``s on graphs it did
    not foresee) never escapes as such: the nodes it fails on are found by bisection (quantizing
    halves of the node list until single failing nodes remain), left float, and recorded in
    ``excluded`` (node -> reason; nodes already there are skipped up front). When leaving nodes
    float does not avoid the failure, ``CalibrationError`` (exit 2) names ``source`` and the fix.
    """
    known = excluded if excluded is not None else {}
    nodes = [n for n in plan.nodes if n not in skip and n not in known]
    if not nodes:  # an empty list means "everything" to ONNX Runtime
        return _copy(model)
    first = _try_quantize(model, nodes, ranges, reduce_range)
    if isinstance(first, onnx.ModelProto):
        return first
    found = _isolate(model, nodes, ranges, reduce_range, first)
    rest = [n for n in nodes if n not in found]
    out = _try_quantize(model, rest, ranges, reduce_range) if rest else _copy(model)
    if not found or not isinstance(out, onnx.ModelProto):
        exc = out if isinstance(out, BaseException) else first
        raise CalibrationError(
            f"{source}: ONNX Runtime's quantizer fails on this model ({library_failure(exc)}) and "
            "leaving single nodes in float does not avoid it; quantize for --target tensorrt or "
            "use --precision fp16 instead"
        ) from exc
    by_name = {n.name: n for n in model.graph.node}
    for name, why in found.items():
        op = by_name[name].op_type if name in by_name else "node"
        known[name] = f"{op} node {name!r} left in float: ONNX Runtime's quantizer fails on it ({why})"
        log.warning("%s", known[name])
    return out


def library_failure(exc: BaseException) -> str:
    """``Type: message in function`` for an exception raised inside a library (its innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" in {frames[-1].name}" if frames else ""
    return f"{type(exc).__name__}: {first_line(exc, 160)}{where}"


def _try_quantize(
    model: onnx.ModelProto,
    nodes: list[str],
    ranges: Mapping[str, tuple[float, float]],
    reduce_range: bool,
) -> onnx.ModelProto | Exception:
    """The quantized model, or the exception ONNX Runtime's quantizer raised on ``nodes``."""
    try:
        return _ort_quantize(model, nodes, ranges, reduce_range)
    except Exception as exc:  # any failure inside the library is handled per node
        log.debug("ONNX Runtime's quantizer failed on %d nodes", len(nodes), exc_info=True)
        return exc


def _isolate(
    model: onnx.ModelProto,
    nodes: list[str],
    ranges: Mapping[str, tuple[float, float]],
    reduce_range: bool,
    failure: Exception,
) -> dict[str, str]:
    """Nodes that make the quantizer fail on their own (node -> failure), by bisection of ``nodes``
    (which fail together with ``failure``); at most ``ISOLATION_RUNS`` quantizer runs."""
    found: dict[str, str] = {}
    runs = 0

    def visit(part: list[str], exc: Exception) -> None:
        nonlocal runs
        if len(part) == 1:
            found[part[0]] = library_failure(exc)
            return
        mid = len(part) // 2
        for half in (part[:mid], part[mid:]):
            if runs >= ISOLATION_RUNS:
                return
            runs += 1
            got = _try_quantize(model, half, ranges, reduce_range)
            if isinstance(got, Exception):
                visit(half, got)

    visit(nodes, failure)
    return found


def _ort_quantize(
    model: onnx.ModelProto, nodes: list[str], ranges: Mapping[str, tuple[float, float]], reduce_range: bool
) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QDQQuantizer, QuantType, TensorsData

    by_name = {n.name: n for n in model.graph.node}
    op_types = sorted({by_name[n].op_type for n in nodes})
    data = {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()}
    inferred = onnx.shape_inference.infer_shapes(_copy(model))
    unshare_biases(inferred)
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


def unshare_biases(model: onnx.ModelProto) -> int:
    """Give every Conv/ConvTranspose/Gemm that shares its bias initializer with another node a copy
    of its own, named so no tensor of the graph has the name; in place. Returns the copies made.

    Why not leave it to the library: ONNX Runtime's QDQ quantizer duplicates a shared bias itself
    (each node's bias scale depends on its own input and weight scales) but names the copy
    ``<bias><k>`` checking only initializer names, so on tf2onnx graphs (a bias ``conv;conv`` read
    by 18 Convs, one of which outputs ``conv;conv2``) the copy takes a node output's name and
    ONNX Runtime cannot load the result."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    taken = set(inits) | {v.name for v in graph.input} | {o for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    made = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3:
            continue
        bias = node.input[2]
        if bias not in inits:
            continue
        readers[bias] = readers.get(bias, 0) + 1
        if readers[bias] == 1:
            continue
        k = readers[bias]
        name = f"{bias}__bias{k}"
        while name in taken:
            k += 1
            name = f"{bias}__bias{k}"
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[bias])
        copy.name = name
        graph.initializer.append(copy)
        taken.add(name)
        node.input[2] = name
        made += 1
    return made


def normalise_gemm_bias(model: onnx.ModelProto) -> list[str]:
    """Give every Gemm bias the 1-D per-channel shape ONNX Runtime's quantizer needs; in place.

    ``Y = α·A'B' + β·C`` with ``C`` broadcast to ``[M, N]``. ONNX Runtime's quantizer indexes the
    bias per output channel (``C[n]``) and fails (``_adjust_weight_scale_for_int32_bias``: an
    ambiguous truth value or an index out of bounds) on any other shape, which MatMul + Add
    fusion produces from the ``[1, N]`` biases of tf2onnx/JAX exports. Where ``C`` does not depend
    on the row (shape ``[]``, ``[1]``, ``[N]``, ``[1, 1]`` or ``[1, N]``) it is stored as
    ``c[n] = C[0, n]`` broadcast to ``[N]``: the same ``Y`` by broadcasting. A row-dependent ``C``
    (``[M, N]``, ``M > 1``) cannot be a per-channel int32 bias: the Gemm loses it and a float
    ``Add(Y₀, β·C)`` after it adds it back (``Y₀ = α·A'B'``), so the Gemm is still quantized and
    the bias stays float. Returns notes.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    names = {n.name for n in graph.node}
    notes: list[str] = []
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        if node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = inits[node.input[1]].dims
        if len(w) != 2:
            continue
        n = int(w[0] if attrs.get("transB", 0) else w[1])
        c = numpy_helper.to_array(inits[node.input[2]])
        if c.shape == (n,):
            continue
        row_free = c.ndim <= 2 and (c.ndim < 2 or c.shape[0] == 1) and (c.ndim == 0 or c.shape[-1] in (1, n))
        if row_free:
            value = np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (n,)))
            node.input[2] = _add_init(graph, inits, f"{node.input[2]}_per_channel", value)
            notes.append(
                f"Gemm node {node.name!r}: bias of shape {list(c.shape)} stored as [{n}] (ONNX "
                "Runtime's quantizer needs a 1-D per-channel bias; same values by broadcasting)"
            )
            continue
        beta = float(attrs.get("beta", 1.0))
        value = (beta * c.astype(np.float64)).astype(c.dtype)
        bias = _add_init(graph, inits, f"{node.input[2]}_float_bias", value)
        out = node.output[0]
        node.output[0] = f"{out}_without_bias"
        del node.input[2]
        for k in range(len(node.attribute) - 1, -1, -1):
            if node.attribute[k].name == "beta":
                del node.attribute[k]
        add_name = f"{node.name}_bias"
        while add_name in names:
            add_name += "_"
        names.add(add_name)
        nodes.append(helper.make_node("Add", [node.output[0], bias], [out], name=add_name))
        notes.append(
            f"Gemm node {node.name!r}: bias of shape {list(c.shape)} depends on the row, so it cannot "
            f"be a per-channel int32 bias; it is added in float after the quantized Gemm ({add_name!r})"
        )
    del graph.node[:]
    graph.node.extend(nodes)
    return notes


def _add_init(graph: onnx.GraphProto, inits: dict[str, TensorProto], name: str, value: np.ndarray) -> str:
    while name in inits:
        name += "_"
    graph.initializer.append(numpy_helper.from_array(value, name))
    inits[name] = graph.initializer[-1]
    return name


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
