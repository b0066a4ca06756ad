"""The ``fuse`` stage: graph optimisation of an ONNX model, checked for parity on ONNX Runtime.

Constant folding, BatchNormalization folding into Conv/ConvTranspose/Gemm, MatMul+Add ->
Gemm, Identity/Dropout/dead-node removal and Reshape-target simplification run as the
ordered passes of ``pipeline.graph.fusion``. The output is compared with the input on ONNX
Runtime CPU (graph optimisations off, so each model runs as written) on seeded random inputs,
or on the validation data when the pipeline has some; the ``fuse_parity`` gate holds when every
element keeps the one parity rule (``pipeline.validation.rule``): ``|fused - input| <= atol + rtol *
|input|`` (NaN where both models give NaN passes: random inputs may produce it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtforge.pipeline.artifact import Artifact, ArtifactKind, IOSpec, TensorSpec, sha256_model_files
from trtforge.pipeline.backends.base import Runner
from trtforge.pipeline.errors import ConfigError, InputError, first_line
from trtforge.pipeline.graph.options import FusionOptions
from trtforge.pipeline.onnx_io import load_onnx, save_onnx
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult
from trtforge.pipeline.validation.rule import ParityCheck
from trtforge.pipeline.validation.selfcheck import SelfCheckResult, compare_runners

log = logging.getLogger(__name__)

#: samples per batch when the parity check reads validation data
PARITY_BATCH = 8
#: rejections kept in the metrics (the total is always reported)
MAX_REJECTIONS = 50


@dataclass(frozen=True)
class FuseConfig(FusionOptions):
    """Which passes run (the switches of :class:`FusionOptions`), and the parity tolerance. Defaults are
    what ``trtforge fuse`` does."""

    atol: float = 1e-4
    rtol: float = 1e-3
    parity_batches: int = 2
    seed: int = 0
    #: ``NAME:1x3x640x640``: sizes of dynamic inputs where no data gives them (``build --shapes`` syntax)
    shapes: tuple[str, ...] = ()
    #: ``IN:OUT``: state input fed by the previous step's output (streaming models; files are steps)
    state: tuple[str, ...] = ()
    #: largest latency ratio fused/input accepted (ONNX Runtime CPU, real shapes; see stages/_latency.py)
    max_latency_ratio: float = 1.0

    def __post_init__(self) -> None:
        if not self.max_latency_ratio > 0:
            raise ConfigError(f"fuse.max_latency_ratio must be > 0, got {self.max_latency_ratio}")
        if not self.atol >= 0:
            raise ConfigError(f"fuse.atol must be >= 0, got {self.atol}; e.g. atol = 1e-4")
        if not self.rtol >= 0:
            raise ConfigError(f"fuse.rtol must be >= 0, got {self.rtol}; e.g. rtol = 1e-3")
        if self.parity_batches < 1:
            raise ConfigError(f"fuse.parity_batches must be >= 1, got {self.parity_batches}")

    @property
    def parity_check(self) -> ParityCheck:
        """The self-check these keys describe: validation data when set, else seeded random inputs."""
        return ParityCheck(
            atol=self.atol,
            rtol=self.rtol,
            equal_nan=True,
            data=("validation",),
            batch_size=PARITY_BATCH,
            batches=self.parity_batches,
            random_batch=2,
            seed=self.seed,
            shapes=self.shapes,
            state=self.state,
        )


@register_stage("fuse")
class FuseStage(Stage[FuseConfig]):
    config_cls = FuseConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.pipeline.graph.fusion import op_counts

        cfg = self.config
        model = load_onnx(artifact.path)
        ctx.progress("fuse", 0, 2)
        specs = artifact.iospec.inputs if artifact.iospec else IOSpec.from_onnx(model).inputs
        attempt = self._attempt(model, cfg, artifact, specs, ctx)
        guards = list(attempt.result.guards)
        if not attempt.passed:
            # find the pass responsible: leave out one switch at a time (the passes that changed the
            # model, last first: onnxslim, a library we do not control, before our own rules) and keep
            # the first result that holds parity and latency; the switch left out is reported
            why = attempt.failure()
            for switch in _suspects(attempt.result, cfg):
                trial = self._attempt(model, _without(cfg, switch), artifact, specs, ctx)
                if trial.passed:
                    attempt = trial
                    name = "onnxslim" if switch == "use_onnxslim" else switch
                    guards = [*trial.result.guards, {"pass": name, "reason": f"{why}; left out"}]
                    break
            else:  # none helps: the full fusion's model and failure are what the stage reports
                save_onnx(attempt.fused, ctx.out_dir / "model.onnx")
        result, fused, parity = attempt.result, attempt.fused, attempt.parity
        out = ctx.out_dir / "model.onnx"
        ctx.progress("fuse", 2, 2)
        before, after = op_counts(model), op_counts(fused)
        rejections = [r.to_dict() for p in result.passes for r in p.rejections]
        metrics = {
            "nodes_before": before,
            "nodes_after": after,
            "node_count_before": sum(before.values()),
            "node_count_after": sum(after.values()),
            "removed_by_pass": _by_pass(result.passes, "nodes_removed"),
            "rewrites_by_rule": _by_pass(result.passes, "applied"),
            "rejections": rejections[:MAX_REJECTIONS],
            "rejections_total": len(rejections),
            "guards": guards,  # what a pass left out on this model (subgraphs, a breaking rewrite), and why
            "parity": parity.to_dict(),
            **attempt.latency,
        }
        spec = IOSpec.from_onnx(fused)
        iospec = IOSpec(spec.inputs, spec.outputs, artifact.iospec.dim_ranges if artifact.iospec else {})
        new = Artifact(out, ArtifactKind.ONNX, sha256_model_files(out), iospec, artifact.provenance)
        return StageResult(new, metrics, result.modified, attempt.gates)

    def _attempt(
        self, model: Any, cfg: FuseConfig, artifact: Artifact, specs: Sequence[TensorSpec], ctx: StageContext
    ) -> _Attempt:
        """Fuse with ``cfg`` and check parity, then (changed and exact) latency against the input."""
        result, fused, parity = self._fuse_and_check(model, cfg, artifact, specs, ctx)
        gates: tuple[Gate, ...] = (parity.gate("fuse_parity", " of the input model"),)
        latency: dict[str, Any] = {}
        if result.modified and parity.passed:
            from trtforge.pipeline.stages._latency import check_latency, latency_feed

            feed, where, why = latency_feed(cfg, ctx, specs, f"fuse: {artifact.path}")
            out = ctx.out_dir / "model.onnx"
            latency, timed = check_latency(
                "fuse", artifact.path, out, feed, cfg.max_latency_ratio, shapes_from=where, why_not=why
            )
            gates += timed
        return _Attempt(result, fused, parity, gates, latency)

    def _fuse_and_check(
        self, model: Any, cfg: FuseConfig, artifact: Artifact, specs: Sequence[TensorSpec], ctx: StageContext
    ) -> tuple[Any, Any, SelfCheckResult]:
        """Fuse with ``cfg``, write ``model.onnx`` into the stage folder and check it against the input."""
        from trtforge.pipeline.graph.fusion import fuse_model

        result = fuse_model(model, cfg)  # a FuseConfig is a FusionOptions
        fused = result.model if result.modified else model
        out = save_onnx(fused, ctx.out_dir / "model.onnx")
        ctx.progress("fuse", 1, 2)
        return result, fused, check_parity(artifact.path, out, specs, cfg.parity_check, ctx)


@dataclass(frozen=True)
class _Attempt:
    """One fusion with its checks: parity, and latency where the model changed and stayed exact."""

    result: Any
    fused: Any
    parity: SelfCheckResult
    gates: tuple[Gate, ...]
    latency: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(self.gates)

    def failure(self) -> str:
        """What the failed gates say, as the reason a pass is left out."""
        what = {"fuse_parity": "changed the model's results", "fuse_latency": "made the model slower"}
        return "; ".join(f"{what.get(g.name, g.name)} ({g.detail})" for g in self.gates if not g.passed)


#: the switch of FusionOptions behind each pass (fusion.PASSES), for leaving one out
_SWITCH_OF_PASS = {
    "fold_constants": "fold_constants",
    "remove_identity": "remove_identity",
    "remove_dropout": "remove_identity",
    "simplify_reshape_shape": "simplify_shapes",
    "matmul_add_to_gemm": "matmul_add_to_gemm",
    "fold_bn_into_conv": "fold_batchnorm",
    "fold_bn_into_conv_transpose": "fold_batchnorm",
    "fold_bn_into_gemm": "fold_batchnorm",
    "onnxslim": "use_onnxslim",
}


def _without(cfg: FuseConfig, switch: str) -> FuseConfig:
    off: dict[str, Any] = {switch: False}
    return dataclasses.replace(cfg, **off)


def _suspects(result: Any, cfg: FuseConfig) -> list[str]:
    """The switches whose passes changed the model, the last pass first (each switch once)."""
    out: list[str] = []
    for p in reversed(result.passes):
        switch = _SWITCH_OF_PASS.get(p.name)
        if switch and p.modified and getattr(cfg, switch) and switch not in out:
            out.append(switch)
    return out


def _by_pass(passes: Sequence[Any], attr: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for p in passes:
        if p.name != "infer_shapes":
            totals[p.name] = totals.get(p.name, 0) + int(getattr(p, attr))
    return totals


def check_parity(
    reference: Path, candidate: Path, specs: Sequence[TensorSpec], check: ParityCheck, ctx: StageContext
) -> SelfCheckResult:
    """Run both models on ONNX Runtime CPU (no graph optimisation) and compare every output."""
    from trtforge.common.ort import SessionConfig
    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.config import env_threads

    options = SessionConfig(graph_optimization="disable", intra_op_threads=env_threads())
    ref, new = OrtRunner(reference, options).load(), OrtRunner(candidate, options).load()
    data = {"validation": ctx.data.validation}
    source, feeds = check.feeds(specs, data, model=reference, source=f"fuse: {reference}")

    def cannot_run(runner: Runner, exc: Exception) -> Exception:
        hint = "" if source != "random" else "; pass validation data (--validation-data) with real shapes"
        who = str(reference) if runner is ref else f"the fused model of {reference}"
        return InputError(f"{who}: ONNX Runtime cannot run it on {source} inputs ({first_line(exc)}){hint}")

    return compare_runners(ref, new, feeds, check, source, on_error=cannot_run)
