"""Run models with custom ops in ONNX Runtime, using each plugin's NumPy reference.

onnxruntime-extensions runs Python functions as ORT custom ops (``onnx_op``), but only in its own
domain ``ai.onnx.contrib``; so the session gets a copy of the model whose plugin nodes are moved
to that domain. The user's model is never changed. Sessions are made by
:func:`trtforge.common.ort.create_session`, which calls :func:`for_onnxruntime` and registers
:func:`library_path` for models with plugin nodes.
"""

from __future__ import annotations

import threading
from typing import Any

import onnx

from trtforge.common.errors import InputError, MissingDependencyError
from trtforge.plugins.registry import Plugin, custom_nodes, get_plugin, list_plugins

_lock = threading.Lock()
_declared: set[str] = set()


class PluginRuntimeError(InputError):
    """A custom-op node has no plugin (or an attribute its plugin does not know)."""


def _extensions() -> Any:
    try:
        import onnxruntime_extensions
    except ImportError as exc:
        raise MissingDependencyError(
            "running custom ops in ONNX Runtime needs onnxruntime-extensions; "
            "pip install onnxruntime-extensions"
        ) from exc
    return onnxruntime_extensions


_DT = {"float32": "dt_float", "float16": "dt_float16", "int64": "dt_int64", "int32": "dt_int32"}
_ATTR_DT = {"float": "dt_float", "int": "dt_int64", "str": "dt_string"}


def declare(plugin: Plugin) -> None:
    """Declare ``plugin``'s reference as an onnxruntime-extensions Python op (once per process)."""
    ext = _extensions()
    with _lock:
        if plugin.trt_id in _declared:
            return
        dt = ext.PyCustomOpDef
        ext.onnx_op(
            op_type=plugin.op_type,
            inputs=[getattr(dt, _DT[plugin.dtypes[0]])] * plugin.num_inputs,
            outputs=[getattr(dt, _DT[plugin.dtypes[0]])] * plugin.num_outputs,
            attrs={a.name: getattr(dt, _ATTR_DT[a.type]) for a in plugin.attributes},
        )(_with_defaults(plugin))
        _declared.add(plugin.trt_id)


def _with_defaults(plugin: Plugin) -> Any:
    defaults = {a.name: a.default for a in plugin.attributes}

    def run(*inputs: Any, **attrs: Any) -> Any:
        return plugin.reference(*inputs, **{**defaults, **attrs})

    run.__name__ = plugin.op_type
    return run


def library_path() -> str:
    """The onnxruntime-extensions custom-op library a session registers to run plugin nodes."""
    return str(_extensions().get_library_path())


def for_onnxruntime(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with plugin nodes in onnxruntime-extensions' domain; raises if a custom op has no plugin.

    Nodes in domains ONNX Runtime implements itself (``com.microsoft``, ``ai.onnx.ml``) stay as they are.
    """
    from trtforge.common.ort import ORT_DOMAINS

    ext = _extensions()
    contrib = ext.default_opset_domain()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    moved = False
    for node in custom_nodes(out):
        if node.domain in ORT_DOMAINS or node.domain == contrib:  # ORT's own, or already moved
            continue
        plugin = get_plugin(node.domain, node.op_type)
        if plugin is None:
            raise PluginRuntimeError(
                f"node {node.name!r} uses custom op {node.domain}::{node.op_type} and no plugin "
                f"implements it; "
                f"registered plugins: {', '.join(p.trt_id for p in list_plugins()) or 'none'}"
            )
        values = plugin.attrs_of(node)  # unknown attributes are errors here, not silent in the kernel
        present = {a.name for a in node.attribute}
        for name, value in values.items():  # the extensions kernel needs every declared attribute set
            if name not in present:
                node.attribute.append(onnx.helper.make_attribute(name, value))
        declare(plugin)
        node.domain = contrib
        moved = True
    if moved and not any(o.domain == contrib for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(contrib, 1))
    return out
