"""The ``prune`` stage: structural pruning on the ONNX graph (see ``pipeline.graph.pruning``).

Lossless removal of dead channels always runs first; then ``ratio`` of each dependency group
(or of all, with scope "global") goes by importance, rounded to multiples of ``round_to``; or a
reviewed ``plan`` is applied. Optional 2:4 sparsity, then optional label-free recovery by
distillation against the unpruned model on the calibration (or ``train_data``) inputs.
The plan is written beside the model as ``plan.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from pipeline.artifact import Artifact, IOSpec, sha256_file, sha256_model_files
from pipeline.errors import ConfigError, InputError
from pipeline.onnx_io import load_onnx, save_onnx
from pipeline.registry import register_stage
from pipeline.stage import Gate, Stage, StageContext, StageResult

log = logging.getLogger(__name__)


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

    def __post_init__(self) -> None:
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
        from pipeline.graph.pruning import PrunePlan, apply_plan, macs, plan_model
        from pipeline.graph.pruning.pruner import analyze_model, group_report

        cfg, src = self.config, str(artifact.path)
        model = load_onnx(artifact.path)
        specs = artifact.iospec.inputs if artifact.iospec else IOSpec.from_onnx(model).inputs
        ctx.progress("prune", 0, 4)
        if cfg.plan is not None:
            plan = PrunePlan.load(cfg.plan)
            az = analyze_model(model, src)
        else:
            feeds = self._stat_feeds(specs, ctx) if cfg.criterion == "activation" else None
            plan, az = plan_model(model, _request(cfg), feeds, src)
        summary = az.summary()
        if summary["prunable_groups"] == 0 and cfg.sparsity == "none":
            first = next((g for g in az.groups if g.reasons), None)
            why = f"; first reason: {first.reasons[0]}" if first else ""
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
        metrics.update(_size_metrics(model, pruned, artifact.path, out, macs))
        gates = self._report_parity(artifact.path, out, specs, ctx, metrics)
        if cfg.latency_runs:
            metrics["latency_ms"] = {
                "before": _latency(artifact.path, specs, cfg.latency_runs),
                "after": _latency(out, specs, cfg.latency_runs),
            }
        ctx.progress("prune", 4, 4)
        modified = plan.removed_units > 0 or masks is not None or cfg.recover
        spec = IOSpec.from_onnx(pruned)
        iospec = IOSpec(spec.inputs, spec.outputs, artifact.iospec.dim_ranges if artifact.iospec else {})
        new = Artifact(out, "onnx", sha256_model_files(out), iospec, artifact.provenance)
        return StageResult(new, metrics, modified, gates)

    def _stat_feeds(self, specs: Any, ctx: StageContext) -> list[dict[str, np.ndarray]]:
        from pipeline.validation.feeds import data_batches

        path = ctx.data.calibration or self.config.train_data
        if path is None:
            raise ConfigError("prune: criterion 'activation' needs calibration data; pass --calibration-data")
        return list(
            data_batches(
                path, specs, self.config.batch_size, self.config.batch_size * self.config.stat_batches
            )
        )

    def _sparsify(
        self, pruned: onnx.ModelProto, metrics: dict[str, Any]
    ) -> tuple[onnx.ModelProto, dict[str, np.ndarray] | None]:
        if self.config.sparsity != "2:4":
            return pruned, None
        from pipeline.graph.pruning import sparsity

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
        from pipeline.graph.recovery import RecoverySettings, distill
        from pipeline.validation.feeds import data_batches

        cfg = self.config
        path = self._train_path(ctx, required=True)
        assert path is not None
        batches = list(data_batches(path, specs, cfg.batch_size))
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
        from pipeline.backends.onnxruntime import random_feed

        cfg = self.config
        path = ctx.data.validation or ctx.data.calibration or cfg.train_data
        if path is not None:
            from pipeline.validation.feeds import data_batches

            feeds = list(data_batches(path, specs, cfg.batch_size, cfg.batch_size * cfg.stat_batches))
        else:
            feeds = [random_feed(specs, batch=4, seed=i) for i in range(2)]
        p = _parity(before, after, feeds)
        p["source"] = "data" if path is not None else "random"
        metrics["parity"] = p
        if not cfg.lossless:
            return ()
        passed = p["max_abs_diff"] <= cfg.lossless_atol
        detail = "" if passed else f"max abs diff {p['max_abs_diff']:.3g} > {cfg.lossless_atol:g}"
        return (Gate("prune_lossless_parity", passed, p["max_abs_diff"], cfg.lossless_atol, detail),)


def _request(cfg: PruneConfig) -> Any:
    from pipeline.graph.pruning import PlanRequest, PlanSettings

    settings = PlanSettings(
        ratio=0.0 if cfg.lossless else cfg.ratio,
        scope=cfg.scope,
        max_ratio_per_layer=cfg.max_ratio_per_layer,
        round_to=cfg.round_to,
        skip=cfg.skip,
        group_ratios=dict(cfg.group_ratios),
    )
    return PlanRequest(settings, cfg.criterion, lossless=True)


def _parity(before: Path, after: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    from pipeline.backends.onnxruntime import OrtOptions, OrtRunner

    opts = OrtOptions(graph_optimization="disable")
    a, b = OrtRunner(before, opts).load(), OrtRunner(after, opts).load()
    worst, agree, total = 0.0, 0, 0
    for feed in feeds:
        ya, yb = a.run(feed), b.run(feed)
        for name, ref in ya.items():
            if np.issubdtype(ref.dtype, np.floating):
                worst = max(worst, float(np.max(np.abs(ref - yb[name]))) if ref.size else 0.0)
        first = next(iter(ya))
        if ya[first].ndim == 2 and ya[first].shape[1] > 1:
            agree += int((ya[first].argmax(1) == yb[first].argmax(1)).sum())
            total += ya[first].shape[0]
    return {"max_abs_diff": worst, "top1_agreement": agree / total if total else None, "batches": len(feeds)}


def _latency(path: Path, specs: Any, runs: int) -> float:
    from pipeline.backends.onnxruntime import OrtOptions, OrtRunner, random_feed

    runner = OrtRunner(path, OrtOptions(intra_op_threads=1)).load()
    feed = random_feed(specs, batch=1)
    runner.run(feed)
    t0 = time.perf_counter()
    for _ in range(runs):
        runner.run(feed)
    return round((time.perf_counter() - t0) / runs * 1000, 4)


def _size_metrics(
    model: onnx.ModelProto, pruned: onnx.ModelProto, src: Path, out: Path, macs: Any
) -> dict[str, Any]:
    before, after = macs.count(model), macs.count(pruned)
    return {
        "params": {"before": before["params"], "after": after["params"]},
        "macs": {
            "before": before["macs"],
            "after": after["macs"],
            "ratio": round(before["macs"] / after["macs"], 3) if after["macs"] else None,
        },
        "size_bytes": {"before": Path(src).stat().st_size, "after": Path(out).stat().st_size},
    }
