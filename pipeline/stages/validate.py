"""The ``validate`` stage: numerical parity (and a task metric) of the current model vs the reference.

It compares the current artifact (an ONNX model, run on ONNX Runtime, or a TensorRT engine, run
by ``pipeline.backends.tensorrt``) with ``ctx.reference`` (the pipeline's first ONNX model, or a
model given on the command line) on the validation data, and passes the model on unchanged.
Gates: ``parity`` (every element within ``atol + rtol * |ref|``; ``elementwise = false`` keeps the
statistics but drops this gate, for compressed models whose logits move by design), ``cosine``
(every output's cosine similarity >= ``min_cosine``), with ``metric = "top1"`` ``top1`` (argmax
agreement >= ``min_top1``) and, where the data carries labels, ``accuracy_drop`` (reference minus
candidate accuracy <= ``max_accuracy_drop``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from trtforge.pipeline.artifact import Artifact, ArtifactKind, TensorSpec, sha256_file
from trtforge.pipeline.errors import ConfigError, InputError, StageError
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult
from trtforge.pipeline.validation.rule import Tolerance, limit_gate

DEFAULT_RANDOM_SAMPLES = 32


@dataclass(frozen=True)
class ValidateConfig:
    """Tolerances, task metric and data settings of a parity check."""

    atol: float = 1e-4
    rtol: float = 1e-3
    #: per-output tolerances: a table ``{output = {atol = .., rtol = ..}}`` or a TOML file with [outputs.NAME]
    tolerances: dict[str, Any] | Path | None = None
    metric: Literal["none", "top1"] = "none"
    min_top1: float = 0.99
    metric_output: str | None = None  # output the metric reads; default: the first output
    random_data: bool = False  # allow seeded random inputs when there is no validation data
    max_samples: int | None = None
    batch_size: int = 32
    threads: int | None = None
    seed: int = 0
    elementwise: bool = True  # gate on the element-wise tolerance (false: report it only)
    min_cosine: float | None = None  # gate: cosine similarity of every output
    max_accuracy_drop: float | None = None  # gate: label accuracy drop (fraction, e.g. 0.01), needs labels
    #: ``NAME:1x3x640x640``: sizes of dynamic inputs of random inputs (``build --shapes`` syntax)
    shapes: tuple[str, ...] = ()
    #: ``IN:OUT``: state input fed by the reference's output of the previous step (files are steps)
    state: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        Tolerance(self.atol, self.rtol)  # raises ValueError naming the bad key
        checks_left = (
            self.metric != "none" or self.min_cosine is not None or self.max_accuracy_drop is not None
        )
        if not self.elementwise and not checks_left:
            raise ValueError(
                "elementwise = false leaves nothing to check; set min_cosine, metric = 'top1' "
                "or max_accuracy_drop"
            )
        if self.max_accuracy_drop is not None and self.metric != "top1":
            raise ValueError("max_accuracy_drop needs metric = 'top1' (accuracy is computed on its output)")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        if self.max_accuracy_drop is not None and not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ValueError(f"max_accuracy_drop must be a fraction in [0, 1], got {self.max_accuracy_drop}")
        if not 0.0 <= self.min_top1 <= 1.0:
            raise ValueError(f"min_top1 must be in [0, 1], got {self.min_top1}")
        if self.batch_size < 1 or (self.max_samples is not None and self.max_samples < 1):
            raise ValueError("batch_size and max_samples must be >= 1")


@register_stage("validate")
class ValidateStage(Stage[ValidateConfig]):
    """Compare the current model with the pipeline's reference; the model passes through unchanged."""

    config_cls = ValidateConfig
    input_kinds: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.ONNX, ArtifactKind.ENGINE)
    output_kind: ClassVar[ArtifactKind | None] = None  # the model passes through
    smoke_run: ClassVar[bool] = False

    def requires(self, artifact: Artifact, ctx: StageContext) -> None:
        super().requires(artifact, ctx)
        if ctx.reference is None or ctx.reference.kind not in self.input_kinds:
            raise StageError(
                f"stage 'validate' needs an ONNX reference model; run it after export{self._after(ctx)}"
            )
        if ctx.data.validation is None and not self.config.random_data:
            raise InputError(
                "validate: no validation data; set validation_data in [pipeline] or pass --data "
                "(.npy/.npz/directory), or allow seeded random inputs with random_data = true / --random-data"
            )

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.pipeline.validation import feeds as fd
        from trtforge.pipeline.validation.parity import compare_models

        assert ctx.reference is not None
        cfg = self.config
        specs = _input_specs(ctx.reference, artifact)
        data = ctx.data.validation
        if data is not None:
            batches = fd.data_batches(
                data, specs, cfg.batch_size, cfg.max_samples, state=cfg.state, model=ctx.reference.path
            )
            wants_labels = cfg.metric == "top1" or cfg.max_accuracy_drop is not None
            labels = fd.load_labels(data, cfg.max_samples) if wants_labels else None
            if cfg.max_accuracy_drop is not None and labels is None:
                raise InputError(
                    f"{data}: max_accuracy_drop needs 'labels' in the validation data; add a labels array"
                )
            total = fd.sample_total(data, specs, cfg.max_samples)
        else:
            total = cfg.max_samples or DEFAULT_RANDOM_SAMPLES
            shapes = fd.explicit_shapes(cfg.shapes)
            try:
                batches = fd.random_batches(specs, total, cfg.batch_size, cfg.seed, shapes)
            except fd.UnknownShapeError as exc:
                raise fd.UnknownShapeError(f"validate: {ctx.reference.path}: {exc}") from exc
            labels = None
        report = compare_models(
            ctx.reference.path,
            artifact.path,
            batches,
            parity_options(cfg, random_data=data is None),
            labels=labels,
            progress=ctx.progress,
            total_samples=total,
        )
        metrics = {
            **report.to_dict(),
            "reference": str(ctx.reference.path),
            "backends": {"reference": _backend(ctx.reference), "candidate": _backend(artifact)},
            "data": str(data) if data else None,
        }
        return StageResult(artifact, metrics, modified=False, gates=_gates(report, cfg))

    def cache_inputs(self, ctx: StageContext) -> dict[str, str]:
        tol = self.config.tolerances
        if isinstance(tol, Path) and tol.is_file():
            return {"tolerances": sha256_file(tol)}
        return {}


