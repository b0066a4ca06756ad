"""Where Q/DQ goes, per target, and what stays float.

``tensorrt`` (TensorRT's explicit-quantization recommendations): the activation and weight inputs
of Conv/ConvTranspose/Gemm/MatMul-with-constant-weight, and the residual input of an Add whose
other input comes straight from a conv, so the add fuses into it. Nothing on Softmax, LayerNorm,
GELU or weighted-op outputs. Written by :mod:`calibration.qdq` (ONNX Runtime's quantizer puts
Q/DQ on weighted-op outputs too, which breaks TensorRT's fusions).

``onnxruntime-cpu``: nodes whose QDQ groups ONNX Runtime's CPU kernels fuse (QLinearConv, QGemm,
QLinearMatMul, QLinearAdd/Concat/pooling, Relu/Clip folded away). Weighted ops are always
quantized; elementwise/pooling/shape ops only when every activation input already comes from the
quantized domain, so no extra Q/DQ pair is created just to convert back. Written by ONNX
Runtime's ``QDQQuantizer``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.calibration.errors import CalibrationError

TARGETS = ("onnxruntime-cpu", "tensorrt")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QUANTIZED_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "QGemm",
    "QLinearConcat",
    "MatMulIntegerToFloat",
}
CONTROL_FLOW = ("If", "Loop", "Scan")
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
#: layout ops exporters put between a stored weight and the op reading it (tf2onnx HWIO -> OIHW
#: Transpose, JAX Reshape, fp16 storage Cast); folded into initializers by ``fold_weight_layouts``
WEIGHT_LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast")
ORT_FOLLOW = (
    "Add",
    "Concat",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Relu",
    "Clip",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Resize",
    "Sigmoid",
    "LeakyRelu",
    "Split",
)
SHAPE_OPS = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Relu", "Clip")
#: ops we know and deliberately keep in float (or that carry no float math)
FLOAT_OK = {
    "BatchNormalization",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "Gelu",
    "Erf",
    "Tanh",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Mul",
    "Sub",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL2",
    "Cast",
    "Shape",
    "Gather",
    "GatherND",
    "Slice",
    "Expand",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "Not",
    "And",
    "Or",
    "Pad",
    "Constant",
    "ConstantOfShape",
    "Range",
    "Tile",
    "ArgMax",
    "TopK",
    "Dropout",
    "Min",
    "Max",
    "Sum",
    "Softplus",
    "Mish",
    "Elu",
    "Selu",
    "PRelu",
    "Einsum",
    "InstanceNormalization",
    "GroupNormalization",
    "Size",
    "NonZero",
    "Identity",
    "CumSum",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Trilu",
    "ScatterND",
    "SkipLayerNormalization",
    *WEIGHTED,
    *ORT_FOLLOW,
    *CONTROL_FLOW,
}


@dataclass(frozen=True)
class ActQuant:
    """Quantize activation ``tensor`` where node ``node`` reads it as input ``index``."""

    tensor: str
    node: str
    index: int


@dataclass(frozen=True)
class WeightQuant:
    """Quantize initializer ``initializer`` (input ``index`` of ``node``) per channel on ``axis``."""

    node: str
    index: int
    initializer: str
    axis: int


@dataclass
class Placement:
    target: str
    nodes: list[str]  # the groups: one per quantized node
    activations: list[ActQuant] = field(default_factory=list)  # tensorrt only
    weights: list[WeightQuant] = field(default_factory=list)  # tensorrt only
    float_ops: dict[str, list[str]] = field(default_factory=dict)  # unknown op type -> nodes
    control_flow: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tensors(self, model: onnx.ModelProto) -> set[str]:
        """Activation tensors this placement needs a range for."""
        if self.target == "tensorrt":
            return {a.tensor for a in self.activations}
        inits = {i.name for i in model.graph.initializer}
        chosen = set(self.nodes)
        out: set[str] = set()
        for node in model.graph.node:
            if node.name in chosen:
                out.update(t for t in list(node.input) + list(node.output) if t and t not in inits)
        return out


def check_not_quantized(model: onnx.ModelProto, source: str) -> None:
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if found:
        raise CalibrationError(
            f"{source}: the model is already quantized (it has {', '.join(found)}); "
            "quantize the float model instead, never a quantized one twice"
        )


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (in place): groups, exclusions and reports key on names."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def weight_axis(node: onnx.NodeProto, index: int, rank: int) -> int:
    """Output-channel axis of a weight: Conv 0, ConvTranspose 1, Gemm 0/1 by transB, MatMul last."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        trans = attrs.get("transB", 0) if index == 1 else attrs.get("transA", 0)
        return 0 if trans else 1
    return rank - 1 if index == 1 else max(rank - 2, 0)


