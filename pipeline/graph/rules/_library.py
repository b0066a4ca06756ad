"""Passes we take from libraries rather than write: each adapts one library call to an onnx-ir model.

onnx-ir passes run in place. onnx-graphsurgeon and onnxslim work on ModelProtos; for them the
graph is serialised, transformed, and swapped back into the same ``ir.Model``, so the model's
own fields (IR version, producer, metadata) stay as they were. Their console output (onnx-
graphsurgeon prints warnings on stdout) is captured and sent to this module's logger, so it
never mixes with a command's ``--json`` output.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from collections.abc import Iterator, Sequence

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import (
    RemoveInitializersFromInputsPass,
    RemoveUnusedNodesPass,
    ShapeInferencePass,
    TopologicalSortPass,
)

from trtforge.common.graphs import free_names, subgraphs_of
from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import StageError

log = logging.getLogger(__name__)

#: onnxslim's own versions of folds we do with rules of our own (they decline silently, copy
#: shared weights, or rewrite N-D MatMul into Reshape-Gemm-Reshape); always skipped
ONNXSLIM_SKIPPED_ALWAYS = ("FusionConvBN", "FusionConvTransposeBN", "FusionGemm")
#: onnxslim patterns that simplify shape ops; skipped when shape simplification is off
ONNXSLIM_SHAPE_PATTERNS = ("FusionConcatReshape", "EliminationReshape", "EliminationReshapeAs")
#: the guard recorded when a library's constant folding is left out on a model with subgraphs
SUBGRAPH_FOLD_GUARD = (
    "{tool} constant folding skipped: the model has If/Loop/Scan subgraphs, and that folding "
    "inlines an If with a constant condition by dropping an output its branch returns as a constant; "
    "trtforge's fold_constants pass folded the model without inlining"
)


def remove_dead_nodes(model: ir.Model) -> bool:
    """Nodes and initializers nothing reads (onnx-ir); the model's signature is kept."""
    return RemoveUnusedNodesPass()(model).modified


def freeze_initializers(model: ir.Model) -> bool:
    """Initializers also listed as graph inputs (old exporters) become plain constants (onnx-ir).

    ONNX lets a caller override such an initializer at run time, which would bar every fold
    that reads it; TensorRT's parser and trtforge's IOSpec treat them as weights already.
    """
    return RemoveInitializersFromInputsPass()(model).modified


def has_subgraphs(model: ir.Model) -> bool:
    """Whether a node of the main graph or of a function holds a graph attribute (If, Loop, Scan...)."""
    nodes = [*model.graph, *(n for f in model.functions.values() for n in f)]
    return any(
        attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
        for node in nodes
        for attr in node.attributes.values()
    )


def infer_shapes(model: ir.Model) -> bool:
    """ONNX shape inference (via onnx-ir); on failure the model is left as it was."""
    ShapeInferencePass(strict_mode=False)(model)
    return False  # analysis only: the model computes the same thing


def toposort(model: ir.Model) -> bool:
    return TopologicalSortPass()(model).modified


def fold_constants(model: ir.Model) -> bool:
    """Evaluate every node whose inputs are all constant (onnx-graphsurgeon, run by ONNX Runtime).

    ``fold_shapes`` also folds ``Shape`` of tensors whose shape is static, so shape chains
    over static tensors become constants here. Subgraphs are folded too (a subgraph node reading
    only constants of an outer scope folds), but an If whose condition folds is not inlined:
    onnx-graphsurgeon's ``flatten_subgraphs`` rebinds the If's outputs to the producers of the
    branch outputs, and a branch output without one (a constant, or an Identity it removed) leaves
    the If's readers reading a value no node produces.

    onnx-graphsurgeon does not evaluate a value of the main graph that subgraphs read (its
    partitioned folding takes the subgraph readers for readers in the main graph, so the value
    never looks final): those are evaluated first (``_fold_values_read_by_subgraphs``).
    """
    gs = require("onnx_graphsurgeon", "constant folding")
    proto = ir.serde.serialize_model(model)
    _fold_values_read_bysubgraphs_of(proto)
    main_initializers = {t.name for t in proto.graph.initializer}
    graph = gs.import_onnx(proto)
    with _captured("onnx-graphsurgeon"):
        graph.toposort().fold_constants(
            fold_shapes=True, partitioning="basic", flatten_subgraphs=False
        ).cleanup()
        proto = gs.export_onnx(graph)
    return _swap_graph(model, proto, main_initializers)


