"""``export``: a PyTorch model -> one ONNX file, checked for parity against torch.

Model sources (see :func:`load_torch_model`):

- ``model.pt2``: a ``torch.export`` ExportedProgram (``torch.export.load``); it knows its input
  names, dtypes and shapes (a dim it traced as symbolic is dynamic).
- a TorchScript file (``torch.jit.load``; any other suffix): knows its input names, not shapes.
- ``package.module:factory``: ``factory()`` returns an ``nn.Module``; ``weights`` (a state_dict
  file) is loaded into it strictly. Knows its input names (``forward``'s parameters).

Shapes the model does not know come from ``inputs = ["x:1x1x8x8"]`` (``--input``). The batch dim
(axis 0) is dynamic and named ``batch`` unless ``static = true``.

Exporters: ``exporter = "auto"`` tries the dynamo exporter (``torch.onnx.export(dynamo=True)``,
opset >= 18 only) and falls back to the TorchScript exporter (``dynamo=False``); the one used is
the metric ``exporter``. ``do_constant_folding = false`` keeps the graph as the model wrote it,
BatchNormalization included: the dynamo exporter cannot honour that flag (its optimizer always
folds constants and fuses BN into Conv, and ``optimize=False`` leaves the shape arithmetic of
BN's decomposition unfolded), so "auto" then tries the TorchScript exporter first (eval mode,
``do_constant_folding=False`` keeps every BN node) and falls back to dynamo with ``optimize=False``.
An ExportedProgram reaches the TorchScript exporter by tracing ``program.module()``.
``opset`` defaults to 18, the oldest the dynamo exporter emits (its down-conversion to 17 fails
or yields invalid ReduceMean nodes on onnx 1.23); an opset below 18 selects the TorchScript
exporter. The exporters live in ``_torch_onnx.py``, model loading in ``_torch_source.py``.

Checks: onnx checker and shape inference (as postconditions), then ONNX Runtime vs torch on
seeded random inputs (or the pipeline's calibration data), under the one parity rule of
``pipeline.validation.rule``: metrics ``max_abs_err`` and ``max_rel_err`` (``|a-b| / max(|b|, 1e-12)``)
and ``parity`` (the keys every stage's self-check reports), gate ``export_parity``:
``|a-b| <= atol + rtol*|b|`` on every element (``b``: torch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from trtforge.pipeline.artifact import Artifact, ArtifactKind
from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import ConfigError, InputError, StageError
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult
from trtforge.pipeline.stages._torch_onnx import DYNAMO_MIN_OPSET, ExportJob, export_onnx
from trtforge.pipeline.stages._torch_source import TorchModel, load_torch_model, torch_artifact
from trtforge.pipeline.validation.rule import ParityCheck
from trtforge.pipeline.validation.selfcheck import SelfCheck

__all__ = [
    "ExportConfig",
    "ExportStage",
    "TorchModel",
    "load_torch_model",
    "resolve_shapes",
    "torch_artifact",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    inputs: tuple[str, ...] = ()  # "NAME:1x3x224x224" for inputs whose shape the model does not know
    outputs: tuple[str, ...] = ()  # output names; default "output" (one) or "output_0", "output_1", ...
    static: bool = False  # keep the batch dim fixed (to the --input batch, else 1)
    opset: int = 18
    do_constant_folding: bool = True
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"
    atol: float = 1e-4
    rtol: float = 0.0
    parity_batch: int = 3  # samples in the parity check (dynamic batch only)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``inputs`` parsed: name -> shape."""
        return dict(parse_input(text) for text in self.inputs)

    @property
    def parity_check(self) -> ParityCheck:
        """The check against torch: one batch of ``parity_batch`` samples, of the calibration data when
        the pipeline has some, else seeded random (a static batch replaces ``parity_batch``)."""
        n = self.parity_batch
        return ParityCheck(
            self.atol, self.rtol, data=("calibration",), batch_size=n, batches=1, random_batch=n
        )

    def __post_init__(self) -> None:
        names = [parse_input(text)[0] for text in self.inputs]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"export: input {twice!r} given twice in inputs; give each input once")
        if not 7 <= self.opset <= 23:
            raise ConfigError(f"export: opset {self.opset} is out of range; use 7..23 (default 18)")
        if self.exporter == "dynamo" and self.opset < DYNAMO_MIN_OPSET:
            raise ConfigError(
                f"export: the dynamo exporter emits opset >= 18, not {self.opset}; "
                'use opset >= 18 or exporter = "torchscript"'
            )
        if self.atol < 0 or self.rtol < 0 or self.parity_batch < 1:
            raise ConfigError("export: atol and rtol must be >= 0 and parity_batch >= 1")


