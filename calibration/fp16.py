"""FP16 conversion with FP32 islands (how half precision reaches TensorRT 11: in the ONNX graph).

Uses ONNX Runtime's ``float16.convert_float_to_float16`` (it inserts the Casts around blocked
nodes) with our block list: overflow-prone ops (normalisations, Softmax, reductions, exp/log/pow)
and every node whose output exceeded the FP16 range on calibration data.

Subgraphs (If branches, Loop and Scan bodies) are converted with the main graph, and three
things the converter gets wrong there are fixed on our side:

* it appends the Casts around a blocked node of a subgraph to the *main* graph, where the
  subgraph's values are out of scope: they are moved into the subgraph (``_move_casts_home``);
* it never recurses into a blocked If/Loop/Scan, while the outer values its subgraphs read do
  become FP16: a control-flow node is never blocked itself, every node of its subgraphs is;
* onnxruntime's ``topological_sort`` ignores the values a subgraph reads from the enclosing
  graph ("Graph is not a DAG"): ``_toposort`` orders each graph counting those reads.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtforge.calibration.errors import CalibrationError
from trtforge.calibration.placement import check_not_quantized, name_nodes
from trtforge.calibration.stats import collect
from trtforge.common.graphs import CONTROL_FLOW_OPS, free_names, iter_graphs, subgraphs_of

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
            "fp16_nodes": sum(
                1 for g in iter_graphs(self.model.graph) for n in g.node if n.op_type != "Cast"
            ),
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
    if any(t.data_type == onnx.TensorProto.FLOAT16 for g in iter_graphs(model.graph) for t in g.initializer):
        raise CalibrationError(f"{source}: the model already holds FP16 weights; convert the FP32 model")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    name_nodes(m)
    _name_subgraph_nodes(m)
    over = overflow_nodes(m, batches, opts.overflow_margin * FP16_MAX) if batches is not None else {}
    present = {n.op_type for g in iter_graphs(m.graph) for n in g.node}
    blocked = sorted(present & set(opts.fp32_ops))
    node_block: Sequence[str] = sorted(
        _node_block(m.graph, set(opts.fp32_nodes) | set(over), set(opts.fp32_ops))
    )
    op_block = [op for op in [*DEFAULT_OP_BLOCK_LIST, *opts.fp32_ops] if op not in CONTROL_FLOW_OPS]
    main_nodes = {n.name for n in m.graph.node}
    try:
        out = convert_float_to_float16(
            m,
            keep_io_types=opts.keep_io_types,
            op_block_list=op_block,
            node_block_list=list(node_block),
            disable_shape_infer=False,
        )
    except Exception as exc:  # the converter raises assorted errors on odd graphs
        raise CalibrationError(
            f"{source}: FP16 conversion failed ({exc}); check the model with onnx.checker"
        ) from exc
    _move_casts_home(out.graph, main_nodes)
    _toposort(out.graph)  # the converter appends its Casts out of order
    _drop_stale_value_info(out)
    return Fp16Result(out, blocked, over)


def _drop_stale_value_info(model: onnx.ModelProto) -> None:
    """Drop the value_info annotations when the converter left some with the old element type (it
    retypes tensors around FP32 islands but not always their value_info; the checker then rejects
    the model). They are optional: ONNX Runtime and TensorRT infer shapes themselves."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        for graph in iter_graphs(model.graph):
            del graph.value_info[:]


def _name_subgraph_nodes(model: onnx.ModelProto) -> None:
    """Unique names for subgraph nodes too (in place; ``name_nodes`` names the main graph's):
    the converter's node block list keys on names."""
    seen = {n.name for n in model.graph.node}
    for i, graph in enumerate(iter_graphs(model.graph)):
        if i == 0:
            continue
        for j, node in enumerate(graph.node):
            if not node.name or node.name in seen:
                name, k = f"{node.op_type}_{i}_{j}", 0
                while name in seen:
                    k += 1
                    name = f"{node.op_type}_{i}_{j}_{k}"
                node.name = name
            seen.add(node.name)


def _node_block(graph: onnx.GraphProto, names: set[str], fp32_ops: set[str]) -> set[str]:
    """Node names to keep in FP32: ``names``, where a control-flow node (named, or of an op in
    ``fp32_ops``) stands for every node of its subgraphs."""
    out: set[str] = set()
    for node in graph.node:
        whole = node.op_type in CONTROL_FLOW_OPS and (node.name in names or node.op_type in fp32_ops)
        for sub in subgraphs_of(node):
            inner = _node_block(sub, names, fp32_ops)
            if whole:
                inner = {
                    n.name for g in iter_graphs(sub) for n in g.node if n.op_type not in CONTROL_FLOW_OPS
                }
            out |= inner
        if node.name in names and node.op_type not in CONTROL_FLOW_OPS:
            out.add(node.name)
    return out


def _move_casts_home(main: onnx.GraphProto, original: set[str]) -> None:
    """Move each node the converter appended to the main graph (``original``: the names it had) into
    the graph that defines its input: the innermost scope its input is visible in, and one that
    encloses every reader of its output (those read a value that graph defined before)."""
    graphs = list(iter_graphs(main))
    defined_in: dict[str, list[int]] = {}
    for i, g in enumerate(graphs):
        for name in {v.name for v in g.input} | {t.name for t in g.initializer}:
            defined_in.setdefault(name, []).append(i)
        for node in g.node if i else [n for n in g.node if n.name in original]:
            for name in node.output:
                defined_in.setdefault(name, []).append(i)
    added = {n.output[0]: n for n in main.node if n.name not in original and len(n.input) == 1 and n.output}
    homes: dict[str, int] = {}

    def home(output: str, depth: int = 0) -> int:
        if output not in homes:
            name = added[output].input[0]
            if name in added and depth < len(added):
                homes[output] = home(name, depth + 1)
            else:
                found = defined_in.get(name, [])
                homes[output] = found[0] if len(found) == 1 else 0  # unknown or shadowed: leave it
        return homes[output]

    for output, node in added.items():
        where = home(output)
        if where == 0:
            continue
        main.node.remove(node)
        graphs[where].node.append(node)
        for info in [v for v in main.value_info if v.name == output]:
            main.value_info.remove(info)
            graphs[where].value_info.append(info)


def _toposort(graph: onnx.GraphProto) -> None:
    """Order ``graph``'s nodes (and its subgraphs') so each comes after the producers of what it reads,
    the values its subgraphs read from outside included; stable: an ordered graph stays as it is."""
    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    needs: list[set[int]] = []
    for i, node in enumerate(nodes):
        reads = {n for n in node.input if n}
        for sub in subgraphs_of(node):
            reads |= free_names(sub)
            _toposort(sub)
        needs.append({producer[r] for r in reads if r in producer and producer[r] != i})
    users: list[list[int]] = [[] for _ in nodes]
    for i, deps in enumerate(needs):
        for d in deps:
            users[d].append(i)
    waiting = [len(d) for d in needs]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise CalibrationError("FP16 conversion left a cycle in the graph; check the model with onnx.checker")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