#: ops never folded: their value changes from run to run
_NONDETERMINISTIC = (
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
)


def _fold_values_read_bysubgraphs_of(proto: onnx.ModelProto) -> None:
    """Replace each main-graph value that a subgraph reads and only constants feed by an initializer
    (in place; evaluated by ONNX Runtime). Its producer goes; the dead-node pass takes the rest."""
    from onnx import numpy_helper

    from trtforge.common.ort import SessionConfig, create_session

    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    constant = {t.name for t in graph.initializer} - {v.name for v in graph.input} | {""}
    for node in graph.node:  # in order: a graph out of order only folds less
        if (
            node.domain in ("", "ai.onnx")
            and node.op_type not in _NONDETERMINISTIC
            and not subgraphs_of(node)
            and all(i in constant for i in node.input)
        ):
            constant.update(node.output)

    wanted = {name for node in graph.node for sub in subgraphs_of(node) for name in free_names(sub)}
    foldable = sorted(v for v in wanted if v in producer and len(producer[v].output) == 1 and v in constant)
    if not foldable:
        return
    needed: set[str] = set()
    stack = list(foldable)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.output[0] in needed:
            continue
        needed.add(node.output[0])
        stack.extend(node.input)
    nodes = [n for n in graph.node if n.output and n.output[0] in needed]
    used = {i for n in nodes for i in n.input}
    part = onnx.helper.make_graph(
        nodes,
        "fold",
        [],
        [onnx.ValueInfoProto(name=v) for v in foldable],
        [t for t in graph.initializer if t.name in used],
    )
    mini = onnx.helper.make_model(part, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    try:
        session = create_session(mini, SessionConfig(graph_optimization="disable"), source="constant folding")
        values = session.run(foldable, {})
    except Exception:  # what ONNX Runtime cannot evaluate simply stays as it is
        log.debug("folding %d values read by subgraphs failed", len(foldable), exc_info=True)
        return
    done = set(foldable)
    kept = [n for n in graph.node if not (len(n.output) == 1 and n.output[0] in done)]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in zip(foldable, values))


def run_onnxslim(model: ir.Model, skip_patterns: Sequence[str], skip_optimizations: Sequence[str]) -> bool:
    """onnxslim's ``slim()`` (constant folding, its fusions, dead code, CSE, weight tying).

    onnxslim drops graph inputs nothing reads; they are put back, since a stage must not change
    the model's signature.
    """
    onnxslim = require("onnxslim", "graph simplification")
    before = ir.serde.serialize_model(model)
    with _captured("onnxslim"):
        try:
            proto = onnxslim.slim(
                before,
                skip_fusion_patterns=list(skip_patterns),
                skip_optimizations=list(skip_optimizations) or None,
            )
        except Exception as exc:  # onnxslim raises whatever its internals raise
            raise StageError(
                f"onnxslim failed ({type(exc).__name__}: {str(exc).strip()[:200]}); "
                "rerun with onnxslim disabled (--no-onnxslim / use_onnxslim = false)"
            ) from exc
    if proto is None:
        raise StageError("onnxslim returned no model; rerun with onnxslim disabled (--no-onnxslim)")
    _restore_inputs(before, proto)
    return _swap_graph(model, proto)


