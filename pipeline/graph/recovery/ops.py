"""The op table of ``TorchFromOnnx``: ONNX semantics in torch, one function per op family.

Every function takes the node and its inputs (absent optional inputs as None) and returns the
output (or the list of outputs). Shape arithmetic (``Shape``, ``Gather``, ``Concat``, ``Range``,
``ConstantOfShape``, integer ``Div``/``Mod``) runs on int64 tensors at run time, so computed
shapes, pads, sizes and slice bounds follow the pruned graph. Resampling and padding are written
as index gathers along each axis (``_axis_taps``), which reproduces ONNX's coordinate modes,
rounding modes and edge clamping exactly and stays differentiable in the data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from trtforge.pipeline.deps import LazyModule
from trtforge.pipeline.graph.recovery.interpreter import get, op

# imported on first use, so this module imports (and registers its ops) without torch
torch: Any = LazyModule("torch", "pruning recovery")
F: Any = LazyModule("torch.nn.functional", "pruning recovery")


def _ints(t: Any) -> list[int]:
    return [int(v) for v in (t.reshape(-1).tolist() if hasattr(t, "reshape") else t)]


def _floats(t: Any) -> list[float]:
    return [float(v) for v in (t.reshape(-1).tolist() if hasattr(t, "reshape") else t)]


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _present(t: Any) -> bool:
    """An optional input that is given and not empty (exporters pass ``[]`` for "none")."""
    return t is not None and (not hasattr(t, "numel") or t.numel() > 0)


def _torch_dtype(onnx_type: int) -> Any:
    return torch.from_numpy(np.zeros(0, dtype=onnx.helper.tensor_dtype_to_np_dtype(onnx_type))).dtype


def _same_pads(node: onnx.NodeProto, x: Any, kernel: list[int], nd: int) -> list[int]:
    """ONNX ``auto_pad`` SAME_UPPER/SAME_LOWER: total ``(ceil(i/s) - 1)·s + (k - 1)·d + 1 - i``,
    the odd one at the end (UPPER) or the beginning (LOWER); pads in ONNX order."""
    mode = _text(get(node, "auto_pad"), "NOTSET")
    strides = get(node, "strides", [1] * nd)
    dil = get(node, "dilations", [1] * nd)
    begin, end = [], []
    for k in range(nd):
        size = int(x.shape[2 + k])
        total = max((math.ceil(size / strides[k]) - 1) * strides[k] + (kernel[k] - 1) * dil[k] + 1 - size, 0)
        small = total // 2
        begin.append(small if mode == "SAME_UPPER" else total - small)
        end.append(total - small if mode == "SAME_UPPER" else small)
    return begin + end


def _pads(
    node: onnx.NodeProto, nd: int, x: Any = None, kernel: list[int] | None = None
) -> tuple[list[int], list[int] | None]:
    """(symmetric torch padding, or zeros plus an explicit ``F.pad`` list when asymmetric)."""
    mode = _text(get(node, "auto_pad"), "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        if x is None or kernel is None:
            raise ValueError(f"{node.name}: auto_pad {mode} is not supported here")
        pads = _same_pads(node, x, kernel, nd)
    elif mode == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = list(get(node, "pads", [0] * (2 * nd)))
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
    pad, explicit = _pads(node, nd, x, list(w.shape[2:]))
    if explicit:
        x = F.pad(x, explicit)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(x, w, b, **_conv_args(node, nd, pad))


@op("ConvTranspose")
def _convt(node: onnx.NodeProto, x: Any, w: Any, b: Any = None) -> Any:
    nd = w.dim() - 2
    if get(node, "output_shape") is not None or _text(get(node, "auto_pad"), "NOTSET") not in (
        "NOTSET",
        "VALID",
    ):
        raise ValueError("ConvTranspose with output_shape or auto_pad SAME_* is not supported in recovery")
    pad, explicit = _pads(node, nd)
    if explicit:
        raise ValueError(f"{node.name}: asymmetric ConvTranspose pads are not supported in recovery")
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    extra = {"output_padding": get(node, "output_padding", [0] * nd)}
    return fn(x, w, b, **_conv_args(node, nd, pad), **extra)


@op("BatchNormalization")
def _bn(node: onnx.NodeProto, x: Any, s: Any, b: Any, m: Any, v: Any) -> Any:
    return F.batch_norm(x, m, v, s, b, training=False, eps=get(node, "epsilon", 1e-5))


@op("InstanceNormalization")
def _instance_norm(node: onnx.NodeProto, x: Any, s: Any, b: Any) -> Any:
    return F.instance_norm(x, weight=s, bias=b, eps=get(node, "epsilon", 1e-5))


@op("GroupNormalization", opset=True)
def _group_norm(node: onnx.NodeProto, x: Any, s: Any, b: Any, opset: int = 21) -> Any:
    """Opset 18 gives scale/bias per group, opset 21 per channel."""
    groups = int(get(node, "num_groups"))
    c = int(x.shape[1])
    if s.numel() == groups and groups != c:
        s, b = s.repeat_interleave(c // groups), b.repeat_interleave(c // groups)
    return F.group_norm(x, groups, s, b, get(node, "epsilon", 1e-5))


@op("LpNormalization")
def _lp_norm(node: onnx.NodeProto, x: Any) -> Any:
    """``x / ‖x‖_p`` along ``axis`` (no epsilon, as ONNX)."""
    axis = get(node, "axis", -1)
    return x / torch.linalg.vector_norm(x, ord=get(node, "p", 2), dim=axis, keepdim=True)


@op("Gemm")
def _gemm(node: onnx.NodeProto, a: Any, b: Any, c: Any = None) -> Any:
    a = a.t() if get(node, "transA", 0) else a
    b = b.t() if get(node, "transB", 0) else b
    y = get(node, "alpha", 1.0) * (a @ b)
    return y if c is None else y + get(node, "beta", 1.0) * c


def _div(a: Any, b: Any) -> Any:
    """ONNX Div: true division for floats, truncation for integers (C semantics)."""
    if a.is_floating_point() or b.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")


def _pow(a: Any, b: Any) -> Any:
    return torch.pow(a, b).to(a.dtype)


OP2 = {
    "Add": (torch, "add"),
    "Sub": (torch, "sub"),
    "Mul": (torch, "mul"),
    "MatMul": (torch, "matmul"),
    "Equal": (torch, "eq"),
    "Less": (torch, "lt"),
    "Greater": (torch, "gt"),
    "LessOrEqual": (torch, "le"),
    "GreaterOrEqual": (torch, "ge"),
    "And": (torch, "logical_and"),
    "Or": (torch, "logical_or"),
    "Xor": (torch, "logical_xor"),
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
    "Softsign": (F, "softsign"),
    "HardSwish": (F, "hardswish"),
    "Mish": (F, "mish"),
    "Floor": (torch, "floor"),
    "Ceil": (torch, "ceil"),
    "Round": (torch, "round"),  # half to even, as ONNX
    "Sign": (torch, "sign"),
    "Sin": (torch, "sin"),
    "Cos": (torch, "cos"),
    "Tan": (torch, "tan"),
    "Not": (torch, "logical_not"),
    "IsNaN": (torch, "isnan"),
}
# (lazy module, function name): resolved at call time, so importing this module needs no torch
for _name, (_mod, _fn) in OP2.items():
    op(_name)(lambda node, a, b, _mod=_mod, _fn=_fn: getattr(_mod, _fn)(a, b))
for _name, (_mod, _fn) in OP1.items():
    op(_name)(lambda node, x, *rest, _mod=_mod, _fn=_fn: getattr(_mod, _fn)(x))
for _name in ("Identity", "Dropout"):
    op(_name)(lambda node, x, *rest: x)
op("Div")(lambda node, a, b: _div(a, b))
op("Pow")(lambda node, a, b: _pow(a, b))


@op("Mod")
def _modulo(node: onnx.NodeProto, a: Any, b: Any) -> Any:
    """``fmod=1``: sign of the dividend (C fmod); else the sign of the divisor (Python %)."""
    return torch.fmod(a, b) if get(node, "fmod", 0) else torch.remainder(a, b)


@op("IsInf")
def _isinf(node: onnx.NodeProto, x: Any) -> Any:
    pos, neg = get(node, "detect_positive", 1), get(node, "detect_negative", 1)
    return (torch.isposinf(x) & bool(pos)) | (torch.isneginf(x) & bool(neg))


@op("Max", "Min", "Sum", "Mean")
def _variadic(node: onnx.NodeProto, *xs: Any) -> Any:
    """Element-wise over any number of broadcasting inputs."""
    out = xs[0]
    for x in xs[1:]:
        if node.op_type == "Max":
            out = torch.maximum(out, x)
        elif node.op_type == "Min":
            out = torch.minimum(out, x)
        else:
            out = out + x
    return out / len(xs) if node.op_type == "Mean" else out


@op("LeakyRelu")
def _lrelu(node: onnx.NodeProto, x: Any) -> Any:
    return F.leaky_relu(x, get(node, "alpha", 0.01))


@op("PRelu")
def _prelu(node: onnx.NodeProto, x: Any, slope: Any) -> Any:
    return torch.where(x >= 0, x, slope * x)


@op("Elu")
def _elu(node: onnx.NodeProto, x: Any) -> Any:
    return F.elu(x, get(node, "alpha", 1.0))


@op("Celu")
def _celu(node: onnx.NodeProto, x: Any) -> Any:
    return F.celu(x, get(node, "alpha", 1.0))


@op("Selu")
def _selu(node: onnx.NodeProto, x: Any) -> Any:
    alpha = get(node, "alpha", 1.67326319217681884765625)
    gamma = get(node, "gamma", 1.05070102214813232421875)
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@op("ThresholdedRelu")
def _trelu(node: onnx.NodeProto, x: Any) -> Any:
    return torch.where(x > get(node, "alpha", 1.0), x, torch.zeros_like(x))


@op("Gelu")
def _gelu(node: onnx.NodeProto, x: Any) -> Any:
    approx = get(node, "approximate", b"none")
    return F.gelu(x, approximate="tanh" if approx in (b"tanh", "tanh") else "none")


@op("HardSigmoid")
def _hsig(node: onnx.NodeProto, x: Any) -> Any:
    return torch.clamp(get(node, "alpha", 0.2) * x + get(node, "beta", 0.5), 0, 1)


@op("Clip")
def _clip(node: onnx.NodeProto, x: Any, lo: Any = None, hi: Any = None) -> Any:
    """Bounds from inputs 1 and 2 (opset 11+) or the ``min``/``max`` attributes (before)."""
    low = lo.reshape(-1)[0].item() if lo is not None else get(node, "min")
    high = hi.reshape(-1)[0].item() if hi is not None else get(node, "max")
    return torch.clamp(x, low, high)


@op("Softmax", "LogSoftmax", "Hardmax", opset=True)
def _softmax(node: onnx.NodeProto, x: Any, opset: int = 13) -> Any:
    """From opset 13 along ``axis`` (default -1); before, over the input flattened to 2-D at
    ``axis`` (default 1), i.e. over every axis from ``axis`` on."""
    if opset >= 13:
        axis = get(node, "axis", -1) % x.dim()
        flat = x
    else:
        axis = get(node, "axis", 1) % x.dim()
        flat = x.reshape(*x.shape[:axis], -1)
        axis = flat.dim() - 1
    if node.op_type == "Hardmax":
        y = F.one_hot(flat.argmax(dim=axis), flat.shape[axis]).to(x.dtype).movedim(-1, axis)
    else:
        y = (F.softmax if node.op_type == "Softmax" else F.log_softmax)(flat, dim=axis)
    return y.reshape(x.shape)


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
    k = list(get(node, "kernel_shape"))
    nd = len(k)
    pad, explicit = _pads(node, nd, x, k)
    stride = get(node, "strides", [1] * nd)
    ceil = bool(get(node, "ceil_mode", 0))
    if node.op_type == "MaxPool":
        if len(node.output) > 1 and node.output[1]:
            raise ValueError("MaxPool's Indices output is not supported in recovery")
        if explicit:
            x = F.pad(x, explicit, value=float("-inf"))
        dil = get(node, "dilations", [1] * nd)
        return getattr(F, f"max_pool{nd}d")(x, k, stride, pad, dilation=dil, ceil_mode=ceil)
    include = bool(get(node, "count_include_pad", 0))
    if explicit is None:
        return getattr(F, f"avg_pool{nd}d")(x, k, stride, pad, ceil_mode=ceil, count_include_pad=include)
    # asymmetric pads: sum of the window / number of (real, or all) positions in it
    pool = getattr(F, f"avg_pool{nd}d")
    area = float(np.prod(k))
    total = pool(F.pad(x, explicit), k, stride, 0, ceil_mode=ceil, count_include_pad=True) * area
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    count = pool(F.pad(ones, explicit, value=1.0 if include else 0.0), k, stride, 0, ceil_mode=ceil) * area
    return total / count


def _axes_of(node: onnx.NodeProto, x: Any, axes: Any) -> list[int] | None:
    """Reduction axes from input 1 (opset 13/18+) or the attribute; None when absent or empty."""
    ax = get(node, "axes") if axes is None else _ints(axes)
    return [a % x.dim() for a in ax] if ax else None


@op(
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
)
def _reduce(node: onnx.NodeProto, x: Any, axes: Any = None) -> Any:
    ax = _axes_of(node, x, axes)
    if ax is None:
        if get(node, "noop_with_empty_axes", 0):
            return x
        ax = list(range(x.dim()))
    keep = bool(get(node, "keepdims", 1))
    kind = node.op_type
    if kind == "ReduceMax":
        return x.amax(dim=ax, keepdim=keep)
    if kind == "ReduceMin":
        return x.amin(dim=ax, keepdim=keep)
    if kind == "ReduceMean":
        return x.mean(dim=ax, keepdim=keep)
    if kind == "ReduceSum":
        return x.sum(dim=ax, keepdim=keep)
    if kind == "ReduceL1":
        return x.abs().sum(dim=ax, keepdim=keep)
    if kind == "ReduceL2":
        return torch.sqrt((x * x).sum(dim=ax, keepdim=keep))
    if kind == "ReduceSumSquare":
        return (x * x).sum(dim=ax, keepdim=keep)
    if kind == "ReduceLogSumExp":
        return torch.logsumexp(x, dim=ax, keepdim=keep)
    out = x
    for a in sorted(ax, reverse=True):
        out = out.prod(dim=a, keepdim=keep)
    return out


@op("ArgMax", "ArgMin")
def _arg(node: onnx.NodeProto, x: Any) -> Any:
    axis, keep = get(node, "axis", 0) % x.dim(), bool(get(node, "keepdims", 1))
    fn = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    if get(node, "select_last_index", 0):
        n = x.shape[axis]
        return (n - 1 - fn(x.flip(axis), dim=axis, keepdim=keep)).to(torch.int64)
    return fn(x, dim=axis, keepdim=keep)


@op("TopK")
def _topk(node: onnx.NodeProto, x: Any, k: Any) -> Any:
    axis = get(node, "axis", -1) % x.dim()
    largest, ordered = bool(get(node, "largest", 1)), bool(get(node, "sorted", 1))
    values, indices = torch.topk(x, _ints(k)[0], dim=axis, largest=largest, sorted=ordered)
    return [values, indices]


@op("CumSum")
def _cumsum(node: onnx.NodeProto, x: Any, axis: Any) -> Any:
    a = _ints(axis)[0] % x.dim()
    y = x.flip(a) if get(node, "reverse", 0) else x
    out = y.cumsum(a)
    if get(node, "exclusive", 0):
        out = out - y
    return out.flip(a) if get(node, "reverse", 0) else out


@op("Einsum")
def _einsum(node: onnx.NodeProto, *xs: Any) -> Any:
    return torch.einsum(_text(get(node, "equation"), ""), *xs)


@op("Flatten")
def _flatten(node: onnx.NodeProto, x: Any) -> Any:
    axis = get(node, "axis", 1) % max(x.dim(), 1) if x.dim() else 0
    return x.reshape(int(np.prod(list(x.shape[:axis]), dtype=np.int64)), -1)


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
    """Sizes from input 1 or the attribute; else ``num_outputs`` (opset 18) parts of
    ``ceil(n / parts)`` with a smaller last one, or equal parts."""
    axis = get(node, "axis", 0) % x.dim()
    sizes = _ints(split) if _present(split) else get(node, "split")
    if sizes is None:
        n, total = len(node.output), int(x.shape[axis])
        step = math.ceil(total / n)
        sizes = [min(step, total - step * i) for i in range(n)]
    return list(torch.split(x, list(sizes), dim=axis))


@op("Slice")
def _slice(node: onnx.NodeProto, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    """Bounds may be computed at run time; negative steps select in reverse (as ONNX)."""
    st, en = _ints(starts), _ints(ends)
    ax = _ints(axes) if _present(axes) else list(range(len(st)))
    sp = _ints(steps) if _present(steps) else [1] * len(st)
    for s, e, a, p in zip(st, en, ax, sp):
        a %= x.dim()
        index = range(*slice(s, e, p).indices(int(x.shape[a])))
        if p == 1:
            x = x.narrow(a, index.start, len(index)) if len(index) else x.narrow(a, 0, 0)
        else:
            x = torch.index_select(x, a, torch.tensor(list(index), dtype=torch.int64))
    return x


@op("Constant")
def _constant(node: onnx.NodeProto) -> Any:
    from trtforge.pipeline.graph.pruning.graph import _constant_value

    value = _constant_value(node)
    if value is None:
        raise ValueError(f"Constant node {node.name!r} has no supported value attribute")
    return torch.from_numpy(value.copy())


@op("ConstantOfShape")
def _constant_of_shape(node: onnx.NodeProto, shape: Any) -> Any:
    """A tensor of the run-time ``shape`` filled with ``value`` (a one-element tensor; 0.0 float)."""
    value = get(node, "value")
    arr = onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, dtype=np.float32)
    return torch.full(_ints(shape), arr.reshape(-1)[0].item(), dtype=torch.from_numpy(arr).dtype)


@op("Range")
def _range(node: onnx.NodeProto, start: Any, limit: Any, delta: Any) -> Any:
    """``start + k·delta`` for ``k < max(ceil((limit - start) / delta), 0)``, of ``start``'s type."""
    s, lim, d = (t.reshape(-1)[0].item() for t in (start, limit, delta))
    n = max(math.ceil((lim - s) / d), 0)
    return (torch.arange(n, dtype=torch.float64) * d + s).to(start.dtype)


