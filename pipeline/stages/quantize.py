"""The ``quantize`` stage: INT8 post-training quantization (explicit Q/DQ per target), or FP16.

Adapts :mod:`calibration`: calibration data from ``calibration`` (or ``ctx.data.calibration``),
validation data from ``validation`` (or ``ctx.data.validation``). Writes ``model.onnx``,
``calibration_table.json``, ``calibration.cache`` (legacy TensorRT 8/10) and
``ranges_worst.png`` into ``ctx.out_dir``. Calibration errors become ``InputError`` (exit 2);
a missed accuracy budget is a failed gate (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from trtforge.calibration.errors import CalibrationError
from trtforge.pipeline.artifact import Artifact, sha256_file
from trtforge.pipeline.errors import InputError
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult


@dataclass(frozen=True)
class PreprocessConfig:
    """How image-directory calibration data becomes input tensors."""

    size: tuple[int, ...] | None = None  # [height, width]; default: the model input's
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["RGB", "BGR", "L"] = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class QuantizeConfig:
    precision: Literal["int8", "fp16"] = "int8"
    target: Literal["onnxruntime-cpu", "tensorrt"] = "onnxruntime-cpu"
    method: Literal["minmax", "entropy", "percentile", "mse"] = "percentile"
    percentile: float = 99.99
    calibration: str | None = None  # .npy/.npz/dir, image dir, or package.module:function
    preprocess: PreprocessConfig | None = None
    num_samples: int | None = None  # None: all the data; more than the data holds is an error
    batch_size: int = 32
    accuracy_budget: str | None = None  # e.g. "top1:0.5%", "cosine:0.999", "maxabs@boxes:0.5"
    validation: str | None = None
    validation_samples: int = 512
    sensitivity: Literal["auto", "always", "never"] = "auto"
    mixed_range_ratio: float = 32.0
    trt_version: str = "10.3.0"  # header of the legacy calibration cache
    threads: int | None = None
    reduce_range: bool = False
    measure_latency: bool = True
    #: largest latency ratio INT8/FP32 accepted for the onnxruntime-cpu target (stages/_latency.py)
    max_latency_ratio: float = 1.0
    #: a result with fewer of its weighted layers quantized is an FP32 copy in disguise: gate fails
    min_quantized_fraction: float = 0.1
    plot: bool = True
    #: ``NAME:1x3x640x640``: sizes of dynamic inputs where no data gives them (``build --shapes`` syntax)
    shapes: tuple[str, ...] = ()
    #: ``IN:OUT``: state input fed by the previous step's output (streaming models; files are steps)
    state: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.batch_size < 1 or self.validation_samples < 1:
            raise ValueError("batch_size and validation_samples must be >= 1")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if not 0.0 <= self.min_quantized_fraction <= 1.0:
            raise ValueError(f"min_quantized_fraction must be in [0, 1], got {self.min_quantized_fraction}")
        if not self.max_latency_ratio > 0:
            raise ValueError(f"max_latency_ratio must be > 0, got {self.max_latency_ratio}")
        if self.mixed_range_ratio <= 1.0:
            raise ValueError("mixed_range_ratio must be > 1")
        from trtforge.pipeline.validation.fidelity import budget_terms

        budget_terms(self.accuracy_budget)  # None: the default floor; "none": measured, not gated

    @property
    def explicit_budget(self) -> bool:
        """Whether the user set a budget of their own (not the default floor, not "none")."""
        return bool(self.accuracy_budget) and str(self.accuracy_budget).strip().lower() != "none"


@register_stage("quantize")
class QuantizeStage(Stage[QuantizeConfig]):
    """INT8 Q/DQ for ``target`` with an accuracy-aware fallback, or FP16 with FP32 islands."""

    config_cls = QuantizeConfig
    smoke_run: ClassVar[bool] = True

    def requires(self, artifact: Artifact, ctx: StageContext) -> None:
        super().requires(artifact, ctx)
        if self.config.precision == "int8" and self._calibration(ctx) is None:
            raise InputError(
                "quantize: no calibration data; pass --calibration-data or set calibration_data in "
                "[pipeline] (.npy/.npz/dir, image dir with [quantize.preprocess], or module:function)"
            )
        if self.config.explicit_budget and self._validation(ctx) is None:
            raise InputError("quantize: an accuracy budget needs validation data; pass --validation-data")

    def _calibration(self, ctx: StageContext) -> str | None:
        if self.config.calibration:
            return self.config.calibration
        return str(ctx.data.calibration) if ctx.data.calibration else None

    def _validation(self, ctx: StageContext) -> str | None:
        if self.config.validation:
            return self.config.validation
        return str(ctx.data.validation) if ctx.data.validation else None

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        try:
            if self.config.precision == "fp16":
                from trtforge.pipeline.stages.convert_fp16 import Fp16Config, run_fp16

                cfg = Fp16Config(
                    calibration=self._calibration(ctx),
                    batch_size=self.config.batch_size,
                    shapes=self.config.shapes,
                    state=self.config.state,
                    accuracy_budget=self.config.accuracy_budget,
                )
                return run_fp16(artifact, ctx, cfg)
            return run_int8(artifact, ctx, self._calibration(ctx) or "", self._validation(ctx), self.config)
        except CalibrationError as exc:
            raise InputError(str(exc)) from exc

    def cache_inputs(self, ctx: StageContext) -> dict[str, str]:
        out = {}
        for key, value in (("calibration", self._calibration(ctx)), ("validation", self._validation(ctx))):
            p = Path(value) if value else None
            if p is not None and p.is_file() and p.suffix == ".txt":  # a list: the files it names too
                from trtforge.calibration.data import data_files

                out[key] = ",".join(sha256_file(f) for f in [p, *data_files(p)])
            elif p is not None and p.is_file():
                out[key] = sha256_file(p)
            elif p is not None and p.is_dir():  # subdirectories too: sequences of step files
                out[key] = ",".join(sha256_file(f) for f in sorted(p.rglob("*")) if f.is_file())
        return out


def gate_from_fit(fit: Any) -> Gate:
    return Gate(
        "accuracy_budget",
        bool(fit.final),
        fit.final.error,
        None,
        "; ".join(f"{k}={v['value']:.4g}" for k, v in fit.final.to_dict().items() if isinstance(v, dict)),
    )


def _preprocess(cfg: QuantizeConfig) -> Any:
    from trtforge.calibration.sources import ImagePreprocess

    p = cfg.preprocess
    if p is None:
        return None
    size = tuple(p.size) if p.size else None
    if size is not None and len(size) != 2:
        raise InputError(f"quantize.preprocess.size: expected [height, width], got {list(size)}")
    return ImagePreprocess(size, p.layout, p.color, p.scale, tuple(p.mean), tuple(p.std))


def run_int8(
    artifact: Artifact, ctx: StageContext, calib: str, validation: str | None, cfg: QuantizeConfig
) -> StageResult:
    from trtforge.calibration.quantizer import QuantizeOptions, calibrate
    from trtforge.calibration.sources import open_batches
    from trtforge.pipeline.onnx_io import load_onnx
    from trtforge.pipeline.validation.feeds import state_step

    assert artifact.iospec is not None
    model = load_onnx(artifact.path)
    specs = artifact.iospec.input_specs()
    opts = QuantizeOptions(
        target=cfg.target,
        method=cfg.method,
        percentile=cfg.percentile,
        num_samples=cfg.num_samples,
        mixed_range_ratio=cfg.mixed_range_ratio,
        threads=cfg.threads,
        reduce_range=cfg.reduce_range,
    )
    step = state_step(artifact.path, cfg.state) if cfg.state else None
    batches = open_batches(
        calib, specs, cfg.batch_size, cfg.num_samples, _preprocess(cfg), state=cfg.state, step=step
    )
    cal = calibrate(model, batches, opts, str(artifact.path), ctx.progress)
    metrics: dict[str, Any] = {}
    gates: tuple[Gate, ...] = ()
    if validation is not None:
        qmodel, extra, gates = _with_validation(cal, model, specs, validation, cfg, ctx, artifact.path)
        metrics.update(extra)
    else:
        qmodel = cal.build()
    metrics.update(_write_outputs(cal, qmodel, ctx.out_dir, cfg))
    if validation is None:
        from trtforge.pipeline.contracts import is_array_data
        from trtforge.pipeline.stages._fidelity import check_fidelity

        # no validation data: the calibration data (the ranges were fit on it: a weaker check, said so)
        sets = (("calibration", calib if is_array_data(calib) else None), ("validation", None))
        fidelity, gates = check_fidelity(
            "quantize",
            artifact.path,
            ctx.out_dir / "model.onnx",
            specs,
            sets,
            cfg.accuracy_budget,
            state=cfg.state,
            batch_size=cfg.batch_size,
        )
        metrics.update(fidelity)
    quantized, total = quantized_layers(qmodel)
    metrics["quantized_layers"] = {"quantized": quantized, "total": total}
    if cfg.min_quantized_fraction > 0 and total:
        from trtforge.pipeline.validation.rule import limit_gate

        share = quantized / total
        detail = (
            f"{quantized} of {total} layers with weights are quantized"
            + ("; the result is an FP32 copy" if quantized == 0 else "")
            + f" (floor {cfg.min_quantized_fraction:.0%}): the rest fell back to float or could not be "
            "quantized; loosen --accuracy-budget, or pass --min-quantized-fraction 0 to accept it"
        )
        gates = (
            *gates,
            limit_gate("quantize_coverage", share, at_least=cfg.min_quantized_fraction, detail=detail),
        )
    sizes, timed = _size_and_latency(artifact.path, ctx.out_dir / "model.onnx", cfg, calib)
    metrics.update(sizes)
    out = Artifact.from_onnx_path(ctx.out_dir / "model.onnx", artifact.provenance)
    return StageResult(out, metrics, modified=True, gates=(*gates, *timed))


def _with_validation(
    cal: Any, model: Any, specs: Any, validation: str, cfg: QuantizeConfig, ctx: StageContext, src: Path
) -> tuple[Any, dict[str, Any], tuple[Gate, ...]]:
    from trtforge.calibration.budget import parse_budget
    from trtforge.calibration.data import load_extra
    from trtforge.calibration.sensitivity import fit_budget, run_model
    from trtforge.calibration.sources import open_batches
    from trtforge.pipeline.validation.feeds import state_step

    step = state_step(src, cfg.state) if cfg.state else None
    feeds = list(
        open_batches(validation, specs, cfg.batch_size, cfg.validation_samples, state=cfg.state, step=step)
    )
    reference = run_model(model, feeds, cfg.threads)
    n = len(next(iter(reference.values())))
    labels = load_extra(validation, "labels")
    labels = labels[:n] if labels is not None and len(labels) >= n else None
    # the user's budget drives the fallback search and is the gate; without one the search aims at
    # the default floor's cosine and the gate is the default fidelity floor ("none": no search, no gate)
    search = (
        str(cfg.accuracy_budget)
        if cfg.explicit_budget
        else ("cosine:0.0" if cfg.accuracy_budget else "cosine:0.99")
    )
    terms = parse_budget(search)
    fit = fit_budget(
        cal,
        terms,
        feeds,
        reference,
        labels,
        always_analyse=cfg.sensitivity == "always",
        fallback=cfg.sensitivity != "never",
        progress=ctx.progress,
    )
    out = run_model(fit.model, feeds, cfg.threads)
    metrics: dict[str, Any] = {
        "validation_samples": n,
        "budget": cfg.accuracy_budget,
        "budget_initial": fit.initial.to_dict(),
        "budget_final": fit.final.to_dict(),
        "fallback": fit.fallback,
        "fell_back": fit.fell_back,
        "sensitivity": dict(sorted(fit.sensitivity.items(), key=lambda kv: -kv[1])),
    }
    first = next(iter(reference))
    if labels is not None:
        from trtforge.calibration.budget import top1

        metrics["accuracy"] = {
            "fp32_top1": top1(reference[first], labels),
            "int8_top1": top1(out[first], labels),
        }
    from trtforge.pipeline.validation.fidelity import measure

    report = measure([(reference, out)], None if cfg.accuracy_budget is None else "none", "validation")
    metrics["fidelity"] = report.to_dict()
    if cfg.explicit_budget:
        gates: tuple[Gate, ...] = (gate_from_fit(fit),)
    else:
        gates = (report.gate("quantize_fidelity"),) if cfg.accuracy_budget is None else ()
    return fit.model, metrics, gates


def _write_outputs(cal: Any, qmodel: Any, out_dir: Path, cfg: QuantizeConfig) -> dict[str, Any]:
    from trtforge.calibration import cache, plots
    from trtforge.calibration.ortcheck import fusion_summary, optimized_op_counts
    from trtforge.calibration.quantizer import summary
    from trtforge.pipeline.onnx_io import save_onnx

    save_onnx(qmodel, out_dir / "model.onnx")
    extra = {"target": cal.plan.target, "weights_per_channel": cal.weight_amax()}
    cache.write_table(
        out_dir / "calibration_table.json",
        cache.table_dict(cal.amax, cal.ranges, cal.options.method, cal.stats.samples, extra),
    )
    cache.write_trt_cache(out_dir / "calibration.cache", cal.amax, cfg.trt_version, cal.options.method)
    metrics: dict[str, Any] = dict(summary(cal))
    if cal.plan.target == "onnxruntime-cpu":
        metrics["ort_optimized"] = fusion_summary(optimized_op_counts(qmodel))
    if cfg.plot:
        worst = plots.worst_tensors(cal.stats.tensors, cal.amax)
        png = plots.plot_histograms(
            out_dir / "ranges_worst.png", cal.stats.tensors, cal.amax, worst, cfg.method
        )
        metrics["ranges_plot"] = str(png.name) if png else None
        metrics["worst_tensors"] = worst
    return metrics


def _size_and_latency(
    fp32: Path, int8: Path, cfg: QuantizeConfig, calib: str | None = None
) -> tuple[dict[str, Any], tuple[Gate, ...]]:
    """Sizes, and the latency of the result against the input timed interleaved on a batch of the
    calibration data (else inputs of the sizes the model and --shapes fix); gated for the
    onnxruntime-cpu target, the one this machine runs (a TensorRT-target Q/DQ model is slower on
    ONNX Runtime CPU by design: its speed is TensorRT's)."""
    out: dict[str, Any] = {"size_fp32_bytes": fp32.stat().st_size, "size_int8_bytes": int8.stat().st_size}
    if not cfg.measure_latency:
        return out, ()
    from trtforge.pipeline.artifact import IOSpec
    from trtforge.pipeline.contracts import SmokeInputs, is_array_data
    from trtforge.pipeline.onnx_io import load_onnx
    from trtforge.pipeline.stages._latency import check_latency
    from trtforge.pipeline.validation.feeds import UnknownShapeError, explicit_shapes

    data = Path(calib) if calib and is_array_data(calib) else None
    inputs = SmokeInputs(data, explicit_shapes(cfg.shapes), cfg.state)
    specs = IOSpec.from_onnx(load_onnx(fp32, load_external=False)).inputs
    try:
        feed: dict[str, Any] | None = inputs.feed(specs, f"quantize: {fp32}", batch=cfg.batch_size)
        where, why = (f"a batch of {data.name}" if data else "the model's fixed sizes, random values"), ""
    except UnknownShapeError as exc:
        feed, where, why = None, "", str(exc)
    bound = cfg.max_latency_ratio if cfg.target == "onnxruntime-cpu" else None
    latency, gates = check_latency(
        "quantize", fp32, int8, feed, bound, shapes_from=where, why_not=why, iters=20
    )
    out.update(latency)
    rec = latency["latency_gate"]
    if "ratio" in rec:
        out["latency_ratio_int8_vs_fp32"] = rec["ratio"]
        out["latency_batch"] = rec["batch"]
    return out, gates


#: ops whose weight a quantized model reads through a DequantizeLinear
_WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def quantized_layers(model: Any) -> tuple[int, int]:
    """``(quantized, total)``: layers with a constant weight (Conv, ConvTranspose, Gemm, MatMul), and
    how many of them read it through a DequantizeLinear of an initializer (INT8 weights)."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    dq_of_init = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    consts = inits | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    total = quantized = 0
    for node in graph.node:
        if node.op_type not in _WEIGHTED or len(node.input) < 2:
            continue
        weight = node.input[1]
        if weight in dq_of_init:
            total += 1
            quantized += 1
        elif weight in consts:
            total += 1
    return quantized, total
