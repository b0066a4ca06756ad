"""INT8 post-training quantization: prepare, calibrate (streamed), place Q/DQ per target, write.

:func:`calibrate` returns a :class:`Calibrated` whose :meth:`~Calibrated.build` writes the Q/DQ
model with any set of groups left in float; :mod:`calibration.sensitivity` uses that to keep
the accuracy budget.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.calibration import mixed as mixed_mod
from trtforge.calibration import placement, qdq
from trtforge.calibration.errors import CalibrationError, DataError
from trtforge.calibration.ranges import METHODS, weight_amax
from trtforge.calibration.stats import CalibrationStats, Progress, collect, float_tensors

log = logging.getLogger(__name__)

#: ops whose weights quantization works on (a refusal counts them in control-flow bodies)
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"})


@dataclass(frozen=True)
class QuantizeOptions:
    target: str = "onnxruntime-cpu"
    method: str = "percentile"
    percentile: float = 99.99
    num_samples: int | None = None  # None: every sample of the data; fewer available is an error
    bins: int = 2048
    mixed_range_ratio: float = 32.0
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    threads: int | None = None
    reduce_range: bool = False  # onnxruntime-cpu on CPUs without VNNI may want 7-bit activations
    all_tensors: bool = True  # collect every float tensor (legacy cache, FP16 islands), not only Q/DQ ones

    def __post_init__(self) -> None:
        if self.target not in placement.TARGETS:
            raise CalibrationError(
                f"unknown target {self.target!r}; valid targets are: {', '.join(placement.TARGETS)}"
            )
        if self.method not in METHODS:
            raise CalibrationError(
                f"unknown range method {self.method!r}; valid methods are: {', '.join(METHODS)}"
            )
        if not 0.0 < self.percentile <= 100.0:
            raise CalibrationError(f"percentile must be in (0, 100], got {self.percentile}")


@dataclass
class Calibrated:
    """A prepared float model with its plan and measured ranges."""

    model: onnx.ModelProto
    plan: placement.Placement
    stats: CalibrationStats
    options: QuantizeOptions
    amax: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    mixed: dict[str, str]
    forced_float: set[str] = field(default_factory=set)  # groups kept float by rule (mixed ranges)
    source: str = "model"
    excluded: dict[str, str] = field(default_factory=dict)  # group -> why the library cannot take it

    @property
    def groups(self) -> list[str]:
        return [g for g in self.plan.nodes if g not in self.forced_float and g not in self.excluded]

    def build(self, skip: Collection[str] = ()) -> onnx.ModelProto:
        """The Q/DQ model with groups in ``skip`` (and the forced ones) left float.

        ``onnxruntime-cpu``: groups ONNX Runtime's quantizer fails on are found on the first build
        that meets them, left float from then on and listed in ``excluded`` with the reason; a
        model none of whose groups it can quantize is refused (``CalibrationError``)."""
        skipped = set(skip) | self.forced_float
        if self.plan.target == "tensorrt":
            return qdq.write_tensorrt(self.model, self.plan, self.amax, skipped)
        had = len(self.excluded)
        out = qdq.write_onnxruntime(
            self.model,
            self.plan,
            self.ranges,
            skipped,
            self.options.reduce_range,
            excluded=self.excluded,
            source=self.source,
        )
        if len(self.excluded) > had and not skip and not self.groups:
            raise CalibrationError(
                f"{self.source}: ONNX Runtime's quantizer fails on every quantizable node "
                f"({next(iter(self.excluded.values()))}); quantize for --target tensorrt or use "
                "--precision fp16 instead"
            )
        return out

    def weight_amax(self) -> dict[str, list[float]]:
        inits = {i.name: i for i in self.model.graph.initializer}
        out = {}
        for w in self.plan.weights:
            arr = numpy_helper.to_array(inits[w.initializer])
            out[w.initializer] = weight_amax(arr, w.axis).astype(float).tolist()
        return out


def prepare(model: onnx.ModelProto, target: str, source: str) -> onnx.ModelProto:
    """Copy, refuse quantized input, name nodes, Constant -> initializer, opset >= 13, weights
    reached through layout ops of a constant folded into initializers.

    For ``onnxruntime-cpu`` also ONNX Runtime's basic graph optimizations (BN folding, constant
    folding), as its ``quant_pre_process`` does, and Gemm biases in the 1-D shape its quantizer
    needs (``qdq.normalise_gemm_bias``). TensorRT fuses BN itself and the legacy cache must keep
    the user's tensor names, so the ``tensorrt`` graph keeps every activation as it is.
    """
    return _prepare(model, target, source)[0]


def _prepare(model: onnx.ModelProto, target: str, source: str) -> tuple[onnx.ModelProto, list[str]]:
    """``prepare``, and notes on what was changed for the quantizer."""
    placement.check_not_quantized(model, source)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        try:
            m = onnx.version_converter.convert_version(m, 13)
        except Exception as exc:  # the converter raises plain RuntimeErrors
            raise CalibrationError(
                f"{source}: opset {opset} cannot be upgraded to 13 for per-channel Q/DQ "
                f"({exc}); re-export with opset >= 13"
            ) from exc
    if target == "onnxruntime-cpu":
        m = _ort_basic(m, source)
    _constants_to_initializers(m)
    placement.name_nodes(m)
    notes = placement.fold_weight_layouts(m)
    if target == "onnxruntime-cpu":
        notes += qdq.normalise_gemm_bias(m)
    return m, notes


def _ort_basic(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    from trtforge.common.ort import SessionConfig, create_session

    with tempfile.TemporaryDirectory(prefix="trtforge-q-") as tmp:
        out = Path(tmp) / "basic.onnx"
        create_session(
            model, SessionConfig(graph_optimization="basic", optimized_model_path=out), source=source
        )
        return onnx.load(str(out))


def _constants_to_initializers(m: onnx.ModelProto) -> None:
    keep = []
    for node in m.graph.node:
        attr = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if attr is not None and attr.name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(attr.t)
            t.name = node.output[0]
            m.graph.initializer.append(t)
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)


def calibrate(
    model: onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    options: QuantizeOptions,
    source: str = "model",
    progress: Progress | None = None,
) -> Calibrated:
    """Prepare ``model``, stream ``batches`` through it and compute every range the target needs."""
    prepared, notes = _prepare(model, options.target, source)
    plan = placement.plan(prepared, options.target)
    plan.notes[:0] = notes
    if not plan.nodes:
        from trtforge.common.graphs import describe_body_ops

        inside = describe_body_ops(prepared, WEIGHT_OPS)
        raise CalibrationError(
            f"{source}: nothing to quantize for target {options.target} "
            f"(no Conv/Gemm/MatMul with constant weights in the main graph{inside}); "
            "leave the quantize stage out, or convert to FP16 instead"
        )
    needed = plan.tensors(prepared)
    concat_ins = {t for n in prepared.graph.node if n.op_type == "Concat" for t in n.input}
    floats = float_tensors(prepared)
    wanted = floats if options.all_tensors else [t for t in floats if t in needed | concat_ins]
    heads = placement.head_tensors(prepared) & needed
    stats = collect(
        prepared,
        batches,
        wanted,
        {t: (1, -1) for t in heads},
        providers=options.providers,
        threads=options.threads,
        bins=options.bins,
        progress=progress,
    )
    if options.num_samples is not None and stats.samples < options.num_samples:
        raise DataError(
            f"{source}: calibration asked for {options.num_samples} samples but the data holds "
            f"{stats.samples}; add data or lower the sample count"
        )
    amax = {n: s.amax(options.method, options.percentile) for n, s in stats.tensors.items()}
    ranges = {n: _asym(stats.tensors[n].hist.lo, stats.tensors[n].hist.hi, amax[n]) for n in amax}
    missing = sorted(needed - set(amax))
    if missing:
        log.warning(
            "no float range for %d tensors (e.g. %s); their consumers stay float", len(missing), missing[0]
        )
    mixed = mixed_mod.find_mixed(prepared, stats.tensors, needed, options.mixed_range_ratio)
    cal = Calibrated(prepared, plan, stats, options, amax, ranges, mixed, source=source)
    cal.forced_float = _forced(cal, set(missing))
    return cal


def _asym(lo: float, hi: float, amax: float) -> tuple[float, float]:
    """Asymmetric range for uint8 activations: the measured min/max clipped to [-amax, amax]."""
    return (max(min(lo, 0.0), -amax), min(max(hi, 0.0), amax))


def _forced(cal: Calibrated, missing: set[str]) -> set[str]:
    bad = set(cal.mixed) | missing
    if cal.plan.target == "tensorrt":
        return {a.node for a in cal.plan.activations if a.tensor in bad}
    return mixed_mod.nodes_touching(cal.model, dict.fromkeys(bad, "")) & set(cal.plan.nodes)


def report_notes(cal: Calibrated) -> list[str]:
    notes = list(cal.plan.notes)
    for t, why in sorted(cal.mixed.items()):
        notes.append(f"mixed-range tensor {t!r} kept float ({why})")
    notes.extend(cal.excluded[g] for g in sorted(cal.excluded))
    return notes


def summary(cal: Calibrated) -> dict[str, Any]:
    return {
        "target": cal.plan.target,
        "method": cal.options.method,
        "samples": cal.stats.samples,
        "groups": len(cal.plan.nodes),
        "forced_float": sorted(cal.forced_float),
        "excluded": dict(sorted(cal.excluded.items())),
        "unknown_ops": {k: v for k, v in cal.plan.float_ops.items()},
        "control_flow": cal.plan.control_flow,
        "notes": report_notes(cal),
    }


def tensor_amax(cal: Calibrated, names: Sequence[str] | None = None) -> dict[str, float]:
    keys = names if names is not None else list(cal.amax)
    return {k: cal.amax[k] for k in keys if k in cal.amax}