def _weight_index(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> int | None:
    if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
        return 1 if len(node.input) > 1 and node.input[1] in inits else None
    consts = [i for i, t in enumerate(node.input[:2]) if t in inits]
    return consts[0] if len(consts) == 1 else None


def _weight_inputs(node: onnx.NodeProto) -> tuple[int, ...]:
    """Inputs of a weighted op that hold its weight (and bias) when they are constant."""
    if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
        return (1, 2)
    return (0, 1) if node.op_type == "MatMul" else ()


def fold_weight_layouts(model: onnx.ModelProto) -> list[str]:
    """Fold layout ops applied to an initializer (``WEIGHT_LAYOUT_OPS``) into the initializer they
    compute, where a weighted op reads the result as its weight or bias; in place. Returns notes.

    Both placements (and ONNX Runtime's quantizer) expect weights to *be* initializers: a Conv
    reading ``Transpose(W_hwio, perm=[3, 2, 0, 1])`` would otherwise stay unquantized (tensorrt)
    or quantize its weight as an activation. The folded value is the op's own definition applied
    to the constant (``np.transpose``, ``np.reshape`` with ONNX's 0/-1 rules, ``astype``), and the
    new initializer takes the name of the tensor it replaces, so every reader sees the same value;
    chain nodes nobody reads any more are dropped. Anything else (a computed shape, a non-float
    result) is left as it is.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output if o}
    outputs = {o.name for o in graph.output}
    values: dict[str, np.ndarray | None] = {}

    def value(name: str, depth: int = 0) -> np.ndarray | None:
        if name in values:
            return values[name]
        out: np.ndarray | None = None
        if name in inits:
            out = numpy_helper.to_array(inits[name])
        elif depth < 32 and name in producer:
            node = producer[name]
            if node.op_type in WEIGHT_LAYOUT_OPS and node.domain in ("", "ai.onnx") and node.input:
                x = value(node.input[0], depth + 1)
                if x is not None:
                    args = [value(t, depth + 1) if t else None for t in node.input[1:]]
                    out = _layout_value(node, x, args)
        values[name] = out
        return out

    notes: list[str] = []
    folded: set[str] = set()
    for node in list(graph.node):
        for i in _weight_inputs(node):
            if i >= len(node.input) or not node.input[i] or node.input[i] in inits:
                continue
            name = node.input[i]
            v = value(name)
            if v is None or not np.issubdtype(v.dtype, np.floating):
                continue
            made_by = producer[name]
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(v), name))
            inits[name] = graph.initializer[-1]
            folded.add(name)
            notes.append(
                f"{'bias' if i == 2 else 'weight'} {name!r} of {node.op_type} node {node.name!r} is "
                f"{made_by.op_type} of a constant: folded into an initializer"
            )
    if folded:
        chain: set[str] = set()
        todo = [producer[t] for t in folded]
        while todo:
            n = todo.pop()
            if n.name not in chain:
                chain.add(n.name)
                todo.extend(producer[t] for t in n.input if t in producer)
        _drop_dead(graph, {producer[t].name for t in folded}, chain, outputs)
    return notes


def _drop_dead(graph: onnx.GraphProto, replaced: set[str], chain: set[str], outputs: set[str]) -> None:
    """Remove the nodes named in ``replaced``, then the ``chain`` nodes nothing reads any more
    (node names are unique: ``name_nodes`` ran first)."""
    keep = [n for n in graph.node if n.name not in replaced]
    while True:
        read = {t for n in keep for t in n.input} | outputs
        for n in keep:  # subgraphs read outer names too
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    read.update(t for sn in a.g.node for t in sn.input)
                read.update(t for g in a.graphs for sn in g.node for t in sn.input)
        dead = {n.name for n in keep if n.name in chain and not any(o in read for o in n.output if o)}
        if not dead:
            break
        keep = [n for n in keep if n.name not in dead]
    del graph.node[:]
    graph.node.extend(keep)


def _layout_value(node: onnx.NodeProto, x: np.ndarray, args: list[np.ndarray | None]) -> np.ndarray | None:
    """``node`` (a ``WEIGHT_LAYOUT_OPS`` op) applied to the constant ``x``; None when not computable."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op == "Identity":
        return x
    if op == "Transpose":
        perm = attrs.get("perm")
        return np.transpose(x, None if perm is None else [int(p) for p in perm])
    if op == "Cast":
        to = int(attrs.get("to", 0))
        return x.astype(onnx.helper.tensor_dtype_to_np_dtype(to)) if to in FLOAT_TYPES[:2] else None
    if op == "Flatten":
        axis = int(attrs.get("axis", 1)) % (x.ndim + 1) if x.ndim else 0
        return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
    if op == "Reshape":
        if not args or args[0] is None:
            return None
        shape = [int(d) for d in args[0].reshape(-1)]
        if not int(attrs.get("allowzero", 0)):
            shape = [x.shape[k] if d == 0 and k < x.ndim else d for k, d in enumerate(shape)]
        try:
            return x.reshape(shape)
        except ValueError:
            return None
    axes_value = args[0] if args and args[0] is not None else attrs.get("axes")
    axes = None if axes_value is None else [int(a) for a in np.asarray(axes_value).reshape(-1)]
    if op == "Squeeze":
        if axes is None:
            return np.squeeze(x)
        norm = tuple(a % max(x.ndim, 1) for a in axes)
        return np.squeeze(x, axis=norm) if all(x.shape[a] == 1 for a in norm) else None
    if op == "Unsqueeze" and axes is not None:
        rank = x.ndim + len(axes)
        out = x
        for a in sorted(a % rank for a in axes):
            out = np.expand_dims(out, a)
        return out
    return None


def _survey(model: onnx.ModelProto, placement: Placement) -> None:
    for node in model.graph.node:
        if node.op_type in CONTROL_FLOW:
            placement.control_flow.append(node.name)
        elif node.domain not in ("", "ai.onnx") or node.op_type not in FLOAT_OK:
            placement.float_ops.setdefault(node.op_type, []).append(node.name)
    if placement.control_flow:
        placement.notes.append(
            f"control flow left in float (subgraphs not quantized): {', '.join(placement.control_flow)}"
        )
    if placement.float_ops:
        listed = ", ".join(f"{k} ({len(v)})" for k, v in sorted(placement.float_ops.items()))
        placement.notes.append(f"ops the quantizer does not know, left in float: {listed}")


def plan_tensorrt(model: onnx.ModelProto) -> Placement:
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    plan = Placement("tensorrt", [])
    _survey(model, plan)
    for node in model.graph.node:
        if node.op_type in WEIGHTED:
            widx = _weight_index(node, inits)
            if widx is None:
                continue  # activation x activation MatMul (attention): kept in higher precision
            w = inits[node.input[widx]]
            plan.nodes.append(node.name)
            plan.weights.append(WeightQuant(node.name, widx, w.name, weight_axis(node, widx, len(w.dims))))
            for i, t in enumerate(node.input[:2]):
                if i != widx and t:
                    plan.activations.append(ActQuant(t, node.name, i))
        elif node.op_type == "Add" and len(node.input) == 2 and not any(t in inits for t in node.input):
            from_conv = [_from_conv(t, producer) for t in node.input]
            if any(from_conv):
                idx = from_conv.index(False) if not all(from_conv) else 1
                plan.nodes.append(node.name)
                plan.activations.append(ActQuant(node.input[idx], node.name, idx))
    return plan


def _from_conv(tensor: str, producer: dict[str, onnx.NodeProto]) -> bool:
    node = producer.get(tensor)
    if node is not None and node.op_type == "BatchNormalization":
        node = producer.get(node.input[0])
    return node is not None and node.op_type in ("Conv", "ConvTranspose")


def plan_onnxruntime(model: onnx.ModelProto) -> Placement:
    inits = {i.name for i in model.graph.initializer}
    plan = Placement("onnxruntime-cpu", [])
    _survey(model, plan)
    # float graph inputs only: an int32 input (tf2onnx/JAX byte or token ids) is never quantized,
    # so a layout op reading it is no group of its own
    quantized_domain = {i.name for i in model.graph.input if _is_float(i)}
    for node in model.graph.node:
        acts = [t for t in node.input if t and t not in inits]
        if node.op_type in WEIGHTED:
            ok = True
        elif node.op_type in ORT_FOLLOW:
            has_const = node.op_type in ("Add",) and any(t in inits for t in node.input)
            data_inputs = (
                acts[:1] if node.op_type in ("Reshape", "Resize", "Split", "Squeeze", "Unsqueeze") else acts
            )
            ok = bool(data_inputs) and not has_const and all(t in quantized_domain for t in data_inputs)
        else:
            ok = False
        if ok:
            plan.nodes.append(node.name)
            quantized_domain.update(node.output)
    return plan


def _is_float(vi: onnx.ValueInfoProto) -> bool:
    return vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in FLOAT_TYPES


def plan(model: onnx.ModelProto, target: str) -> Placement:
    if target not in TARGETS:
        raise CalibrationError(f"unknown target {target!r}; valid targets are: {', '.join(TARGETS)}")
    return plan_tensorrt(model) if target == "tensorrt" else plan_onnxruntime(model)


def head_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors between the graph outputs and the last weighted ops feeding them (inclusive)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    todo = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while todo:
        t = todo.pop()
        if t in seen or t in inits:
            continue
        seen.add(t)
        node = producer.get(t)
        if node is not None and node.op_type not in WEIGHTED:
            todo.extend(node.input)
    return seen


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for t in node.input:
            out[t].append(node)
    return out
