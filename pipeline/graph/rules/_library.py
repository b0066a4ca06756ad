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
    IdentityEliminationPass,
    RemoveInitializersFromInputsPass,
    RemoveUnusedNodesPass,
    ShapeInferencePass,
    TopologicalSortPass,
)

from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import StageError

log = logging.getLogger(__name__)

#: onnxslim's own versions of folds we do with rules of our own (they decline silently, copy
#: shared weights, or rewrite N-D MatMul into Reshape-Gemm-Reshape); always skipped
ONNXSLIM_SKIPPED_ALWAYS = ("FusionConvBN", "FusionConvTransposeBN", "FusionGemm")
#: onnxslim patterns that simplify shape ops; skipped when shape simplification is off
ONNXSLIM_SHAPE_PATTERNS = ("FusionConcatReshape", "EliminationReshape", "EliminationReshapeAs")


def remove_dead_nodes(model: ir.Model) -> bool:
    """Nodes and initializers nothing reads (onnx-ir); the model's signature is kept."""
    return RemoveUnusedNodesPass()(model).modified


def freeze_initializers(model: ir.Model) -> bool:
    """Initializers also listed as graph inputs (old exporters) become plain constants (onnx-ir).

    ONNX lets a caller override such an initializer at run time, which would bar every fold
    that reads it; TensorRT's parser and trtforge's IOSpec treat them as weights already.
    """
    return RemoveInitializersFromInputsPass()(model).modified


def remove_identity(model: ir.Model) -> bool:
    """Identity nodes (onnx-ir), except one joining a graph input straight to a graph output."""
    return IdentityEliminationPass()(model).modified


def infer_shapes(model: ir.Model) -> bool:
    """ONNX shape inference (via onnx-ir); on failure the model is left as it was."""
    ShapeInferencePass(strict_mode=False)(model)
    return False  # analysis only: the model computes the same thing


def toposort(model: ir.Model) -> bool:
    return TopologicalSortPass()(model).modified


def fold_constants(model: ir.Model) -> bool:
    """Evaluate every node whose inputs are all constant (onnx-graphsurgeon, run by ONNX Runtime).

    ``fold_shapes`` also folds ``Shape`` of tensors whose shape is static, so shape chains
    over static tensors become constants here.
    """
    gs = require("onnx_graphsurgeon", "constant folding")
    graph = gs.import_onnx(ir.serde.serialize_model(model))
    with _captured("onnx-graphsurgeon"):
        graph.toposort().fold_constants(fold_shapes=True, partitioning="basic").cleanup()
        proto = gs.export_onnx(graph)
    return _swap_graph(model, proto)


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


def _swap_graph(model: ir.Model, proto: onnx.ModelProto) -> bool:
    """Put ``proto``'s graph and functions into ``model``; True when its nodes changed."""
    before = _op_counts(model)
    new = ir.serde.deserialize_model(proto)
    model.graph = new.graph
    model.functions.clear()
    model.functions.update(new.functions)
    return _op_counts(model) != before


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
