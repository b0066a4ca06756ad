"""The artifact that flows down the pipeline: a model file plus what we know about it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtforge.common.tensors import Dim, TensorSpec

__all__ = ["Artifact", "ArtifactKind", "Dim", "IOSpec", "TensorSpec", "kind_of_path"]


class ArtifactKind(str, Enum):
    """What an artifact's file is; stages declare the kinds they take and produce."""

    ONNX = "onnx"  # an ONNX model (optionally with external data)
    TORCH = "torch"  # a PyTorch model: .pt2, TorchScript, or package.module:factory (+ weights)
    ENGINE = "engine"  # a serialized TensorRT engine (+ .json metadata)
    ORT = "ort"  # an ONNX Runtime .ort model (flatbuffer; no ONNX tooling reads it)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".zip", ".torchscript")


def kind_of_path(model: str | Path) -> ArtifactKind:
    """The kind of a model named by path (or ``package.module:factory``), from its name alone."""
    text = str(model)
    suffix = Path(text).suffix
    if suffix in ENGINE_SUFFIXES:
        return ArtifactKind.ENGINE
    if suffix == ".ort":
        return ArtifactKind.ORT
    if suffix in TORCH_SUFFIXES or (":" in text and not Path(text).exists() and suffix != ".onnx"):
        return ArtifactKind.TORCH
    return ArtifactKind.ONNX


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

    def input_specs(self) -> list[TensorSpec]:
        return list(self.inputs)

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
    kind: ArtifactKind
    sha256: str
    iospec: IOSpec | None = None
    provenance: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_onnx_path(cls, path: str | Path, provenance: tuple[Mapping[str, Any], ...] = ()) -> Artifact:
        from trtforge.pipeline.onnx_io import load_onnx

        p = Path(path)
        model = load_onnx(p, load_external=False)
        return cls(p, ArtifactKind.ONNX, sha256_model_files(p), IOSpec.from_onnx(model), provenance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": str(self.kind),
            "sha256": self.sha256,
            "iospec": self.iospec.to_dict() if self.iospec else None,
            "provenance": [dict(p) for p in self.provenance],
        }
