"""Lazy imports of optional heavy packages.

Nothing heavy is imported at module top anywhere in trtforge: torch, tensorrt,
polygraphy, matplotlib and friends come through :func:`require`, which imports on
first use and, when the package is missing, raises ``MissingDependencyError``
naming the extra to install. Nothing is ever installed automatically.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# module name -> how a user gets it
_INSTALL_HINTS: dict[str, str] = {
    "torch": "pip install 'trtforge[torch]' (torch==2.13.0; see README for the CPU wheel)",
    "tensorrt": (
        "install TensorRT from NVIDIA's index (pip install tensorrt-cu13 "
        "--extra-index-url https://pypi.nvidia.com) or use NVIDIA's TensorRT container"
    ),
    "polygraphy": "pip install polygraphy",
    "onnxslim": "pip install onnxslim",
    "onnx_graphsurgeon": "pip install onnx-graphsurgeon",
    "matplotlib": "pip install 'trtforge[report]'",
    "onnxscript": "pip install 'trtforge[torch]' (the dynamo exporter needs onnxscript)",
    "sklearn": "pip install 'trtforge[examples]'",
    "onnxruntime_extensions": "pip install 'trtforge[plugins]'",
    "PIL": "pip install 'trtforge[images]'",
    "torch_pruning": "pip install 'trtforge[bench]'",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise ``MissingDependencyError`` with an install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from trtforge.pipeline.errors import MissingDependencyError

        top = module.split(".")[0]
        hint = _INSTALL_HINTS.get(top, f"pip install {top}")
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(f"{top} is needed{why} but is not installed ({exc}); {hint}") from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (imports it)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


class LazyModule:
    """A module imported on first attribute access (Polygraphy's lazy_import pattern, without auto-install).

    For modules whose every function needs an optional package: ``torch = LazyModule("torch", "...")`` at
    module top costs nothing at import; the first ``torch.xxx`` imports it or raises
    ``MissingDependencyError``.
    """

    def __init__(self, module: str, purpose: str = "") -> None:
        self._name, self._purpose = module, purpose
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if self._module is None:
            self._module = require(self._name, self._purpose)
        return getattr(self._module, attr)
