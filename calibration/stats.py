"""Activation statistics collected with ONNX Runtime, streamed batch by batch.

The model is augmented so that every tensor we need a range for is a graph output; each batch
is run once and folded into per-tensor :class:`~calibration.ranges.AbsHistogram` objects. Only
one batch of activations is alive at a time, so memory does not grow with the sample count.
(ONNX Runtime's own calibrators keep a list of every batch's outputs until
``max_intermediate_outputs`` and re-histogram from scratch; we need a fixed footprint and
exact re-binning, so this collector is our own.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtforge.calibration.errors import DataError, first_line
from trtforge.calibration.ranges import AbsHistogram, compute_amax

Feed = Mapping[str, np.ndarray]
Progress = Callable[[str, int, int], None]


@dataclass
class TensorStats:
    """Streamed statistics of one activation tensor."""

    name: str
    hist: AbsHistogram
    channel_amax: dict[int, np.ndarray] = field(default_factory=dict)  # axis -> per-channel max |x|

    def amax(self, method: str, percentile: float = 99.99) -> float:
        return compute_amax(self.hist, method, percentile)

    def update_channels(self, value: np.ndarray, axes: Sequence[int]) -> None:
        for axis in axes:
            if value.ndim < 2 or not -value.ndim <= axis < value.ndim:
                continue
            others = tuple(a for a in range(value.ndim) if a != axis % value.ndim)
            cur = np.max(np.abs(value), axis=others).astype(np.float32)
            prev = self.channel_amax.get(axis)
            self.channel_amax[axis] = (
                cur if prev is None or prev.shape != cur.shape else np.maximum(prev, cur)
            )


@dataclass
class CalibrationStats:
    tensors: dict[str, TensorStats]
    samples: int
    batches: int


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of float32 activation tensors of the main graph (inputs and node outputs), in order."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=False)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    }
    inits = {i.name for i in model.graph.initializer}
    names: list[str] = []
    for v in model.graph.input:
        if v.name not in inits and types.get(v.name) == onnx.TensorProto.FLOAT:
            names.append(v.name)
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        names.extend(o for o in node.output if o and types.get(o) == onnx.TensorProto.FLOAT)
    return list(dict.fromkeys(names))


def augment(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs include every name in ``tensors`` (graph inputs excluded)."""
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    present = {o.name for o in aug.graph.output} | {i.name for i in aug.graph.input}
    for name in tensors:
        if name not in present:
            aug.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            present.add(name)
    return aug


def _session(model: onnx.ModelProto, providers: Sequence[str], threads: int | None) -> Any:
    """Sessions prefer the first available of ``providers`` (CUDA where present), CPU otherwise."""
    from trtforge.common.ort import SessionConfig, create_session

    config = SessionConfig(
        providers=tuple(providers),
        require_providers=False,
        intra_op_threads=threads,
        graph_optimization="basic",
    )
    return create_session(model, config, source="the model prepared for calibration")


def collect(
    model: onnx.ModelProto,
    batches: Iterable[Feed],
    tensors: Sequence[str] | None = None,
    channel_axes: Mapping[str, Sequence[int]] | None = None,
    *,
    providers: Sequence[str] = ("CUDAExecutionProvider", "CPUExecutionProvider"),
    threads: int | None = None,
    bins: int = 2048,
    progress: Progress | None = None,
) -> CalibrationStats:
    """Run ``batches`` through ``model`` once and stream the ranges of ``tensors`` (default: all float)."""
    names = list(tensors) if tensors is not None else float_tensors(model)
    channel_axes = dict(channel_axes or {})
    sess = _session(augment(model, names), providers, threads)
    input_names = [i.name for i in sess.get_inputs()]
    out_names = [n for n in names if n not in input_names]
    stats = {n: TensorStats(n, AbsHistogram(bins)) for n in names}
    samples = n_batches = 0
    for feed in batches:
        missing = [n for n in input_names if n not in feed]
        if missing:
            raise DataError(
                f"calibration batch has no array for input {missing[0]!r}; inputs are {input_names}"
            )
        try:  # ONNX Runtime reads an empty output list as "all outputs": run only when asked
            values = sess.run(out_names, {k: feed[k] for k in input_names}) if out_names else []
        except Exception as exc:  # shapes that do not fit surface here as ORT errors
            first = first_line(exc)
            raise DataError(f"calibration batch {n_batches} does not fit the model: {first}") from exc
        arrays = dict(zip(out_names, values, strict=True))
        arrays.update({n: np.asarray(feed[n]) for n in names if n in input_names})
        for name in names:
            value = arrays[name]
            if not np.all(np.isfinite(value)):
                raise DataError(
                    f"tensor {name!r} is NaN/Inf on calibration batch {n_batches}; "
                    "check the calibration data and the model in float32 first"
                )
            stats[name].hist.update(value)
            if name in channel_axes:
                stats[name].update_channels(value, channel_axes[name])
        n_batches += 1
        samples += int(next(iter(feed.values())).shape[0]) if feed else 0
        if progress:
            progress("calibrate", samples, 0)
    if n_batches == 0:
        raise DataError("calibration data holds no samples; pass a non-empty data set")
    return CalibrationStats(stats, samples, n_batches)