def _gates(report: Any, cfg: ValidateConfig) -> tuple[Gate, ...]:
    """The report's gates, minus ``parity`` when not elementwise, plus cosine / accuracy-drop gates."""
    gates = [g for g in report.gates() if cfg.elementwise or g.name != "parity"]
    if cfg.min_cosine is not None:
        worst = min(report.outputs, key=lambda o: o.cosine)
        gates.append(
            limit_gate(
                "cosine",
                worst.cosine,
                at_least=cfg.min_cosine,
                detail=f"lowest cosine similarity {worst.cosine:.6f} on {worst.name!r}",
            )
        )
    if cfg.max_accuracy_drop is not None and report.accuracy is not None:
        acc = report.accuracy
        gates.append(
            limit_gate(
                "accuracy_drop",
                acc.drop,
                at_most=cfg.max_accuracy_drop,
                detail=f"label accuracy {acc.reference:.4f} -> {acc.candidate:.4f}",
            )
        )
    return tuple(gates)


def _input_specs(reference: Artifact, candidate: Artifact) -> Sequence[TensorSpec]:
    """What the data must hold: the reference's inputs; an engine's from its metadata (no TensorRT)."""
    if reference.iospec is not None:
        return reference.iospec.inputs
    from trtforge.pipeline.backends.tensorrt import engine_input_specs

    dtypes = {t.name: t.dtype for t in candidate.iospec.inputs} if candidate.iospec else None
    return engine_input_specs(reference.path, dtypes)


def _backend(artifact: Artifact) -> str:
    return "tensorrt" if artifact.kind == ArtifactKind.ENGINE else "onnxruntime"


def parity_options(cfg: ValidateConfig, random_data: bool) -> Any:
    """The ``ParityOptions`` of a ``ValidateConfig`` (tolerance file read here)."""
    from trtforge.pipeline.validation.parity import ParityOptions, read_tolerances, tolerances_from_table

    default = Tolerance(cfg.atol, cfg.rtol)
    if isinstance(cfg.tolerances, Path):
        tolerances = read_tolerances(cfg.tolerances, default)
    elif isinstance(cfg.tolerances, dict):
        tolerances = tolerances_from_table(cfg.tolerances, default, "validate.tolerances")
    elif cfg.tolerances is None:
        tolerances = tolerances_from_table({}, default, "validate.tolerances")
    else:
        raise ConfigError(f"validate.tolerances: expected a table or a TOML path, got {cfg.tolerances!r}")
    return ParityOptions(
        tolerances=tolerances,
        metric=cfg.metric,
        min_top1=cfg.min_top1,
        metric_output=cfg.metric_output,
        threads=cfg.threads,
        random_data=random_data,
    )
