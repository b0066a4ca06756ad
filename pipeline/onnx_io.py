"""Loading and saving ONNX models with one-line errors and atomic writes.

Models up to 2 GB are written as one self-contained file; larger ones get their
weights in an external data file beside the model (``<name>.onnx.data``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from trtforge.common.files import atomic_path, write_bytes_atomic
from trtforge.pipeline.errors import InputError, first_line

__all__ = [
    "atomic_path",
    "check_model",
    "check_output_path",
    "has_external_data",
    "load_onnx",
    "save_onnx",
    "write_bytes_atomic",
]

TWO_GB = 2**31 - 1


def load_onnx(path: str | Path, *, check: bool = True, load_external: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, raising ``InputError`` that names the file and the fix."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found; check the path")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; pass the path of an .onnx file")
    try:
        model = onnx.load(str(p), load_external_data=load_external)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise InputError(f"{p}: not a readable ONNX model ({type(exc).__name__}); re-export it") from exc
    if not model.graph.node and not model.graph.output:
        raise InputError(f"{p}: not an ONNX model (empty graph); pass an .onnx file")
    if check:
        check_model(model, p)
    return model


def check_model(model: onnx.ModelProto, source: str | Path) -> None:
    """Run onnx.checker (full check) and raise ``InputError`` naming ``source`` on failure.

    Models with external data (or over 2 GB) are checked by path, as the checker requires.
    """
    try:
        if has_external_data(model) or model.ByteSize() > TWO_GB:
            if Path(source).is_file():
                onnx.checker.check_model(str(source), full_check=True)
            return
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = first_line(exc)
        raise InputError(f"{source}: fails the ONNX checker: {first}; fix or re-export the model") from exc


def check_output_path(path: str | Path) -> Path:
    """Validate that ``path`` can be written (its directory exists and is writable)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise InputError(f"{p}: output path is a directory; pass a file path")
    if not parent.is_dir():
        raise InputError(f"{p}: output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{p}: output directory {parent} is not writable; choose another output path")
    try:  # a real probe: access() says yes to root on read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".trtforge-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(
            f"{p}: cannot write in {parent} ({exc.strerror or exc}); choose another output path"
        ) from exc
    return p


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Save atomically; external data beside the model when it does not fit in 2 GB."""
    target = check_output_path(path)
    if model.ByteSize() < TWO_GB:
        with atomic_path(target) as tmp:
            onnx.save_model(model, str(tmp))
        return target
    data_name = target.name + ".data"
    # onnx writes external data relative to the model file's directory, under ``location``.
    with atomic_path(target.parent / data_name) as tmp_data, atomic_path(target) as tmp:
        onnx.save_model(
            model,
            str(tmp),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=tmp_data.name,
            size_threshold=1024,
        )
        _relocate_external(tmp, tmp_data.name, data_name)
    return target


def _relocate_external(model_path: Path, old: str, new: str) -> None:
    m = onnx.load(str(model_path), load_external_data=False)
    for tensor in m.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    onnx.save_model(m, str(model_path))


def has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
