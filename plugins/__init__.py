"""Custom-op plugins: each has the ONNX op it implements, a NumPy reference (runs in ONNX Runtime
on CPU via onnxruntime-extensions) and a TensorRT implementation (``tensorrt.plugin``, TRT 10.6+).

This package sits below ``pipeline/`` and never imports it.
"""

from trtforge.plugins.registry import (
    AttrSpec,
    Plugin,
    get_plugin,
    list_plugins,
    missing_plugins,
    register_plugin,
)

__all__ = ["AttrSpec", "Plugin", "get_plugin", "list_plugins", "missing_plugins", "register_plugin"]