@op("Shape")
def _shape(node: onnx.NodeProto, x: Any) -> Any:
    dims = list(x.shape)
    start, end = get(node, "start", 0), get(node, "end")
    return torch.tensor(dims[slice(start, end)], dtype=torch.int64)


@op("Size")
def _size(node: onnx.NodeProto, x: Any) -> Any:
    return torch.tensor(x.numel(), dtype=torch.int64)


@op("Gather")
def _gather(node: onnx.NodeProto, x: Any, i: Any) -> Any:
    axis = get(node, "axis", 0) % x.dim()
    picked = torch.index_select(x, axis, (i.reshape(-1).long() % x.shape[axis]))
    return picked.reshape(list(x.shape[:axis]) + list(i.shape) + list(x.shape[axis + 1 :]))


@op("GatherElements")
def _gather_elements(node: onnx.NodeProto, x: Any, i: Any) -> Any:
    axis = get(node, "axis", 0) % x.dim()
    return torch.gather(x, axis, i.long() % x.shape[axis])


@op("GatherND")
def _gather_nd(node: onnx.NodeProto, x: Any, i: Any) -> Any:
    """``y[b.., j..] = x[b.., i[b.., j.., :]]`` with ``batch_dims`` leading batch axes."""
    b = get(node, "batch_dims", 0)
    batch = list(x.shape[:b])
    nb = int(np.prod(batch, dtype=np.int64)) if batch else 1
    xs = x.reshape(nb, *x.shape[b:])
    idx = i.long().reshape(nb, -1, i.shape[-1])
    k = idx.shape[-1]
    dims = torch.tensor(list(xs.shape[1 : 1 + k]), dtype=torch.int64)
    idx = idx % dims
    rows = torch.arange(nb).unsqueeze(1).expand(nb, idx.shape[1])
    picked = xs[(rows, *idx.unbind(-1))]
    return picked.reshape(*batch, *i.shape[b:-1], *xs.shape[1 + k :])