def parse_input(text: str) -> tuple[str, tuple[int, ...]]:
    """``"x:1x3x224x224"`` -> ``("x", (1, 3, 224, 224))``; ``ConfigError`` otherwise."""
    name, sep, shape = text.rpartition(":")
    try:
        dims = tuple(int(d) for d in shape.lower().split("x"))
    except ValueError:
        dims = ()
    if not sep or not name or not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"export: input {text!r} is not of the form NAME:1x3x224x224 (positive dims)")
    return name, dims


# ---------------------------------------------------------------------------------------------- stage


@register_stage("export")
class ExportStage(Stage[ExportConfig]):
    config_cls = ExportConfig
    input_kinds = (ArtifactKind.TORCH,)

    def requires(self, artifact: Artifact, ctx: StageContext) -> None:
        if artifact.kind == ArtifactKind.ONNX:
            raise InputError(
                f"{artifact.path}: is already an ONNX model; nothing to export (drop the export stage)"
            )
        super().requires(artifact, ctx)

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.pipeline.backends.onnxruntime import OrtRunner
        from trtforge.pipeline.onnx_io import save_onnx

        cfg = self.config
        source = next((p for p in artifact.provenance if p.get("source") == "torch"), {})
        model = load_torch_model(str(source.get("model", artifact.path)), source.get("weights"))
        shapes = resolve_shapes(model, cfg)
        feeds, data_kind = _parity_feeds(model, shapes, cfg, ctx)
        ref = _torch_outputs(model, [feeds[n] for n in model.names])
        out_names = list(cfg.outputs) or _output_names(len(ref))
        if len(out_names) != len(ref):
            raise ConfigError(
                f"export: outputs names {len(out_names)} outputs but the model returns "
                f"{len(ref)}; give one name per output"
            )
        batch = next(iter(feeds.values())).shape[0]
        batched = [n for n, r in zip(out_names, ref, strict=True) if r.ndim and r.shape[0] == batch]
        job = ExportJob(
            model,
            _example_args(model, shapes, cfg),
            out_names,
            batched,
            cfg.opset,
            cfg.static,
            cfg.do_constant_folding,
            cfg.exporter,
        )
        start = time.perf_counter()
        proto, exporter, fallback = export_onnx(job)
        export_s = time.perf_counter() - start
        path = save_onnx(proto, ctx.out_dir / "model.onnx")
        try:
            got = OrtRunner(path).load().run(feeds, out_names)
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidArgument types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise StageError(
                f"stage 'export': ONNX Runtime cannot run the {exporter} export on the parity "
                f"inputs ({first}){self._after(ctx)}"
            ) from exc
        gate, errs = _compare(ref, [got[n] for n in out_names], cfg, out_names, data_kind)
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        metrics = {
            "exporter": exporter,
            "opset": opset,
            "export_s": round(export_s, 3),
            **errs,
            "parity_data": data_kind,
            "parity_batch": int(batch),
            "dynamic_batch": not cfg.static,
            "constant_folding": cfg.do_constant_folding,
            "nodes": len(proto.graph.node),
            "batchnorm_nodes": sum(n.op_type == "BatchNormalization" for n in proto.graph.node),
        }
        if fallback:
            metrics["exporter_fallback"] = fallback
        log.info("export: %s exporter, %.2fs, max abs err %.3g", exporter, export_s, errs["max_abs_err"])
        return StageResult(Artifact.from_onnx_path(path), metrics, modified=True, gates=(gate,))


