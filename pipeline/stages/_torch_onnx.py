"""The two torch exporters behind the export stage, tried in a documented order.

``auto``: the dynamo exporter (``torch.onnx.export(dynamo=True)``, opset >= 18 only) first, the
TorchScript exporter (``dynamo=False``) as a fallback. With constant folding off the order flips:
the dynamo exporter has no way to keep BatchNormalization (its optimizer folds constants and fuses
BN into Conv; ``optimize=False`` leaves the shape arithmetic of BN's decomposition unfolded), while
the TorchScript exporter in eval mode with ``do_constant_folding=False`` keeps every BN node.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import InputError
from trtforge.pipeline.stages._torch_source import TorchModel

log = logging.getLogger(__name__)

DYNAMO_MIN_OPSET = 18
BATCH = "batch"
#: torch logs a warning per missing torchvision op on every dynamo export; not about the user's model
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration",)


@dataclass
class ExportJob:
    """What to export and how; ``exporter`` is "auto", "dynamo" or "torchscript"."""

    model: TorchModel
    args: list[Any]  # example tensors
    out_names: list[str]
    batched_outputs: list[str]  # outputs whose axis 0 is the batch
    opset: int
    static: bool
    constant_folding: bool
    exporter: str


def _order(job: ExportJob) -> list[str]:
    if job.exporter != "auto":
        return [job.exporter]
    if job.opset < DYNAMO_MIN_OPSET:
        return ["torchscript"]
    return ["dynamo", "torchscript"] if job.constant_folding else ["torchscript", "dynamo"]


def export_onnx(job: ExportJob) -> tuple[Any, str, str]:
    """(ModelProto, exporter used, why earlier exporters failed); every exporter failing is InputError."""
    errors: list[str] = []
    for name in _order(job):
        try:
            with _quiet_torch():
                proto = _dynamo(job) if name == "dynamo" else _torchscript(job)
        except Exception as exc:  # the next exporter is tried; the reason is kept as a metric
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            errors.append(f"{name}: {type(exc).__name__}: {first}")
            log.warning("export: the %s exporter failed (%s)", name, errors[-1])
            continue
        if not job.static:
            _rename_batch(proto)
        return proto, name, "; ".join(errors)
    raise InputError(
        f"{job.model.source}: cannot be exported to ONNX ({'; '.join(errors)}); "
        "rerun with --debug for details"
    )


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Keep torch's export chatter (warnings, per-op log lines) out of the user's output; log it at debug."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in saved:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            log.debug("torch export warning: %s", w.message)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _dynamo(job: ExportJob) -> Any:
    torch = require("torch")
    require("onnxscript", "the dynamo ONNX exporter")
    model = job.model
    dynamic = None
    if not job.static:
        batch = torch.export.Dim(BATCH)
        dynamic = {n: {0: batch} for n in model.names}
    src, args = model.module, tuple(job.args)
    if model.kind == "exported":
        # the program is used as saved when its batch dims are already what was asked, else re-exported
        symbolic = all(model.shapes.get(n, (1,))[:1] == (None,) for n in model.names)
        if symbolic == job.static:
            src = torch.export.export(model.module.module(), args, dynamic_shapes=dynamic)
        args, dynamic = (), None
    program = torch.onnx.export(
        src,
        args,
        dynamo=True,
        dynamic_shapes=dynamic,
        opset_version=job.opset,
        input_names=model.names,
        output_names=job.out_names,
        optimize=job.constant_folding,
        verbose=False,
    )
    return program.model_proto


def _torchscript(job: ExportJob) -> Any:
    import onnx

    torch = require("torch")
    model = job.model
    module = model.module
    if model.kind == "exported":
        base: Any = torch.nn.Module

        class Traceable(base):  # type: ignore[misc]  # torch.nn.Module is untyped here
            """``program.module()`` refuses ``train()``, which the TorchScript exporter calls."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *args: Any) -> Any:
                return self.inner(*args)

            def train(self, mode: bool = True) -> Traceable:
                return self

        module = Traceable(model.module.module())
    axes = None if job.static else {n: {0: BATCH} for n in [*model.names, *job.batched_outputs]}
    with tempfile.TemporaryDirectory(prefix="trtforge-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module,
            tuple(job.args),
            str(path),
            dynamo=False,
            input_names=model.names,
            output_names=job.out_names,
            opset_version=job.opset,
            do_constant_folding=job.constant_folding,
            dynamic_axes=axes,
        )
        return onnx.load(str(path))


def _rename_batch(proto: Any) -> None:
    """Name the dynamic batch dim ``batch`` everywhere (the dynamo exporter calls it ``s0``, ``s77``...)."""
    graph = proto.graph
    old = {
        i.type.tensor_type.shape.dim[0].dim_param
        for i in graph.input
        if i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_param
    }
    old.discard(BATCH)
    if not old:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in old:
                dim.dim_param = BATCH
