"""The fuse pipeline: one ordered list of graph passes, and ``fuse_model`` that runs it.

Rules (``pipeline/graph/rules/``, one per file) and library passes (onnx-ir, onnx-graphsurgeon,
onnxslim) work on an onnx-ir copy of the model; the caller's ModelProto is never touched.
After every pass the nodes it left without readers are removed, so each pass is credited with
exactly the nodes its rewrites made dead.

Subgraphs (If branches, Loop and Scan bodies) are rewritten too, in their scope: a rule never
pairs a node with one in another graph, an Identity or Dropout that returns an outer value from a
branch stays, and no pass inlines a branch. Where a library pass gets subgraphs wrong, the part at
fault is left out on models that have them and a *guard* says so (``PassReport.guards``, the
fuse stage's ``guards`` metric), or its output is repaired (``rules/_library.py``).

Last, each Pad whose merge into the Conv it feeds would slow ONNX Runtime's CPU Conv is written
so that ONNX Runtime leaves it apart (``rules/_pads.py``; reported as ``keep_pads_apart``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx
import onnx_ir as ir

from trtforge.common.errors import first_line
from trtforge.common.graphs import op_counts
from trtforge.pipeline.graph.options import FusionOptions
from trtforge.pipeline.graph.rules import _library as lib
from trtforge.pipeline.graph.rules._base import Rejection, Rule, apply_rule
from trtforge.pipeline.graph.rules._pads import keep_pads_apart, slow_pad_merges, two_input_pads
from trtforge.pipeline.graph.rules.fold_bn_into_conv import FoldBatchNormIntoConv
from trtforge.pipeline.graph.rules.fold_bn_into_conv_transpose import FoldBatchNormIntoConvTranspose
from trtforge.pipeline.graph.rules.fold_bn_into_gemm import FoldBatchNormIntoGemm
from trtforge.pipeline.graph.rules.matmul_add_to_gemm import MatMulAddToGemm
from trtforge.pipeline.graph.rules.remove_dropout import RemoveDropout
from trtforge.pipeline.graph.rules.remove_identity import RemoveIdentity
from trtforge.pipeline.graph.rules.simplify_reshape_shape import SimplifyReshapeShape

__all__ = ["PASSES", "FusionPass", "FusionResult", "PassOutcome", "PassReport", "fuse_model", "op_counts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassOutcome:
    modified: bool
    applied: int = 0
    rejections: tuple[Rejection, ...] = ()
    guards: tuple[str, ...] = ()  # what the pass left out on this model, and why


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
    guards: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modified": self.modified,
            "applied": self.applied,
            "nodes_removed": self.nodes_removed,
            "rejections": [r.to_dict() for r in self.rejections],
            "guards": list(self.guards),
        }


@dataclass(frozen=True)
class FusionResult:
    model: onnx.ModelProto
    passes: tuple[PassReport, ...] = field(default_factory=tuple)

    @property
    def modified(self) -> bool:
        return any(p.modified for p in self.passes)

    @property
    def guards(self) -> list[dict[str, str]]:
        """``{"pass", "reason"}`` for each part of a pass left out on this model (subgraphs...)."""
        return [{"pass": p.name, "reason": g} for p in self.passes for g in p.guards]


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
    guards = []
    if options.fold_constants and lib.has_subgraphs(model):
        # onnxslim's folding (its onnx-graphsurgeon fork) inlines an If whose condition folded to a
        # constant, and drops the If's output where the branch returns a constant: the model
        # becomes invalid. Our fold_constants pass already folded without inlining.
        skip_opts.append("constant_folding")
        guards.append(lib.SUBGRAPH_FOLD_GUARD.format(tool="onnxslim's"))
    slow = slow_pad_merges(ir.serde.serialize_model(model))
    if slow:
        # merged into these Convs, the padding slows them on ONNX Runtime's CPU (rules/_pads.py)
        skip_patterns.append("FusionPadConv")
        pad, why = next(iter(slow.items()))
        guards.append(
            f"onnxslim's FusionPadConv skipped: merging Pad {pad!r} ({why}) and {len(slow) - 1} more into "
            "their Convs slows ONNX Runtime's CPU Conv"
        )
    dropouts = any(n.op_type == "Dropout" for n in ir.traversal.RecursiveGraphIterator(model.graph))
    if not options.remove_identity or dropouts:
        # onnxslim's dead-node step erases every Identity and Dropout, even the Dropouts our
        # rule kept for a reason (training_mode, a mask in use)
        skip_opts.append("dead_node_elimination")
    return PassOutcome(lib.run_onnxslim(model, skip_patterns, skip_opts), guards=tuple(guards))


_KEPT_APART = (
    "{n} Pad(s) written with an explicit empty constant_value input, so ONNX Runtime does not merge "
    "them into the large-kernel or 1-D Convs they feed (slower on its CPU provider; rules/_pads.py)"
)


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
    FusionPass("remove_identity", lambda o: o.remove_identity, _rule(RemoveIdentity())),
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
    try:
        work = ir.serde.deserialize_model(copy)
    except ir.serde.SerdeError as exc:  # e.g. sequence/map types of ai.onnx.ml (ZipMap) it cannot read
        cause = exc.__cause__ or exc
        why = f"{type(cause).__name__}: {first_line(cause, 120)}"
        guard = f"onnx-ir cannot read this model ({why}); no pass ran"
        return FusionResult(copy, (PassReport("read_model", False, 0, 0, guards=(guard,)),))
    reports = []
    for p in PASSES:
        if not p.enabled(options):
            continue
        before = _count(work)
        outcome = p.run(work, options)
        cleaned = lib.remove_dead_nodes(work) if outcome.modified else False
        removed = before - _count(work)
        reports.append(
            PassReport(
                p.name,
                outcome.modified or cleaned,
                outcome.applied,
                removed,
                outcome.rejections,
                outcome.guards,
            )
        )
        log.debug("pass %s: %d nodes removed, %d rewrites", p.name, removed, outcome.applied)
    lib.toposort(work)
    out = ir.serde.serialize_model(work)
    kept = keep_pads_apart(out)  # onnx-ir drops the empty input that kept ONNX Runtime from merging
    if kept:
        new = bool(set(kept) & two_input_pads(model))  # the input had them merged by ONNX Runtime too
        guard = _KEPT_APART.format(n=len(kept))
        reports.append(PassReport("keep_pads_apart", new, len(kept) if new else 0, 0, guards=(guard,)))
    return FusionResult(out, tuple(reports))


def _count(model: ir.Model) -> int:
    return sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
