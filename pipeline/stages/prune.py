"""The ``prune`` stage: structural pruning on the ONNX graph (see ``pipeline.graph.pruning``).

Lossless removal of dead channels always runs first; then ``ratio`` of each dependency group
(or of all, with scope "global") goes by importance, rounded to multiples of ``round_to``; or a
reviewed ``plan`` is applied. Optional 2:4 sparsity, then optional label-free recovery by
distillation against the unpruned model on the calibration (or ``train_data``) inputs.
The plan is written beside the model as ``plan.json``.

The output is compared with the input (``parity`` metrics: the one parity rule of
``pipeline.validation.rule``, plus top-1 agreement) on the validation, calibration or ``train_data``
inputs (else seeded random); with ``lossless`` the ``prune_lossless_parity`` gate holds when every
element is within ``lossless_atol``. ``latency_runs``: before/after median latency (batch 1, one
thread, the two models interleaved; ``pipeline.validation.throughput.measure_latency``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx

from trtforge.pipeline.artifact import Artifact, ArtifactKind, IOSpec, sha256_file, sha256_model_files
from trtforge.pipeline.errors import ConfigError, InputError, first_line
from trtforge.pipeline.onnx_io import load_onnx, save_onnx
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult
from trtforge.pipeline.validation.rule import ParityCheck

if TYPE_CHECKING:
    from trtforge.pipeline.backends.base import Runner
    from trtforge.pipeline.validation.selfcheck import SelfCheckResult

log = logging.getLogger(__name__)

_WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"})


@dataclass(frozen=True)
class PruneConfig:
    """Defaults are what ``trtforge prune`` does."""

    ratio: float = 0.5
    scope: Literal["group", "global"] = "group"
    criterion: Literal["l1", "l2", "bn", "activation"] = "l1"
    max_ratio_per_layer: float = 0.9
    round_to: int = 8
    skip: tuple[str, ...] = ()
    group_ratios: dict[str, float] = field(default_factory=dict)
    lossless: bool = False  # only remove provably dead channels
    plan: Path | None = None
    sparsity: Literal["none", "2:4"] = "none"
    recover: bool = False
    train_data: Path | None = None
    epochs: int = 10
    max_seconds: float = 300.0
    lr: float = 1e-3
    batch_size: int = 32
    stat_batches: int = 8  # calibration batches for activation importance and the parity report
    lossless_atol: float = 1e-5
    latency_runs: int = 20
    #: largest latency ratio pruned/input accepted (ONNX Runtime CPU, real shapes; stages/_latency.py)
    max_latency_ratio: float = 1.0
    #: ``NAME:1x3x640x640``: sizes of dynamic inputs where no data gives them (``build --shapes`` syntax)
    shapes: tuple[str, ...] = ()
    #: ``IN:OUT``: state input fed by the previous step's output (streaming models; files are steps)
    state: tuple[str, ...] = ()
    #: fidelity floor against the unpruned model on the validation (else calibration/training)
    #: data; None: the default floor (pipeline.validation.fidelity.DEFAULT_BUDGET), "none": measure only
    accuracy_budget: str | None = None

    def __post_init__(self) -> None:
        from trtforge.pipeline.validation.fidelity import budget_terms

        try:
            budget_terms(self.accuracy_budget)
        except Exception as exc:  # the budget grammar raises CalibrationError (exit 2) with the fix
            raise ConfigError(f"prune.accuracy_budget: {exc}") from exc
        if not self.max_latency_ratio > 0:
            raise ConfigError(f"prune.max_latency_ratio must be > 0, got {self.max_latency_ratio}")
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"prune.ratio must be in [0, 1), got {self.ratio}; e.g. ratio = 0.5")
        if not 0.0 < self.max_ratio_per_layer < 1.0:
            raise ConfigError(f"prune.max_ratio_per_layer must be in (0, 1), got {self.max_ratio_per_layer}")
        for key, r in self.group_ratios.items():
            if not 0.0 <= float(r) < 1.0:
                raise ConfigError(f"prune.group_ratios.{key} must be in [0, 1), got {r}")
        if self.round_to < 1:
            raise ConfigError(f"prune.round_to must be >= 1, got {self.round_to}")
        if self.epochs < 1 or self.batch_size < 1 or self.stat_batches < 1:
            raise ConfigError("prune.epochs, prune.batch_size and prune.stat_batches must be >= 1")
        if not self.lossless_atol >= 0:
            raise ConfigError(f"prune.lossless_atol must be >= 0, got {self.lossless_atol}")

    @property
    def parity_check(self) -> ParityCheck:
        """The comparison with the input model (gated with ``lossless``): ``stat_batches`` batches of the
        validation, calibration or training inputs, else of seeded random ones; no relative part."""
        return ParityCheck(
            atol=self.lossless_atol,
            rtol=0.0,
            data=("validation", "calibration", "train_data"),
            batch_size=self.batch_size,
            batches=self.stat_batches,
            random_batch=4,
            shapes=self.shapes,
            state=self.state,
        )


@register_stage("prune")
class PruneStage(Stage[PruneConfig]):
    config_cls = PruneConfig

    def cache_inputs(self, ctx: StageContext) -> dict[str, str]:
        out = {}
        if self.config.plan is not None and Path(self.config.plan).is_file():
            out["plan"] = sha256_file(self.config.plan)
        data = self._train_path(ctx, required=False)
        if data is not None and Path(data).is_file():
            out["train_data"] = sha256_file(data)
        return out

    def _train_path(self, ctx: StageContext, required: bool) -> Path | None:
        path = self.config.train_data or ctx.data.calibration
        if path is None and required:
            raise ConfigError(
                "prune: recovery needs unlabeled inputs; pass --train-data PATH (or pipeline "
                "calibration data)"
            )
        return path

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.pipeline.graph.pruning import PrunePlan, apply_plan, macs, plan_model
        from trtforge.pipeline.graph.pruning.pruner import analyze_model, group_report

        cfg, src = self.config, str(artifact.path)
        model = load_onnx(artifact.path)
        specs = artifact.iospec.inputs if artifact.iospec else IOSpec.from_onnx(model).inputs
        ctx.progress("prune", 0, 4)
        if cfg.plan is not None:
            plan = PrunePlan.load(cfg.plan)
            az = analyze_model(model, src)
        else:
            feeds = self._stat_feeds(specs, ctx, artifact.path) if cfg.criterion == "activation" else None
            plan, az = plan_model(model, _request(cfg), feeds, src)
        summary = az.summary()
        if summary["prunable_groups"] == 0 and cfg.sparsity == "none":
            first = next((g for g in az.groups if g.reasons), None)
            why = f"; first reason: {first.reasons[0]}" if first else ""
            from trtforge.common.graphs import describe_body_ops

            if summary["groups"] == 0:
                inside = describe_body_ops(model, _WEIGHT_OPS)
                raise InputError(
                    f"{src}: nothing can be pruned: no Conv, ConvTranspose or Gemm/MatMul with constant "
                    f"weights in the main graph forms a channel group{inside}; leave the prune stage out"
                )
            raise InputError(
                f"{src}: nothing can be pruned: all {summary['groups']} channel groups are blocked{why}"
            )
        rows = group_report(az, plan)
        pruned = apply_plan(model, plan, src, analyzed=az)
        ctx.progress("prune", 1, 4)
        metrics: dict[str, Any] = {
            "analysis": summary,
            "groups": rows,
            "removed_units": plan.removed_units,
            "dead_units": int(plan.meta.get("dead_units", 0)),
        }
        pruned, masks = self._sparsify(pruned, metrics)
        if cfg.recover:
            pruned = self._recover(artifact, pruned, specs, masks, ctx, metrics)
        ctx.progress("prune", 3, 4)
        out = save_onnx(pruned, ctx.out_dir / "model.onnx")
        plan.save(ctx.out_dir / "plan.json")
        from trtforge.pipeline.contracts import smoke_inputs

        inputs = smoke_inputs(cfg, ctx)
        # MACs on the shapes of the user's inputs (data, else --shapes), else on the model's static
        # shapes; a dynamic H/W without either leaves them unknown (not counted on 1x1)
        sample = inputs.feed(specs, f"prune: {artifact.path}") if inputs.data or inputs.shapes else None
        shapes = None if sample is None else {k: list(v.shape) for k, v in sample.items()}
        metrics.update(_size_metrics(model, pruned, artifact.path, out, macs, shapes))
        gates = self._report_parity(artifact.path, out, specs, ctx, metrics)
        modified = plan.removed_units > 0 or masks is not None or cfg.recover
        if cfg.latency_runs:
            from trtforge.pipeline.stages._latency import check_latency, latency_feed

            feed, where, why = latency_feed(cfg, ctx, specs, f"prune: {artifact.path}")
            bound = cfg.max_latency_ratio if modified else None
            latency, timed = check_latency(
                "prune",
                artifact.path,
                out,
                feed,
                bound,
                shapes_from=where,
                why_not=why,
                iters=cfg.latency_runs,
            )
            metrics.update(latency)
            gates += timed
            rec = latency["latency_gate"]
            if "before_ms" in rec:
                metrics["latency_ms"] = {
                    "before": rec["before_ms"],
                    "after": rec["after_ms"],
                    "after_vs_before": rec["ratio"],
                }
        ctx.progress("prune", 4, 4)
        spec = IOSpec.from_onnx(pruned)
        iospec = IOSpec(spec.inputs, spec.outputs, artifact.iospec.dim_ranges if artifact.iospec else {})
        new = Artifact(out, ArtifactKind.ONNX, sha256_model_files(out), iospec, artifact.provenance)
        return StageResult(new, metrics, modified, gates)

    def _stat_feeds(self, specs: Any, ctx: StageContext, model: Path) -> list[dict[str, np.ndarray]]:
        from trtforge.pipeline.validation.feeds import data_batches

        path = ctx.data.calibration or self.config.train_data
        if path is None:
            raise ConfigError("prune: criterion 'activation' needs calibration data; pass --calibration-data")
        cfg = self.config
        limit = cfg.batch_size * cfg.stat_batches
        return list(data_batches(path, specs, cfg.batch_size, limit, state=cfg.state, model=model))

    def _sparsify(
        self, pruned: onnx.ModelProto, metrics: dict[str, Any]
    ) -> tuple[onnx.ModelProto, dict[str, np.ndarray] | None]:
        if self.config.sparsity != "2:4":
            return pruned, None
        from trtforge.pipeline.graph.pruning import sparsity

        sparse, masks, found = sparsity.apply_2_4(pruned)
        metrics["sparsity"] = {
            "pattern": "2:4",
            "layers": [layer.to_dict() for layer in found],
            "eligible": sum(1 for layer in found if layer.eligible),
            "note": "build with TensorRT BuilderFlag.SPARSE_WEIGHTS to use sparse tensor cores",
        }
        return sparse, masks

    def _recover(
        self,
        artifact: Artifact,
        pruned: onnx.ModelProto,
        specs: Any,
        masks: dict[str, np.ndarray] | None,
        ctx: StageContext,
        metrics: dict[str, Any],
    ) -> onnx.ModelProto:
        from trtforge.pipeline.graph.recovery import RecoverySettings, distill
        from trtforge.pipeline.validation.feeds import data_batches

        cfg = self.config
        path = self._train_path(ctx, required=True)
        assert path is not None
        batches = list(data_batches(path, specs, cfg.batch_size, state=cfg.state, model=artifact.path))
        if not batches:
            raise InputError(f"{path}: holds no samples; pass unlabeled model inputs with --train-data")
        settings = RecoverySettings(epochs=cfg.epochs, max_seconds=cfg.max_seconds, lr=cfg.lr)
        res = distill(artifact.path, pruned, batches, settings, masks, ctx.progress, str(artifact.path))
        metrics["recovery"] = {
            **res.to_dict(),
            "train_data": str(path),
            "samples": int(sum(next(iter(b.values())).shape[0] for b in batches)),
        }
        return res.model

    def _report_parity(
        self, before: Path, after: Path, specs: Any, ctx: StageContext, metrics: dict[str, Any]
    ) -> tuple[Gate, ...]:
        cfg = self.config
        check = cfg.parity_check
        data = {
            "validation": ctx.data.validation,
            "calibration": ctx.data.calibration,
            "train_data": cfg.train_data,
        }
        source, feeds = check.feeds(specs, data, model=before, source=f"prune: {before}")
        result, agreement = _parity(before, after, feeds, check, source)
        metrics["parity"] = {
            **result.to_dict(),
            "max_abs_diff": result.max_abs,
            "top1_agreement": agreement,
            "source": "random" if source == "random" else "data",
        }
        from trtforge.pipeline.stages._fidelity import check_fidelity

        sets = tuple((name, data[name]) for name in ("validation", "calibration", "train_data"))
        fidelity, gates = check_fidelity(
            "prune",
            before,
            after,
            specs,
            sets,
            cfg.accuracy_budget,
            state=cfg.state,
            batch_size=cfg.batch_size,
        )
        metrics.update(fidelity)
        if not cfg.lossless:
            return gates
        return (result.gate("prune_lossless_parity", " of the unpruned model"), *gates)


def _request(cfg: PruneConfig) -> Any:
    from trtforge.pipeline.graph.pruning import PlanRequest, PlanSettings

    settings = PlanSettings(
        ratio=0.0 if cfg.lossless else cfg.ratio,
        scope=cfg.scope,
        max_ratio_per_layer=cfg.max_ratio_per_layer,
        round_to=cfg.round_to,
        skip=cfg.skip,
        group_ratios=dict(cfg.group_ratios),
    )
    return PlanRequest(settings, cfg.criterion, lossless=True)


def _parity(
    before: Path, after: Path, feeds: Iterable[dict[str, np.ndarray]], check: ParityCheck, source: str
) -> tuple[SelfCheckResult, float | None]:
    """The parity of ``after`` against ``before`` (ONNX Runtime, no graph optimisation), and the top-1
    agreement of the first output where it is a ``[batch, classes]`` tensor."""
    from trtforge.common.ort import SessionConfig
    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.validation.metrics import argmax_agreement
    from trtforge.pipeline.validation.selfcheck import compare_runners

    opts = SessionConfig(graph_optimization="disable")
    a, b = OrtRunner(before, opts).load(), OrtRunner(after, opts).load()
    counts = [0, 0]  # agreeing samples, samples

    def count_agreement(ya: Mapping[str, np.ndarray], yb: Mapping[str, np.ndarray]) -> None:
        first = next(iter(ya))
        agree, total = argmax_agreement(ya[first], yb[first])
        counts[0] += agree
        counts[1] += total

    def cannot_run(runner: Runner, exc: Exception) -> Exception:
        who = str(before) if runner is a else f"the pruned model of {before}"
        return InputError(f"{who}: ONNX Runtime cannot run it on {source} inputs ({first_line(exc)})")

    result = compare_runners(a, b, feeds, check, source, on_error=cannot_run, on_batch=count_agreement)
    return result, counts[0] / counts[1] if counts[1] else None


def _size_metrics(
    model: onnx.ModelProto,
    pruned: onnx.ModelProto,
    src: Path,
    out: Path,
    macs: Any,
    shapes: Mapping[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Parameters (Constant-node weights included), MACs on ``shapes`` (the user's inputs) or the
    model's static shapes (None, the reason in ``unknown``, where a non-batch size is dynamic), sizes."""
    before, after = macs.count(model, shapes=shapes), macs.count(pruned, shapes=shapes)
    known = before["macs"] is not None and after["macs"] is not None
    return {
        "params": {"before": before["params"], "after": after["params"]},
        "macs": {
            "before": before["macs"],
            "after": after["macs"],
            "ratio": round(before["macs"] / after["macs"], 3) if known and after["macs"] else None,
            "input_shapes": before["input_shapes"],
            "shapes_from": "model" if shapes is None else "inputs",
            "unknown": before["macs_unknown"],
        },
        "size_bytes": {"before": Path(src).stat().st_size, "after": Path(out).stat().st_size},
    }
