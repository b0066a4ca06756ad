"""trtforge: export, fuse, prune, quantize, build and validate neural networks for deployment.

The public Python API is the verbs of the command line as plain functions::

    import trtforge

    result = trtforge.run("examples/digits/trtforge.toml", workdir="runs/digits")
    print(result.passed, result.final.path)
    fused = trtforge.run_stage("fuse", None, "model.onnx", "model.fused.onnx")

Importing this package is light (no torch, tensorrt or onnxruntime): the verbs are loaded from
:mod:`trtforge.pipeline.api` on first use. The implementation lives in three sub-packages,
``trtforge.pipeline`` (orchestration and stages), ``trtforge.calibration`` (INT8/FP16 tooling) and
``trtforge.plugins`` (custom ops), over ``trtforge.common`` (what all three share).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: the public verbs, all defined in trtforge.pipeline.api
__all__ = [
    "bench",
    "inspect",
    "load_artifact",
    "load_config",
    "report",
    "run",
    "run_stage",
    "stage_names",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from trtforge.pipeline.api import (
        bench,
        inspect,
        load_artifact,
        load_config,
        report,
        run,
        run_stage,
        stage_names,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trtforge.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'trtforge' has no attribute {name!r}; public names: {', '.join(__all__)}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
