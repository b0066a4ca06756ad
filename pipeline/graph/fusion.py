"""The fuse pipeline: one ordered list of graph passes, and ``fuse_model`` that runs it.

Rules (``pipeline/graph/rules/``, one per file) and library passes (onnx-ir, onnx-graphsurgeon,
onnxslim) work on an onnx-ir copy of the model; the caller's ModelProto is never touched.
After every pass the nodes it left without readers are removed, so each pass is credited with
exactly the nodes its rewrites made dead.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx
import onnx_ir as ir

from trtforge.pipeline.graph.options import FusionOptions
from trtforge.pipeline.graph.rules import _library as lib
from trtforge.pipeline.graph.rules._base import Rejection, Rule, apply_rule
from trtforge.pipeline.graph.rules.fold_bn_into_conv import FoldBatchNormIntoConv
from trtforge.pipeline.graph.rules.fold_bn_into_conv_transpose import FoldBatchNormIntoConvTranspose
from trtforge.pipeline.graph.rules.fold_bn_into_gemm import FoldBatchNormIntoGemm
from trtforge.pipeline.graph.rules.matmul_add_to_gemm import MatMulAddToGemm
from trtforge.pipeline.graph.rules.remove_dropout import RemoveDropout
from trtforge.pipeline.graph.rules.simplify_reshape_shape import SimplifyReshapeShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassOutcome:
    modified: bool
    applied: int = 0
    rejections: tuple[Rejection, ...] = ()


@dataclass(frozen=True)
class FusionPass:
    name: str
    enabled: Callable[[FusionOptions], bool]
    run: Callable[[ir.Model, FusionOptions], PassOutcome]


@dataclass(frozen=True)
class PassReport:
    name: str
    modified: bool
    applied: int
    nodes_removed: int
    rejections: tuple[Rejection, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modified": self.modified,
            "applied": self.applied,
            "nodes_removed": self.nodes_removed,
            "rejections": [r.to_dict() for r in self.rejections],
        }


@dataclass(frozen=True)
class FusionResult:
    model: onnx.ModelProto
    passes: tuple[PassReport, ...] = field(default_factory=tuple)

    @property
    def modified(self) -> bool:
        return any(p.modified for p in self.passes)


def _rule(rule: Rule[Any]) -> Callable[[ir.Model, FusionOptions], PassOutcome]:
    def run(model: ir.Model, options: FusionOptions) -> PassOutcome:
        stats = apply_rule(rule, model)
        return PassOutcome(stats.applied > 0, stats.applied, tuple(stats.rejections))

    return run


def _library(fn: Callable[[ir.Model], bool]) -> Callable[[ir.Model, FusionOptions], PassOutcome]:
    def run(model: ir.Model, options: FusionOptions) -> PassOutcome:
        return PassOutcome(fn(model))

    return run


def _onnxslim(model: ir.Model, options: FusionOptions) -> PassOutcome:
    skip_patterns = list(lib.ONNXSLIM_SKIPPED_ALWAYS)
    if not options.simplify_shapes:
        skip_patterns += lib.ONNXSLIM_SHAPE_PATTERNS
    skip_opts = [] if options.fold_constants else ["constant_folding"]
    dropouts = any(n.op_type == "Dropout" for n in ir.traversal.RecursiveGraphIterator(model.graph))
    if not options.remove_identity or dropouts:
        # onnxslim's dead-node step erases every Identity and Dropout, even the Dropouts our
        # rule kept for a reason (training_mode, a mask in use)
        skip_opts.append("dead_node_elimination")
    return PassOutcome(lib.run_onnxslim(model, skip_patterns, skip_opts))


def _always(options: FusionOptions) -> bool:
    return True


#: The order matters:
#: 1. initializers listed as graph inputs become constants first, or no fold could read them;
#: 2. dead nodes the input already had go next, so no later pass is credited with them;
#: 3. shapes are inferred before folding: onnx-graphsurgeon folds ``Shape`` only where known;
#: 4. constant folding comes before every rule, because the rules need constant inputs
#:    (a Conv weight behind an Identity or Transpose, a Reshape target computed from constants);
#: 5. Identity and Dropout go next: they sit between the nodes the rules pair up (Conv ->
#:    Identity -> BN matches nothing until the Identity is gone);
#: 6. shapes are inferred again (folding and the removals change values) for the rules that
#:    read ranks and dimensions (MatMul+Add, Reshape targets);
#: 7. MatMul+Add becomes Gemm before the BN folds, so a BN after a Linear exported as
#:    MatMul+Add still folds (into the Gemm);
#: 8. onnxslim comes last: its own constant folding, dead-code removal, common-subexpression
#:    elimination and remaining fusions then see the graph our rules simplified. Its folds that
#:    duplicate ours are skipped (``_library.ONNXSLIM_SKIPPED_ALWAYS``).
PASSES: tuple[FusionPass, ...] = (
    FusionPass("freeze_initializers", _always, _library(lib.freeze_initializers)),
    FusionPass("remove_dead_nodes", _always, _library(lib.remove_dead_nodes)),
    FusionPass("infer_shapes", _always, _library(lib.infer_shapes)),
    FusionPass("fold_constants", lambda o: o.fold_constants, _library(lib.fold_constants)),
    FusionPass("remove_identity", lambda o: o.remove_identity, _library(lib.remove_identity)),
    FusionPass("remove_dropout", lambda o: o.remove_identity, _rule(RemoveDropout())),
    FusionPass("infer_shapes", _always, _library(lib.infer_shapes)),
    FusionPass("simplify_reshape_shape", lambda o: o.simplify_shapes, _rule(SimplifyReshapeShape())),
    FusionPass("matmul_add_to_gemm", lambda o: o.matmul_add_to_gemm, _rule(MatMulAddToGemm())),
    FusionPass("fold_bn_into_conv", lambda o: o.fold_batchnorm, _rule(FoldBatchNormIntoConv())),
    FusionPass(
        "fold_bn_into_conv_transpose", lambda o: o.fold_batchnorm, _rule(FoldBatchNormIntoConvTranspose())
    ),
    FusionPass("fold_bn_into_gemm", lambda o: o.fold_batchnorm, _rule(FoldBatchNormIntoGemm())),
    FusionPass("onnxslim", lambda o: o.use_onnxslim, _onnxslim),
)


def fuse_model(model: onnx.ModelProto, options: FusionOptions | None = None) -> FusionResult:
    """Run every enabled pass of ``PASSES`` in order on a copy of ``model``."""
    options = options or FusionOptions()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    work = ir.serde.deserialize_model(copy)
    reports = []
    for p in PASSES:
        if not p.enabled(options):
            continue
        before = _count(work)
        outcome = p.run(work, options)
        cleaned = lib.remove_dead_nodes(work) if outcome.modified else False
        removed = before - _count(work)
        reports.append(
            PassReport(p.name, outcome.modified or cleaned, outcome.applied, removed, outcome.rejections)
        )
        log.debug("pass %s: %d nodes removed, %d rewrites", p.name, removed, outcome.applied)
    lib.toposort(work)
    return FusionResult(ir.serde.serialize_model(work), tuple(reports))


def _count(model: ir.Model) -> int:
    return sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes per op type, subgraphs included, sorted by op type."""
    counts: Counter[str] = Counter()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    walk(sub)

    walk(model.graph)
    return dict(sorted(counts.items()))