@op("ScatterND")
def _scatter_nd(node: onnx.NodeProto, x: Any, i: Any, updates: Any) -> Any:
    if _text(get(node, "reduction"), "none") != "none":
        raise ValueError("ScatterND with a reduction is not supported in recovery")
    out = x.clone()
    k = i.shape[-1]
    idx = i.long().reshape(-1, k)
    out[tuple(idx.unbind(-1))] = updates.reshape(idx.shape[0], *x.shape[k:])
    return out


@op("ScatterElements")
def _scatter_elements(node: onnx.NodeProto, x: Any, i: Any, updates: Any) -> Any:
    if _text(get(node, "reduction"), "none") != "none":
        raise ValueError("ScatterElements with a reduction is not supported in recovery")
    axis = get(node, "axis", 0) % x.dim()
    return torch.scatter(x, axis, i.long() % x.shape[axis], updates)


@op("NonZero")
def _nonzero(node: onnx.NodeProto, x: Any) -> Any:
    return torch.nonzero(x).t().contiguous()


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
    return x.to(_torch_dtype(get(node, "to")))


@op("CastLike")
def _cast_like(node: onnx.NodeProto, x: Any, like: Any) -> Any:
    return x.to(like.dtype)


@op("Where")
def _where(node: onnx.NodeProto, c: Any, a: Any, b: Any) -> Any:
    return torch.where(c.bool(), a, b)


