"""Pads that must stay apart from the Conv they feed: merged, ONNX Runtime's CPU Conv runs slower.

ONNX Runtime's CPU provider runs 2-D Convs in its NCHWc layout, whose kernel handles a Conv's own
``pads`` on a slow path. Measured on onnxruntime 1.32, one thread, explicit ``Pad`` + unpadded
Conv against the same Conv with the padding merged in:

* a 1-D convolution written as 2-D (kernel ``(k, 1)`` on ``[N, C, L, 1]``): merged is 1.5-2x
  slower for k=3..9, 4x for k=64 and 3x for k=512 (a CREPE-like pitch estimator ran 2.1x slower);
* square kernels: merged is 10-20% faster at 3x3, 10-40% slower from 5x5 and 7x7 on.

Two things merge them: onnxslim's ``FusionPadConv`` pattern (in the graph), and ONNX Runtime's own
``PadFusion`` at session creation, for a Pad whose ``pads`` are constant. ONNX Runtime's rule
leaves a Pad alone when it has a third input that is not a constant initializer, and an explicit
empty one (``Pad(x, pads, "")``, what the TorchScript exporter writes for ``F.pad``) counts: that
is why such an export ran fast before the fuse stage, and slow after it, since the fuse passes
(onnx-ir) drop trailing empty inputs and fold ``pads`` into a constant. So where merging slows
the Conv, the fuse stage skips onnxslim's pattern and writes the Pad with that empty
``constant_value`` input (the same model to ONNX: an absent optional input). TensorRT merges a
Pad into a Conv by itself, so nothing is lost there.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from trtforge.common.graphs import iter_graphs

#: a kernel this large along a padded axis runs slower with the padding merged in (see above)
SLOW_MERGED_KERNEL = 5


def slow_pad_merges(model: onnx.ModelProto) -> dict[str, str]:
    """``{pad node name or output: why}`` for each Pad (in any graph) whose merge into the Conv it
    feeds would slow that Conv on ONNX Runtime's CPU provider."""
    return {
        pad.name or pad.output[0]: why
        for graph in iter_graphs(model.graph)
        for pad, _, why in _pad_conv_pairs(graph)
    }


def keep_pads_apart(model: onnx.ModelProto) -> list[str]:
    """Give each Pad of ``slow_pad_merges`` an explicit empty ``constant_value`` input (in place), so
    ONNX Runtime's PadFusion leaves it apart; returns the names (else outputs) of the Pads that got one."""
    changed = []
    for graph in iter_graphs(model.graph):
        for pad, _, _ in _pad_conv_pairs(graph):
            if len(pad.input) == 2:
                pad.input.append("")
                changed.append(pad.name or pad.output[0])
    return changed


def two_input_pads(model: onnx.ModelProto) -> set[str]:
    """Names (else outputs) of the Pads written without a third input, in every graph."""
    return {
        n.name or n.output[0]
        for g in iter_graphs(model.graph)
        for n in g.node
        if n.op_type == "Pad" and len(n.input) == 2
    }


def _pad_conv_pairs(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto, str]]:
    """(Pad, Conv, why) where a constant-mode Pad (opset >= 11 form) feeds only a Conv whose
    padded axes merging would slow."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {v.name for v in graph.output}
    shapes = _static_shapes(graph)
    consts = {t.name: t for t in graph.initializer}
    found = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx") or len(pad.input) < 2:
            continue
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        readers = consumers.get(pad.output[0], [])
        if (
            mode != b"constant"
            or pad.output[0] in outputs
            or len(readers) != 1
            or readers[0].op_type != "Conv"
        ):
            continue
        conv = readers[0]
        pads = _pads(pad, consts, graph)
        kernel = _kernel(conv, shapes, consts)
        if pads is None or kernel is None:
            continue
        rank = len(pads) // 2
        spatial = [(i - 2, pads[i] + pads[i + rank]) for i in range(2, rank)]
        padded = [axis for axis, total in spatial if total > 0]
        if not padded or len(kernel) != rank - 2:
            continue
        why = _why_slow(kernel, padded, shapes.get(pad.input[0]))
        if why is not None:
            found.append((pad, conv, why))
    return found


def _why_slow(kernel: list[int], padded: list[int], shape: list[int] | None) -> str | None:
    if shape is not None and len(shape) == len(kernel) + 2 and 1 in shape[2:]:
        return f"a 1-D convolution written as {len(kernel)}-D (input {shape}, kernel {kernel})"
    large = [kernel[a] for a in padded if kernel[a] >= SLOW_MERGED_KERNEL]
    if large:
        return f"kernel {kernel} is {max(large)} wide along a padded axis"
    return None


def _pads(
    pad: onnx.NodeProto, consts: dict[str, onnx.TensorProto], graph: onnx.GraphProto
) -> list[int] | None:
    tensor = consts.get(pad.input[1])
    if tensor is None:
        node = next((n for n in graph.node if n.op_type == "Constant" and pad.input[1] in n.output), None)
        tensor = next((a.t for a in node.attribute if a.name == "value"), None) if node is not None else None
    if tensor is None:
        return None
    values = [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
    if len(values) % 2 or len(values) < 6 or any(v < 0 for v in values):
        return None
    rank = len(values) // 2
    if values[0] or values[1] or values[rank] or values[rank + 1]:
        return None  # pads the batch or channel axis: no Conv can take that over
    return values


def _kernel(
    conv: onnx.NodeProto, shapes: dict[str, list[int]], consts: dict[str, onnx.TensorProto]
) -> list[int] | None:
    given = next((list(a.ints) for a in conv.attribute if a.name == "kernel_shape"), None)
    if given:
        return [int(k) for k in given]
    weight = consts.get(conv.input[1]) if len(conv.input) > 1 else None
    if weight is not None and len(weight.dims) >= 3:
        return [int(d) for d in weight.dims[2:]]
    shape = shapes.get(conv.input[1]) if len(conv.input) > 1 else None
    return shape[2:] if shape is not None and len(shape) >= 3 and min(shape[2:]) > 0 else None


def _static_shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Known ranks, a dynamic dimension as -1."""
    out: dict[str, list[int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.shape.dim]
    for init in graph.initializer:
        out[init.name] = [int(d) for d in init.dims]
    return out