def _output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def resolve_shapes(model: TorchModel, cfg: ExportConfig) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes (axis 0 = batch) from the model and ``inputs``; errors name the fix."""
    listed = ", ".join(repr(n) for n in model.names) or "none"
    for name in cfg.shapes:
        if name not in model.names:
            raise InputError(f"{model.source}: input {name!r} not found; model inputs are: {listed}")
    shapes = {}
    for name in model.names:
        known, given = model.shapes.get(name), cfg.shapes.get(name)
        if model.kind == "exported" and not cfg.static and known and known[0] is not None:
            raise InputError(
                f"{model.source}: the program was exported with a fixed batch of {known[0]} for input "
                f"{name!r}; pass --static (static = true) or re-export with dynamic_shapes (torch.export.Dim)"
            )
        if given is not None:
            if known is not None and (
                len(known) != len(given)
                or any(k is not None and k != g for k, g in zip(known, given, strict=True))
            ):
                raise InputError(
                    f"{model.source}: input {name!r} is {_fmt(known)} in the model, not "
                    f"{_fmt(given)}; fix --input {name}:..."
                )
            shapes[name] = given
        elif known is not None and all(d is not None for d in known[1:]):
            shapes[name] = (known[0] or 1, *(int(d) for d in known[1:] if d is not None))
        else:
            raise InputError(
                f"{model.source}: the shape of input {name!r} is not known; pass "
                f'--input {name}:1x3x224x224 (inputs = ["{name}:..."] in the config)'
            )
    return shapes


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _parity_feeds(
    model: TorchModel, shapes: Mapping[str, tuple[int, ...]], cfg: ExportConfig, ctx: StageContext
) -> tuple[dict[str, np.ndarray], str]:
    """Parity inputs: the first samples of the calibration data when set, else seeded random."""
    from trtforge.common.tensors import TensorSpec

    check = cfg.parity_check
    if cfg.static:
        batch = shapes[model.names[0]][0]
        check = replace(check, batch_size=batch, random_batch=batch)
    specs = [
        TensorSpec(n, model.dtypes.get(n, "float32"), (shapes[n][0] if cfg.static else None, *shapes[n][1:]))
        for n in model.names
    ]
    source, feeds = check.feeds(specs, {"calibration": ctx.data.calibration})
    feed = next(feeds, None)
    if feed is None:
        raise InputError(f"{ctx.data.calibration}: holds no samples; pass non-empty calibration data")
    return feed, source


def _random(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.floating):
        return rng.standard_normal(shape).astype(dt)
    if dt == np.bool_:
        return rng.integers(0, 2, shape).astype(dt)
    return rng.integers(0, 4, shape).astype(dt)


def _example_args(model: TorchModel, shapes: Mapping[str, tuple[int, ...]], cfg: ExportConfig) -> list[Any]:
    """Export example inputs: batch >= 2 when dynamic (size 1 may be specialised), else the static batch."""
    torch = require("torch")
    rng = np.random.default_rng(1)
    out = []
    for n in model.names:
        shape = shapes[n] if cfg.static else (max(2, shapes[n][0]), *shapes[n][1:])
        out.append(torch.from_numpy(_random(shape, model.dtypes.get(n, "float32"), rng)))
    return out


def _torch_outputs(model: TorchModel, inputs: list[np.ndarray]) -> list[np.ndarray]:
    torch = require("torch")
    fn = model.module.module() if model.kind == "exported" else model.module
    with torch.no_grad():
        out = fn(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    flat: list[np.ndarray] = []
    _flatten(out, flat, model.source)
    return flat


def _flatten(obj: Any, flat: list[np.ndarray], source: str) -> None:
    torch = require("torch")
    if isinstance(obj, torch.Tensor):
        flat.append(obj.detach().cpu().numpy())
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _flatten(v, flat, source)
    elif isinstance(obj, Mapping):
        for v in obj.values():
            _flatten(v, flat, source)
    else:
        raise InputError(f"{source}: the model returns a {type(obj).__name__}; ONNX outputs must be tensors")


def _compare(
    ref: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    cfg: ExportConfig,
    names: Sequence[str] | None = None,
    source: str = "random",
) -> tuple[Gate, dict[str, Any]]:
    """Torch's outputs (``ref``) against ONNX Runtime's (``got``) under the parity rule: the gate, and
    the metrics ``max_abs_err``, ``max_rel_err`` and ``parity``."""
    check = SelfCheck(cfg.parity_check, source)
    keys = list(names) if names is not None else _output_names(len(ref))
    check.update(dict(zip(keys, ref, strict=True)), dict(zip(keys, got, strict=True)))
    result = check.result()
    errs = {"max_abs_err": result.max_abs, "max_rel_err": result.max_rel, "parity": result.to_dict()}
    return result.gate("export_parity", " vs torch"), errs