@op("Expand")
def _expand(node: onnx.NodeProto, x: Any, shape: Any) -> Any:
    """``x`` broadcast against ``shape`` (numpy rules: a 1 in ``shape`` keeps ``x``'s size)."""
    return torch.broadcast_to(x, torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))


@op("Tile")
def _tile(node: onnx.NodeProto, x: Any, repeats: Any) -> Any:
    return x.repeat(*_ints(repeats))


@op("Trilu")
def _trilu(node: onnx.NodeProto, x: Any, k: Any = None) -> Any:
    diag = _ints(k)[0] if k is not None else 0
    return torch.triu(x, diag) if get(node, "upper", 1) else torch.tril(x, diag)


@op("DepthToSpace")
def _depth_to_space(node: onnx.NodeProto, x: Any) -> Any:
    """DCR: ``[N, b, b, C/b², H, W]`` -> ``[N, C/b², H, b, W, b]``; CRD: ``[N, C/b², b, b, H, W]``."""
    b = get(node, "blocksize")
    n, c, h, w = x.shape
    if _text(get(node, "mode"), "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth")
def _space_to_depth(node: onnx.NodeProto, x: Any) -> Any:
    b = get(node, "blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


# -- index gathers along one axis: padding and resampling -----------------------------------


def _take(x: Any, axis: int, index: np.ndarray) -> Any:
    return torch.index_select(x, axis, torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)))


