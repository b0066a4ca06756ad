"""Postconditions shared by graph stages: onnx checker, shape inference, ORT smoke run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from trtforge.pipeline.artifact import IOSpec


def check_onnx_artifact(path: str | Path, *, smoke_run: bool = True) -> None:
    """Raise (any exception, wrapped by the caller) when the model at ``path`` is not sound."""
    p = Path(path)
    onnx.checker.check_model(str(p), full_check=True)
    model = onnx.load(str(p), load_external_data=False)
    if not smoke_run:
        return
    from trtforge.pipeline.backends.onnxruntime import OrtRunner, random_feed

    spec = IOSpec.from_onnx(model)
    runner = OrtRunner(p).load()
    out = runner.run(random_feed(spec.inputs, batch=1))
    for name, value in out.items():
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"output {name!r} is not finite on a smoke run")
