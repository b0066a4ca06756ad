"""The verbs of trtforge as plain Python functions; the CLI calls these.

``run_single`` runs one stage standalone: the stage writes into a staging directory beside
the requested output, and only a finished stage's files are moved into place (atomic
rename), so an interrupted or failed command leaves no half-written output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.artifact import Artifact
from pipeline.errors import InputError
from pipeline.onnx_io import check_output_path, has_external_data, load_onnx, save_onnx
from pipeline.registry import get_stage
from pipeline.stage import DataPaths, ProgressFn, StageContext, StageResult, _no_progress
from pipeline.workspace import is_inside

TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".zip", ".torchscript")


def load_artifact(model: str | Path, weights: str | Path | None = None) -> Artifact:
    """An Artifact for a user's model: ``.onnx`` file, torch file, ``package.module:factory``, or a
    TensorRT engine (``.engine``/``.plan``/``.trt``; its inputs are read from its metadata when run)."""
    from pipeline.artifact import sha256_file
    from pipeline.backends.tensorrt import is_engine_path

    text = str(model)
    p = Path(text)
    if is_engine_path(p):
        if not p.is_file():
            raise InputError(f"{p}: engine file not found; build it with trtforge build --target tensorrt")
        return Artifact(p, "engine", sha256_file(p))
    if p.suffix == ".onnx" or (p.exists() and p.is_file() and _looks_onnx(p)):
        return Artifact.from_onnx_path(p)
    if p.suffix in TORCH_SUFFIXES or (":" in text and not p.exists()):
        from pipeline.stages.export import torch_artifact

        return torch_artifact(text, None if weights is None else str(weights))
    if p.is_dir():
        raise InputError(
            f"{p}: is a directory; pass a model file (.onnx, .pt2, TorchScript) or package.module:factory"
        )
    if not p.exists():
        raise InputError(
            f"{p}: file not found; pass an .onnx, .pt2 or TorchScript file or package.module:factory"
        )
    raise InputError(
        f"{p}: unknown model type {p.suffix!r}; pass .onnx, .pt2, a TorchScript file or module:factory"
    )


def _looks_onnx(path: Path) -> bool:
    try:
        load_onnx(path, check=False, load_external=False)
    except InputError:
        return False
    return True


def run_single(
    stage_name: str,
    config: Any,
    model: str | Path | Artifact,
    output: str | Path | None,
    *,
    data: DataPaths | None = None,
    reference: Artifact | None = None,
    extra_outputs: Mapping[str, str | Path] | None = None,
    progress: ProgressFn = _no_progress,
) -> StageResult:
    """Run one stage on ``model`` and move its model (and ``extra_outputs``) into place."""
    stage = get_stage(stage_name)(config)
    artifact = model if isinstance(model, Artifact) else load_artifact(model)
    out = check_output_path(output) if output is not None else None
    extras = {k: check_output_path(v) for k, v in (extra_outputs or {}).items()}
    parent = out.parent if out is not None else None
    with tempfile.TemporaryDirectory(prefix=".trtforge-", dir=parent) as tmp:
        ctx = StageContext(
            out_dir=Path(tmp),
            reference=reference or (artifact if artifact.kind == "onnx" else None),
            data=data or DataPaths(),
            progress=progress,
        )
        result = stage.run(artifact, ctx)
        if out is not None and is_inside(result.artifact.path, Path(tmp)):
            result = _publish(result, out)
        for name, dest in extras.items():
            src = Path(tmp) / name
            if src.exists():
                os.replace(src, dest)
    return result


def _publish(result: StageResult, out: Path) -> StageResult:
    src = result.artifact.path
    if result.artifact.kind == "onnx" and has_external_data(load_onnx(src, check=False, load_external=False)):
        save_onnx(load_onnx(src, check=False), out)  # rewrites external data beside ``out``
    else:
        os.replace(src, out)
    from dataclasses import replace

    return replace(result, artifact=replace(result.artifact, path=out))


def copy_tree_atomic(src: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(src, tmp / "x")
        os.replace(tmp / "x", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