def _restore_inputs(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    kept = {v.name for v in after.graph.input}
    initializers = {t.name for t in before.graph.initializer}
    missing = [v for v in before.graph.input if v.name not in kept and v.name not in initializers]
    if missing:
        order = {v.name: i for i, v in enumerate(before.graph.input)}
        merged = sorted([*after.graph.input, *missing], key=lambda v: order.get(v.name, len(order)))
        del after.graph.input[:]
        after.graph.input.extend(merged)


def _swap_graph(model: ir.Model, proto: onnx.ModelProto, main_initializers: set[str] | None = None) -> bool:
    """Put ``proto``'s graph and functions into ``model``; True when its nodes changed.

    ``main_initializers``: the main graph's initializers the library was given (default: the model's).
    """
    before = _op_counts(model)
    _return_outer_values_through_identity(proto)
    _hoist_copied_initializers(
        proto, set(model.graph.initializers) if main_initializers is None else main_initializers
    )
    new = ir.serde.deserialize_model(proto)
    model.graph = new.graph
    model.functions.clear()
    model.functions.update(new.functions)
    return _op_counts(model) != before


def _return_outer_values_through_identity(proto: onnx.ModelProto) -> None:
    """Give every subgraph output that names a value of an outer scope an Identity of its own (in place).

    onnx-graphsurgeon's node erasure (onnxslim's dead-node step removes a no-op Cast, Reshape or
    Pad at the end of an If branch) makes the branch return the erased node's input, a value of
    the enclosing graph; ONNX wants subgraph outputs produced inside the subgraph, and If/Loop/Scan
    read their subgraphs' outputs by position, so an Identity under a fresh name restores validity.
    """
    taken = _all_names(proto.graph)

    def visit(graph: onnx.GraphProto, outer: set[str]) -> None:
        local = {*(v.name for v in graph.input), *(t.name for t in graph.initializer)}
        local.update(o for n in graph.node for o in n.output)
        for out in graph.output if outer else ():  # a subgraph: its outputs must be its own
            if out.name and out.name not in local and out.name in outer:
                fresh, i = f"{out.name}_out", 0
                while fresh in taken:
                    i += 1
                    fresh = f"{out.name}_out{i}"
                taken.add(fresh)
                graph.node.append(onnx.helper.make_node("Identity", [out.name], [fresh], name=fresh))
                out.name = fresh
        for node in graph.node:
            for sub in subgraphs_of(node):
                visit(sub, outer | local)

    visit(proto.graph, set())


def _hoist_copied_initializers(proto: onnx.ModelProto, main_initializers: set[str]) -> None:
    """Put main-graph initializers that the export copied into subgraphs back into the main graph (in place).

    onnx-graphsurgeon writes a constant where it is read: a weight of the main graph that only
    subgraphs read lands in each of them (one copy per If branch, the model grows). A name that
    was a main-graph initializer and is now an initializer of subgraphs only, with equal contents
    everywhere and no other definition anywhere, goes back to the main graph (visible to all);
    subgraph copies equal to a main-graph initializer of their name are dropped.
    """
    graph = proto.graph
    defined_in_main = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined_in_main.update(o for n in graph.node for o in n.output)
    copies: dict[str, list[tuple[onnx.GraphProto, onnx.TensorProto]]] = {}
    other_defs: set[str] = set()

    def visit(sub: onnx.GraphProto) -> None:
        other_defs.update(v.name for v in sub.input)
        other_defs.update(o for n in sub.node for o in n.output)
        for t in sub.initializer:
            copies.setdefault(t.name, []).append((sub, t))
        for node in sub.node:
            for inner in subgraphs_of(node):
                visit(inner)

    for node in graph.node:
        for sub in subgraphs_of(node):
            visit(sub)
    main_inits = {t.name: t for t in graph.initializer}
    for name, found in copies.items():
        first = found[0][1]
        if name in other_defs or any(t != first for _, t in found[1:]):
            continue
        if name in main_inits:  # a copy of a main initializer the subgraphs see anyway
            if main_inits[name] != first:
                continue
        elif name not in main_initializers or name in defined_in_main:
            continue
        else:
            graph.initializer.append(first)
        for sub, t in found:
            sub.initializer.remove(t)
        defined_in_main.add(name)


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {*(v.name for v in graph.input), *(t.name for t in graph.initializer)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for sub in subgraphs_of(node):
            names |= _all_names(sub)
    return names


def _op_counts(model: ir.Model) -> Counter[str]:
    return Counter(n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph))


@contextlib.contextmanager
def _captured(source: str) -> Iterator[None]:
    """Send what a library prints on stdout to our logger (debug level) instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    text = buffer.getvalue().strip()
    if text:
        log.debug("%s said:\n%s", source, text)
