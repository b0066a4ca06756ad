"""The artifact that flows down the pipeline: a model file plus what we know about it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from calibration.data import InputSpec

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, numpy dtype name, shape (str = named dynamic dim, None = unknown)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def as_input_spec(self) -> InputSpec:
        return InputSpec(self.name, self.dtype, self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class IOSpec:
    """Inputs and outputs of a model, plus min/opt/max ranges for named dynamic dims."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dim_ranges: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> IOSpec:
        inits = {i.name for i in model.graph.initializer}
        ins = tuple(_spec(v) for v in model.graph.input if v.name not in inits)
        outs = tuple(_spec(v) for v in model.graph.output)
        return cls(ins, outs)

    def input_specs(self) -> list[InputSpec]:
        return [t.as_input_spec() for t in self.inputs]

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "dim_ranges": {k: list(v) for k, v in self.dim_ranges.items()},
        }


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tt = value.type.tensor_type
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = "float32"
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorSpec(value.name, dtype, tuple(dims))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_model_files(path: str | Path) -> str:
    """Hash of a model file together with its external data files (sorted by name)."""
    p = Path(path)
    h = hashlib.sha256(sha256_file(p).encode())
    if p.suffix == ".onnx":
        try:
            m = onnx.load(str(p), load_external_data=False)
        except Exception:  # hashing must not fail on odd files; content hash above still holds
            return h.hexdigest()
        locs = sorted({e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"})
        for loc in locs:
            ext = p.parent / loc
            if ext.exists():
                h.update(sha256_file(ext).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A model file plus its IOSpec, content hash and provenance (stages that produced it)."""

    path: Path
    kind: str  # "onnx" | "torch" | "engine" | "ort"
    sha256: str
    iospec: IOSpec | None = None
    provenance: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_onnx_path(cls, path: str | Path, provenance: tuple[Mapping[str, Any], ...] = ()) -> Artifact:
        from pipeline.onnx_io import load_onnx

        p = Path(path)
        model = load_onnx(p, load_external=False)
        return cls(p, "onnx", sha256_model_files(p), IOSpec.from_onnx(model), provenance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "sha256": self.sha256,
            "iospec": self.iospec.to_dict() if self.iospec else None,
            "provenance": [dict(p) for p in self.provenance],
        }
