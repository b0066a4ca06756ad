"""The op table of ``TorchFromOnnx`` (ONNX semantics in torch; static shapes where ONNX computes them)."""

from __future__ import annotations

from typing import Any

import onnx

from trtforge.pipeline.deps import LazyModule
from trtforge.pipeline.graph.recovery.interpreter import get, op

# imported on first use, so this module imports (and registers its ops) without torch
torch: Any = LazyModule("torch", "pruning recovery")
F: Any = LazyModule("torch.nn.functional", "pruning recovery")


def _ints(t: Any) -> list[int]:
    return [int(v) for v in (t.reshape(-1).tolist() if hasattr(t, "reshape") else t)]


def _pads(node: onnx.NodeProto, nd: int) -> tuple[list[int], list[int] | None]:
    pads = list(get(node, "pads", [0] * (2 * nd)))
    if get(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise ValueError(f"{node.name}: auto_pad SAME_* is not supported in recovery")
    if pads[:nd] == pads[nd:]:
        return pads[:nd], None
    torch_pad: list[int] = []
    for k in range(nd - 1, -1, -1):
        torch_pad += [pads[k], pads[k + nd]]
    return [0] * nd, torch_pad


def _conv_args(node: onnx.NodeProto, nd: int, pad: list[int]) -> dict[str, Any]:
    """The keyword arguments torch's convolutions share, read from an ONNX Conv/ConvTranspose node."""
    return {
        "stride": get(node, "strides", [1] * nd),
        "padding": pad,
        "dilation": get(node, "dilations", [1] * nd),
        "groups": get(node, "group", 1),
    }


@op("Conv")
def _conv(node: onnx.NodeProto, x: Any, w: Any, b: Any = None) -> Any:
    nd = w.dim() - 2
    pad, explicit = _pads(node, nd)
    if explicit:
        x = F.pad(x, explicit)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(x, w, b, **_conv_args(node, nd, pad))


@op("ConvTranspose")
def _convt(node: onnx.NodeProto, x: Any, w: Any, b: Any = None) -> Any:
    nd = w.dim() - 2
    pad, explicit = _pads(node, nd)
    if explicit:
        raise ValueError(f"{node.name}: asymmetric ConvTranspose pads are not supported in recovery")
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    extra = {"output_padding": get(node, "output_padding", [0] * nd)}
    return fn(x, w, b, **_conv_args(node, nd, pad), **extra)


@op("BatchNormalization")
def _bn(node: onnx.NodeProto, x: Any, s: Any, b: Any, m: Any, v: Any) -> Any:
    return F.batch_norm(x, m, v, s, b, training=False, eps=get(node, "epsilon", 1e-5))


@op("Gemm")
def _gemm(node: onnx.NodeProto, a: Any, b: Any, c: Any = None) -> Any:
    a = a.t() if get(node, "transA", 0) else a
    b = b.t() if get(node, "transB", 0) else b
    y = get(node, "alpha", 1.0) * (a @ b)
    return y if c is None else y + get(node, "beta", 1.0) * c


OP2 = {
    "Add": (torch, "add"),
    "Sub": (torch, "sub"),
    "Mul": (torch, "mul"),
    "Div": (torch, "div"),
    "Pow": (torch, "pow"),
    "MatMul": (torch, "matmul"),
    "Equal": (torch, "eq"),
    "Less": (torch, "lt"),
    "Greater": (torch, "gt"),
    "Max": (torch, "maximum"),
    "Min": (torch, "minimum"),
}
OP1 = {
    "Relu": (F, "relu"),
    "Sigmoid": (torch, "sigmoid"),
    "Tanh": (torch, "tanh"),
    "Erf": (torch, "erf"),
    "Sqrt": (torch, "sqrt"),
    "Neg": (torch, "neg"),
    "Exp": (torch, "exp"),
    "Log": (torch, "log"),
    "Abs": (torch, "abs"),
    "Reciprocal": (torch, "reciprocal"),
    "Softplus": (F, "softplus"),
    "HardSwish": (F, "hardswish"),
    "Floor": (torch, "floor"),
    "Ceil": (torch, "ceil"),
}
# (lazy module, function name): resolved at call time, so importing this module needs no torch
for _name, (_mod, _fn) in OP2.items():
    op(_name)(lambda node, a, b, _mod=_mod, _fn=_fn: getattr(_mod, _fn)(a, b))
for _name, (_mod, _fn) in OP1.items():
    op(_name)(lambda node, x, *rest, _mod=_mod, _fn=_fn: getattr(_mod, _fn)(x))
for _name in ("Identity", "Dropout"):
    op(_name)(lambda node, x, *rest: x)


@op("LeakyRelu")
def _lrelu(node: onnx.NodeProto, x: Any) -> Any:
    return F.leaky_relu(x, get(node, "alpha", 0.01))


@op("Gelu")
def _gelu(node: onnx.NodeProto, x: Any) -> Any:
    approx = get(node, "approximate", b"none")
    return F.gelu(x, approximate="tanh" if approx in (b"tanh", "tanh") else "none")


@op("HardSigmoid")
def _hsig(node: onnx.NodeProto, x: Any) -> Any:
    return torch.clamp(get(node, "alpha", 0.2) * x + get(node, "beta", 0.5), 0, 1)


@op("Clip")
def _clip(node: onnx.NodeProto, x: Any, lo: Any = None, hi: Any = None) -> Any:
    return torch.clamp(x, None if lo is None else float(lo), None if hi is None else float(hi))


@op("Softmax", "LogSoftmax")
def _softmax(node: onnx.NodeProto, x: Any) -> Any:
    fn = F.softmax if node.op_type == "Softmax" else F.log_softmax
    return fn(x, dim=get(node, "axis", -1))


@op("LayerNormalization")
def _ln(node: onnx.NodeProto, x: Any, s: Any, b: Any = None) -> Any:
    axis = get(node, "axis", -1) % x.dim()
    return F.layer_norm(x, x.shape[axis:], s, b, get(node, "epsilon", 1e-5))


@op("GlobalAveragePool", "GlobalMaxPool")
def _gpool(node: onnx.NodeProto, x: Any) -> Any:
    dims = tuple(range(2, x.dim()))
    return (
        x.mean(dim=dims, keepdim=True)
        if node.op_type == "GlobalAveragePool"
        else x.amax(dim=dims, keepdim=True)
    )


@op("MaxPool", "AveragePool")
def _pool(node: onnx.NodeProto, x: Any) -> Any:
    k = get(node, "kernel_shape")
    nd = len(k)
    pad, explicit = _pads(node, nd)
    if explicit:
        x = F.pad(x, explicit, value=float("-inf") if node.op_type == "MaxPool" else 0.0)
    stride = get(node, "strides", [1] * nd)
    ceil = bool(get(node, "ceil_mode", 0))
    if node.op_type == "MaxPool":
        return getattr(F, f"max_pool{nd}d")(x, k, stride, pad, ceil_mode=ceil)
    return getattr(F, f"avg_pool{nd}d")(
        x, k, stride, pad, ceil_mode=ceil, count_include_pad=bool(get(node, "count_include_pad", 0))
    )


@op("ReduceMean", "ReduceSum", "ReduceMax")
def _reduce(node: onnx.NodeProto, x: Any, axes: Any = None) -> Any:
    ax = get(node, "axes") if axes is None else _ints(axes)
    ax = list(range(x.dim())) if not ax else [a % x.dim() for a in ax]
    keep = bool(get(node, "keepdims", 1))
    if node.op_type == "ReduceMax":
        return x.amax(dim=ax, keepdim=keep)
    return (x.mean if node.op_type == "ReduceMean" else x.sum)(dim=ax, keepdim=keep)


@op("Flatten")
def _flatten(node: onnx.NodeProto, x: Any) -> Any:
    axis = get(node, "axis", 1) % max(x.dim(), 1)
    return x.reshape(int(torch.tensor(x.shape[:axis]).prod()), -1)


@op("Reshape")
def _reshape(node: onnx.NodeProto, x: Any, shape: Any) -> Any:
    dims = _ints(shape)
    dims = [x.shape[i] if d == 0 and not get(node, "allowzero", 0) else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@op("Transpose")
def _transpose(node: onnx.NodeProto, x: Any) -> Any:
    return x.permute(get(node, "perm", list(range(x.dim()))[::-1]))


@op("Concat")
def _concat(node: onnx.NodeProto, *xs: Any) -> Any:
    return torch.cat([x for x in xs if x is not None], dim=get(node, "axis", 0))


@op("Split")
def _split(node: onnx.NodeProto, x: Any, split: Any = None) -> Any:
    axis = get(node, "axis", 0)
    sizes = _ints(split) if split is not None else get(node, "split")
    if sizes is None:
        n = len(node.output)
        sizes = [x.shape[axis] // n] * n
    return list(torch.split(x, list(sizes), dim=axis))


@op("Slice")
def _slice(node: onnx.NodeProto, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    st, en = _ints(starts), _ints(ends)
    ax = _ints(axes) if axes is not None else list(range(len(st)))
    sp = _ints(steps) if steps is not None else [1] * len(st)
    idx = [slice(None)] * x.dim()
    for s, e, a, p in zip(st, en, ax, sp):
        idx[a % x.dim()] = slice(*slice(s, e, p).indices(x.shape[a % x.dim()]))
    return x[tuple(idx)]


@op("Constant")
def _constant(node: onnx.NodeProto) -> Any:
    from trtforge.pipeline.graph.pruning.graph import _constant_value

    value = _constant_value(node)
    if value is None:
        raise ValueError(f"Constant node {node.name!r} has no supported value attribute")
    return torch.from_numpy(value.copy())


@op("Shape")
def _shape(node: onnx.NodeProto, x: Any) -> Any:
    return torch.tensor(list(x.shape), dtype=torch.int64)


@op("Gather")
def _gather(node: onnx.NodeProto, x: Any, i: Any) -> Any:
    axis = get(node, "axis", 0) % x.dim()
    picked = torch.index_select(x, axis, (i.reshape(-1).long() % x.shape[axis]))
    return picked.reshape(list(x.shape[:axis]) + list(i.shape) + list(x.shape[axis + 1 :]))


@op("Unsqueeze", "Squeeze")
def _squeeze(node: onnx.NodeProto, x: Any, axes: Any = None) -> Any:
    ax = get(node, "axes") if axes is None else _ints(axes)
    if node.op_type == "Unsqueeze":
        for a in sorted(a % (x.dim() + len(ax)) for a in ax):
            x = x.unsqueeze(a)
        return x
    if not ax:
        return x.squeeze()
    for a in sorted((a % x.dim() for a in ax), reverse=True):
        x = x.squeeze(a)
    return x


@op("Cast")
def _cast(node: onnx.NodeProto, x: Any) -> Any:
    import numpy as np

    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(get(node, "to"))
    return x.to(torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype)


@op("Where")
def _where(node: onnx.NodeProto, c: Any, a: Any, b: Any) -> Any:
    return torch.where(c.bool(), a, b)


@op("Expand")
def _expand(node: onnx.NodeProto, x: Any, shape: Any) -> Any:
    return x * torch.ones(_ints(shape), dtype=x.dtype)
