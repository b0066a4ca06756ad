"""The ``convert_fp16`` stage: half precision in the ONNX graph, with FP32 islands.

Overflow-prone ops (normalisations, Softmax, reductions, exp/log/pow) stay FP32; with
calibration data, so does every node whose output exceeded the FP16 range on it. This is how
FP16 reaches TensorRT 11 (no precision flags: the graph's types decide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from trtforge.calibration.errors import CalibrationError
from trtforge.calibration.fp16 import FP32_OPS
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.errors import InputError, TrtforgeError, first_line
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Stage, StageContext, StageResult


@dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True
    fp32_ops: tuple[str, ...] = FP32_OPS
    fp32_nodes: tuple[str, ...] = ()
    calibration: str | None = None  # data to find values outside the FP16 range (default: pipeline's)
    num_samples: int | None = 256
    batch_size: int = 32
    overflow_margin: float = 0.5
    #: ``NAME:1x3x640x640``: sizes of dynamic inputs where no data gives them (``build --shapes`` syntax)
    shapes: tuple[str, ...] = ()
    #: ``IN:OUT``: state input fed by the previous step's output (streaming models; files are steps)
    state: tuple[str, ...] = ()
    #: fidelity floor against the FP32 model on the validation (else calibration) data; None: the
    #: default floor (pipeline.validation.fidelity.DEFAULT_BUDGET), "none": measure without a gate
    accuracy_budget: str | None = None

    def __post_init__(self) -> None:
        from trtforge.pipeline.validation.fidelity import budget_terms

        budget_terms(self.accuracy_budget)  # a bad term is a config error now, not after converting
        if not 0.0 < self.overflow_margin <= 1.0:
            raise ValueError(f"overflow_margin must be in (0, 1], got {self.overflow_margin}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@register_stage("convert_fp16")
class ConvertFp16Stage(Stage[Fp16Config]):
    """FP16 graph with FP32 islands."""

    config_cls = Fp16Config

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        cfg = self.config
        calib = cfg.calibration or (str(ctx.data.calibration) if ctx.data.calibration else None)
        try:
            return run_fp16(artifact, ctx, Fp16Config(**{**cfg.__dict__, "calibration": calib}))
        except CalibrationError as exc:
            raise InputError(str(exc)) from exc


#: op types tried first when the FP16 model misses the fidelity floor: where FP16's 11-bit mantissa
#: and 6e-8 floor hurt most (a BatchNormalization's variance and epsilon, coordinates of Resize,
#: the inputs of saturating activations, divisions and roots)
PRECISION_SENSITIVE = (
    "BatchNormalization",
    "InstanceNormalization",
    "Resize",
    "Sigmoid",
    "HardSigmoid",
    "Div",
    "Sqrt",
    "Reciprocal",
    "Pow",
    "ConvTranspose",
)
#: at most this many op types are tried (one conversion and one fidelity check each)
MAX_ISLAND_TRIES = 12
_NEVER_ISLANDS = frozenset({"Cast", "Constant", "Identity", "If", "Loop", "Scan", "Shape", "Reshape"})


def run_fp16(artifact: Artifact, ctx: StageContext, cfg: Fp16Config) -> StageResult:
    """Convert, then check fidelity; below the floor, keep one more op type in FP32 at a time (the
    precision-sensitive ones first) until the floor holds, and say which (``fp32_islands``)."""
    from trtforge.calibration.fp16 import Fp16Options, convert_fp16
    from trtforge.calibration.sources import open_batches
    from trtforge.pipeline.graph.constants import lift_constant_weights
    from trtforge.pipeline.onnx_io import load_onnx, save_onnx
    from trtforge.pipeline.stages._fidelity import check_fidelity
    from trtforge.pipeline.validation.feeds import state_step

    assert artifact.iospec is not None
    # Constant-node weights become initializers first: the converter rounds initializers with care,
    # and a Constant kept FP32 by name would otherwise feed FP16 nodes unconverted
    model = lift_constant_weights(load_onnx(artifact.path)).model
    batches = None
    if cfg.calibration:
        step = state_step(artifact.path, cfg.state) if cfg.state else None
        batches = open_batches(
            cfg.calibration,
            artifact.iospec.input_specs(),
            cfg.batch_size,
            cfg.num_samples,
            state=cfg.state,
            step=step,
        )
    opts = Fp16Options(cfg.keep_io_types, tuple(cfg.fp32_ops), tuple(cfg.fp32_nodes), cfg.overflow_margin)
    result = convert_fp16(model, opts, batches, str(artifact.path))
    out_path = ctx.out_dir / "model.onnx"
    data_sets = (("validation", ctx.data.validation), ("calibration", cfg.calibration))

    def check() -> tuple[dict[str, Any], tuple[Any, ...]]:
        save_onnx(result.model, out_path)
        return check_fidelity(
            "convert_fp16",
            artifact.path,
            out_path,
            artifact.iospec.input_specs() if artifact.iospec else (),
            data_sets,
            cfg.accuracy_budget,
            state=cfg.state,
            batch_size=cfg.batch_size,
        )

    fidelity, gates = check()
    islands: dict[str, Any] = {"kept_fp32": [], "tried": []}
    if not all(gates):
        islands["reason"] = next(g.detail for g in gates if not g.passed)
        first = (result, fidelity, gates)
        present = {n.op_type for n in result.model.graph.node} | {n.op_type for n in model.graph.node}
        candidates = [op for op in present if op not in opts.fp32_ops and op not in _NEVER_ISLANDS]
        rank = {op: i for i, op in enumerate(PRECISION_SENSITIVE)}
        candidates.sort(key=lambda op: (rank.get(op, len(rank)), op))
        pinned = (*opts.fp32_nodes, *result.overflow_nodes)  # found once, on the calibration data
        for op in candidates[:MAX_ISLAND_TRIES]:
            trial = Fp16Options(opts.keep_io_types, (*opts.fp32_ops, op), tuple(pinned), opts.overflow_margin)
            islands["tried"].append(op)
            try:
                result = convert_fp16(model, trial, None, str(artifact.path))
                result.overflow_nodes.update(first[0].overflow_nodes)
                onnx.checker.check_model(result.model, full_check=True)  # ONNX Runtime is laxer
                fidelity, gates = check()
            except (
                CalibrationError,
                TrtforgeError,
                onnx.checker.ValidationError,
                onnx.shape_inference.InferenceError,
            ) as exc:
                # the converter's graph with this island is invalid (its casts around the island):
                # not a candidate; the reason is kept without the staging folder's path
                islands.setdefault("invalid", {})[op] = first_line(exc).replace(str(out_path), "model.onnx")
                continue
            if all(gates):
                islands["kept_fp32"] = [op]
                break
        else:
            result, fidelity, gates = first
            save_onnx(result.model, out_path)
    out = Artifact.from_onnx_path(out_path, artifact.provenance)
    metrics: dict[str, Any] = {
        **result.summary(),
        "precision": "fp16",
        "overflow_checked": cfg.calibration is not None,
        "size_fp32_bytes": artifact.path.stat().st_size,
        "size_fp16_bytes": out.path.stat().st_size,
        "fp32_islands": islands,
        **fidelity,
    }
    return StageResult(out, metrics, modified=True, gates=gates)