def _axis_taps(x: Any, axis: int, taps: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """``y[.., i, ..] = Σ_t w_t[i] · x[.., idx_t[i], ..]`` along ``axis``."""
    shape = [1] * x.dim()
    shape[axis] = -1
    out = None
    for idx, w in taps:
        term = _take(x, axis, idx) * torch.from_numpy(np.asarray(w, dtype=np.float64)).to(x.dtype).reshape(
            shape
        )
        out = term if out is None else out + term
    return out


@op("Pad")
def _pad(node: onnx.NodeProto, x: Any, pads: Any = None, value: Any = None, axes: Any = None) -> Any:
    """``constant`` (with ``value``, input 2 or the opset-2 attribute), ``edge``, ``reflect`` and
    ``wrap`` on any axes (``axes``, input 3); negative pads crop."""
    p = _ints(pads) if pads is not None else list(get(node, "pads"))
    ax = [a % x.dim() for a in _ints(axes)] if _present(axes) else list(range(x.dim()))
    half = len(p) // 2
    mode = _text(get(node, "mode"), "constant")
    if mode == "constant":
        v = float(value.reshape(-1)[0]) if _present(value) else float(get(node, "value", 0.0))
        torch_pad = [0] * (2 * x.dim())
        for k, a in enumerate(ax):
            torch_pad[2 * (x.dim() - 1 - a)] = p[k]
            torch_pad[2 * (x.dim() - 1 - a) + 1] = p[k + half]
        return F.pad(x, torch_pad, value=v) if x.is_floating_point() else F.pad(x, torch_pad, value=int(v))
    for k, a in enumerate(ax):
        before, after, n = p[k], p[k + half], int(x.shape[a])
        if not before and not after:
            continue
        i = np.arange(-before, n + after)
        if mode == "edge":
            i = np.clip(i, 0, n - 1)
        elif mode == "reflect":
            period = 2 * (n - 1) if n > 1 else 1
            i = np.abs(i) % period
            i = np.where(i >= n, period - i, i)
        elif mode == "wrap":
            i = i % n
        else:
            raise ValueError(f"Pad mode {mode!r} is not supported in recovery")
        x = _take(x, a, i)
    return x


def _coords(mode: str, out: np.ndarray, scale: float, n_in: int, n_out: int) -> np.ndarray:
    """Source coordinate of each output index (ONNX ``coordinate_transformation_mode``)."""
    width = scale * n_in  # the real-valued output length
    if mode == "half_pixel":
        return (out + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (out + 0.5) / scale - 0.5 if n_out > 1 else np.full(out.shape, -0.5)
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (out + 0.5) / scale - 0.5
    if mode == "align_corners":  # over the integer output length, as ONNX Runtime and torch
        return out * (n_in - 1) / (n_out - 1) if n_out != 1 else np.zeros(out.shape)
    if mode == "asymmetric":
        return out / scale
    if mode == "tf_half_pixel_for_nn":
        return (out + 0.5) / scale
    raise ValueError(f"Resize coordinate_transformation_mode {mode!r} is not supported in recovery")


def _cubic(r: np.ndarray, a: float) -> list[np.ndarray]:
    s = 1 - r
    return [
        ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
        ((a + 2) * r - (a + 3)) * r * r + 1,
        ((a + 2) * s - (a + 3)) * s * s + 1,
        ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
    ]


def _resize_taps(
    node: onnx.NodeProto, how: dict[str, Any], scale: float, n_in: int, n_out: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Indices and weights of one axis: the neighbours ``x0 .. x0 + t`` of each source
    coordinate ``x`` (``x0 = ceil(x) - 1``, ratio ``r = x - x0`` in ``(0, 1]``), clamped to the
    axis (edge padding), weighted per mode (ONNX's reference definition)."""
    x = _coords(how["ctm"], np.arange(n_out, dtype=np.float64), scale, n_in, n_out)
    x0 = np.ceil(x) - 1
    r = x - x0
    mode = how["mode"]
    if mode == "nearest":
        nm = how["nearest"]
        if nm == "simple":  # opset 10 and Upsample as ONNX Runtime runs them
            pick = np.ceil(x) if scale < 1 else np.floor(x)
        else:
            up = {
                "round_prefer_floor": r > 0.5,
                "round_prefer_ceil": r >= 0.5,
                "floor": r >= 1.0,
                "ceil": r > 0,
            }
            if nm not in up:
                raise ValueError(f"Resize nearest_mode {nm!r} is not supported in recovery")
            pick = x0 + up[nm]
        return [(np.clip(pick, 0, n_in - 1).astype(np.int64), np.ones(n_out))]
    if mode == "linear":
        offsets, weights = [0, 1], [1 - r, r]
    elif mode == "cubic":
        offsets, weights = [-1, 0, 1, 2], _cubic(r, how["cubic_a"])
    else:
        raise ValueError(f"Resize mode {mode!r} is not supported in recovery")
    idx = [x0 + o for o in offsets]
    if how["exclude_outside"]:
        weights = [np.where((i < 0) | (i >= n_in), 0.0, w) for i, w in zip(idx, weights)]
        total = sum(weights)
        weights = [w / total for w in weights]
    return [(np.clip(i, 0, n_in - 1).astype(np.int64), w) for i, w in zip(idx, weights)]


@op("Resize", "Upsample", opset=True)
def _resize(node: onnx.NodeProto, x: Any, *rest: Any, opset: int = 13) -> Any:
    """Resample each listed axis on its own (nearest, linear, cubic are separable): see
    ``_resize_taps``. Scales from ``scales``, or ``sizes`` with ``scale = out / in``."""
    legacy = node.op_type == "Upsample" or opset < 11
    how = {
        "mode": _text(get(node, "mode"), "nearest"),
        "ctm": "asymmetric" if legacy else _text(get(node, "coordinate_transformation_mode"), "half_pixel"),
        "nearest": "simple" if legacy else _text(get(node, "nearest_mode"), "round_prefer_floor"),
        "cubic_a": float(get(node, "cubic_coeff_a", -0.75)),
        "exclude_outside": bool(get(node, "exclude_outside", 0)),
    }
    if how["mode"] in ("bilinear", "trilinear"):  # Upsample-7 spellings
        how["mode"] = "linear"
    if get(node, "antialias", 0):
        raise ValueError("Resize with antialias is not supported in recovery")
    if _text(get(node, "keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise ValueError("Resize keep_aspect_ratio_policy other than stretch is not supported in recovery")
    scales: list[float] | None
    sizes: list[int] | None
    if legacy:
        scales = _floats(rest[0]) if rest and _present(rest[0]) else list(get(node, "scales"))
        sizes = None
    else:
        scales = _floats(rest[1]) if len(rest) > 1 and _present(rest[1]) else None
        sizes = _ints(rest[2]) if len(rest) > 2 and _present(rest[2]) else None
    axes = [a % x.dim() for a in get(node, "axes", list(range(x.dim())))]
    for k, a in enumerate(axes):
        n_in = int(x.shape[a])
        if sizes is not None:
            n_out = sizes[k]
            scale = n_out / n_in
        elif scales is not None:
            scale = scales[k]
            n_out = math.floor(n_in * scale)
        else:
            raise ValueError("Resize has neither scales nor sizes")
        if n_out == n_in and scale == 1.0 and how["ctm"] != "tf_half_pixel_for_nn":
            continue
        x = _axis_taps(x, a, _resize_taps(node, how, scale, n_in, n_out))
    return x


# -- recurrent layers -------------------------------------------------------------------------

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _activation(name: str) -> Any:
    fns = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu}
    if name not in fns:
        raise ValueError(f"recurrent activation {name!r} is not supported in recovery")
    return fns[name]


@op("LSTM", "GRU", "RNN")
def _recurrent(
    node: onnx.NodeProto,
    x: Any,
    w: Any,
    r: Any,
    b: Any = None,
    seq_lens: Any = None,
    h0: Any = None,
    c0: Any = None,
    p: Any = None,
) -> Any:
    """ONNX LSTM (gates i, o, f, c; peepholes ``P = [p_i, p_o, p_f]``), GRU (z, r, h;
    ``linear_before_reset``) and RNN, step by step, per direction (``reverse`` runs the time axis
    backwards and writes each step back at its own position); ``layout=1`` is batch-first.

    LSTM: ``i = σ(x W_iᵀ + h R_iᵀ + p_i ⊙ c + b_i)``, ``f = σ(.. + p_f ⊙ c ..)`` (``1 − i`` with
    ``input_forget``), ``c' = f ⊙ c + i ⊙ tanh(x W_cᵀ + h R_cᵀ + b_c)``,
    ``o = σ(.. + p_o ⊙ c' ..)``, ``h' = o ⊙ tanh(c')``. GRU: ``h' = (1 − z) ⊙ ĥ + z ⊙ h`` with
    ``ĥ = tanh(x W_hᵀ + (r ⊙ h) R_hᵀ + b)`` (or ``r ⊙ (h R_hᵀ + Rb_h)`` with
    ``linear_before_reset``). RNN: ``h' = tanh(x Wᵀ + h Rᵀ + b)``. ``clip`` bounds every
    activation's input. Variable ``sequence_lens`` are not supported."""
    kind = node.op_type
    g = _GATES[kind]
    batch_first = bool(get(node, "layout", 0))
    if batch_first:
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
        c0 = None if c0 is None else c0.transpose(0, 1)
    steps, n = int(x.shape[0]), int(x.shape[1])
    if _present(seq_lens) and any(v != steps for v in _ints(seq_lens)):
        raise ValueError(f"{kind} with sequence_lens shorter than the sequence is not supported in recovery")
    if get(node, "activation_alpha") is not None or get(node, "activation_beta") is not None:
        raise ValueError(f"{kind} with activation_alpha/beta is not supported in recovery")
    dirs, hidden = int(w.shape[0]), int(r.shape[-1])
    names = [_text(a, "") for a in get(node, "activations", [])] or _DEFAULT_ACTS[kind] * dirs
    per = len(_DEFAULT_ACTS[kind])
    direction = _text(get(node, "direction"), "forward")
    clip = get(node, "clip")

    def act(fn: Any, v: Any) -> Any:
        return fn(v if clip is None else torch.clamp(v, -clip, clip))

    ys, hs, cs = [], [], []
    for d in range(dirs):
        fns = [_activation(a) for a in names[d * per : (d + 1) * per]]
        fa, ga, ha = fns[0], fns[1 % len(fns)], fns[2 % len(fns)]
        bias = b[d] if _present(b) else torch.zeros(2 * g * hidden, dtype=x.dtype)
        wb, rb = bias[: g * hidden], bias[g * hidden :]
        h = h0[d] if _present(h0) else torch.zeros(n, hidden, dtype=x.dtype)
        c = c0[d] if _present(c0) else torch.zeros(n, hidden, dtype=x.dtype)
        xw = x @ w[d].t() + wb
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        out: list[Any] = [None] * steps
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            if kind == "LSTM":
                pre = xw[t] + h @ r[d].t() + rb
                i, o, f, cand = pre.split(hidden, dim=-1)
                pi, po, pf = p[d].split(hidden) if _present(p) else (0, 0, 0)
                i = act(fa, i + pi * c)
                f = 1 - i if get(node, "input_forget", 0) else act(fa, f + pf * c)
                c = f * c + i * act(ga, cand)
                h = act(fa, o + po * c) * act(ha, c)
            elif kind == "GRU":
                xz, xr, xh = xw[t].split(hidden, dim=-1)
                rz, rr, rh = r[d].split(hidden, dim=0)
                bz, br, bh = rb.split(hidden)
                z = act(fa, xz + h @ rz.t() + bz)
                reset = act(fa, xr + h @ rr.t() + br)
                if get(node, "linear_before_reset", 0):
                    cand = act(ga, xh + reset * (h @ rh.t() + bh))
                else:
                    cand = act(ga, xh + (reset * h) @ rh.t() + bh)
                h = (1 - z) * cand + z * h
            else:
                h = act(fa, xw[t] + h @ r[d].t() + rb)
            out[t] = h
        ys.append(torch.stack(out))
        hs.append(h)
        cs.append(c)
    y, y_h, y_c = torch.stack(ys, dim=1), torch.stack(hs), torch.stack(cs)  # [T, D, N, H], [D, N, H]
    if batch_first:
        y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
    return [y, y_h, y_c] if kind == "LSTM" else [y, y_h]
