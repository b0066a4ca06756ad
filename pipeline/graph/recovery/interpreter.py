"""``TorchFromOnnx``: runs an ONNX graph in torch with its float initializers as ``nn.Parameter``s.

Why our own: onnx2torch is not installed here and rebuilds modules (renaming the weights), while
recovery must write the trained tensors back into the *same* initializers of the pruned graph.
This interpreter keeps the graph and the names: train, then ``state_arrays()`` -> initializers.
It covers the ops the pruner handles and what exporters put around them (shape arithmetic,
Resize, Pad, detector and segmenter heads; ``ops.py``); any other op is refused up front with
the list of unsupported ops, and an op that fails at run time names its node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import InputError, first_line
from trtforge.pipeline.graph.pruning.graph import attr

OPS: dict[str, Callable[..., Any]] = {}
#: ops whose meaning changed between opsets: called with ``opset=`` (the model's default-domain opset)
NEEDS_OPSET: set[str] = set()


def op(*names: str, opset: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(node, *inputs)`` for ``names`` (absent optional inputs arrive as None);
    ``opset``: ``fn`` also takes ``opset=`` (ops whose semantics depend on it)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for n in names:
            OPS[n] = fn
            if opset:
                NEEDS_OPSET.add(n)
        return fn

    return deco


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    from trtforge.pipeline.graph.recovery import ops  # noqa: F401  (registers the op table)

    return sorted(
        {n.op_type for n in model.graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")}
    )


def TorchFromOnnx(
    model: onnx.ModelProto, source: str = "model"
) -> Any:  # XFromY converter name (STYLE.md 16)
    """A ``torch.nn.Module`` running ``model``; ``forward(**feeds)`` returns the graph outputs in order."""
    torch = require("torch", "pruning recovery")
    missing = unsupported_ops(model)
    if missing:
        raise InputError(
            f"{source}: recovery's torch interpreter has no {', '.join(missing)}; prune without "
            "--recover (the pruned model is written all the same) or fine-tune it where it was trained"
        )
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    fixed_stats = {
        n.input[k]
        for n in model.graph.node
        if n.op_type == "BatchNormalization"
        for k in (3, 4)
        if len(n.input) > k
    }

    class _Module(torch.nn.Module):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            super().__init__()
            self.params = torch.nn.ParameterDict()
            self.names: dict[str, str] = {}
            self.consts: dict[str, Any] = {}
            for i, t in enumerate(model.graph.initializer):
                arr = numpy_helper.to_array(t)
                tensor = torch.from_numpy(np.array(arr, copy=True))
                if np.issubdtype(arr.dtype, np.floating) and t.name not in fixed_stats and arr.size > 1:
                    key = f"p{i}"
                    self.params[key] = torch.nn.Parameter(tensor)
                    self.names[t.name] = key
                else:
                    self.consts[t.name] = tensor
            self.graph = model.graph
            self.outputs = [o.name for o in model.graph.output]

        def env0(self) -> dict[str, Any]:
            env = dict(self.consts)
            for name, key in self.names.items():
                env[name] = self.params[key]
            return env

        def forward(self, **feeds: Any) -> list[Any]:
            env = self.env0()
            env.update(feeds)
            for node in self.graph.node:
                args = [env[n] if n else None for n in node.input]
                res = run_node(node, args, opset, source)
                outs = res if isinstance(res, (list, tuple)) else [res]
                for name, value in zip(node.output, outs):
                    if name:
                        env[name] = value
            return [env[o] for o in self.outputs]

        def state_arrays(self) -> dict[str, np.ndarray]:
            return {name: self.params[key].detach().cpu().numpy() for name, key in self.names.items()}

    return _Module()


def run_node(node: onnx.NodeProto, args: list[Any], opset: int, source: str = "model") -> Any:
    """Run one node; a failure names the node and becomes an ``InputError`` (never a traceback)."""
    fn = OPS[node.op_type]
    try:
        return fn(node, *args, opset=opset) if node.op_type in NEEDS_OPSET else fn(node, *args)
    except InputError:
        raise
    except Exception as exc:  # torch and our op table raise many types
        raise InputError(
            f"{source}: recovery cannot run {node.op_type} node {node.name!r} in torch "
            f"({type(exc).__name__}: {first_line(exc, 200)}); prune without --recover"
        ) from exc


def write_back(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with the named initializers replaced (same dtype and shape)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name in arrays:
            old = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(arrays[t.name].astype(old.dtype).reshape(old.shape), t.name))
    return out


def get(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    return attr(node, name, default)
