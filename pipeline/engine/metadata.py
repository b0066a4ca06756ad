"""``OUT.engine.json``: what an engine was built from and for, and whether this machine can run it.

A TensorRT plan only runs on the TensorRT version and GPU it was built for (unless built
version- or hardware-compatible). The runner reads this file and rejects a mismatch with its
reason *before* deserializing the plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from trtforge.pipeline.engine.env import GpuInfo
from trtforge.pipeline.engine.version import parse_version
from trtforge.pipeline.errors import InputError

METADATA_SUFFIX = ".json"
FORMAT_VERSION = 1
#: lowest compute capability TensorRT's AMPERE_PLUS hardware-compatibility level runs on
AMPERE_PLUS = (8, 0)


@dataclass(frozen=True)
class EngineMetadata:
    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.6"
    precision: str
    profiles: tuple[Mapping[str, Any], ...]
    onnx_sha256: str
    build_time_s: float
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    version_compatible: bool = False
    hardware_compatible: bool = False
    sparse_weights: bool = False
    plugins: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profiles"] = [dict(p) for p in self.profiles]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineMetadata:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("profiles", "inputs", "outputs", "plugins"):
            kwargs[key] = tuple(kwargs.get(key, ()))
        return cls(**kwargs)

    def cc_tuple(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


def metadata_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + METADATA_SUFFIX)


def write_metadata(engine_path: str | Path, meta: EngineMetadata) -> Path:
    from trtforge.pipeline.workspace import write_json_atomic

    path = metadata_path(engine_path)
    write_json_atomic(path, meta.to_dict())
    return path


def read_metadata(engine_path: str | Path) -> EngineMetadata:
    path = metadata_path(engine_path)
    if not path.is_file():
        raise InputError(
            f"{engine_path}: no metadata file {path.name} beside the engine; rebuild it with trtforge build "
            "(the metadata says which GPU and TensorRT version it is for)"
        )
    try:
        return EngineMetadata.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable engine metadata ({exc}); rebuild the engine") from exc


def incompatibility(meta: EngineMetadata, trt_version: str, gpu: GpuInfo) -> str | None:
    """Why an engine cannot run here (TensorRT version, GPU), or None when it can."""
    built, here = parse_version(meta.trt_version), parse_version(trt_version)
    if meta.version_compatible:
        if here[0] != built[0] or here[:3] < built[:3]:
            return (
                f"built version-compatible with TensorRT {meta.trt_version}, which runs on TensorRT "
                f"{built[0]}.x >= {meta.trt_version}; this machine has {trt_version}"
            )
    elif here[:3] != built[:3]:
        return (
            f"built with TensorRT {meta.trt_version}, this machine has {trt_version}; rebuild the engine here"
        )
    cc = meta.cc_tuple()
    if meta.hardware_compatible:
        if gpu.compute_capability < AMPERE_PLUS:
            return f"built hardware-compatible (Ampere or newer, sm80+); this GPU {gpu.name} is {gpu.sm}"
    elif gpu.compute_capability != cc:
        return (
            f"built for {meta.gpu_name} (compute capability {meta.compute_capability}), this GPU is "
            f"{gpu.name} ({'.'.join(map(str, gpu.compute_capability))}); rebuild the engine here or "
            "build with --hardware-compatible"
        )
    return None


def onnx_precision(model: onnx.ModelProto) -> str:
    """Precision set in the graph: ``int8``/``fp8``/``int4`` (Q/DQ), ``fp16``, ``bf16``, mixes, ``fp32``."""
    kinds: list[str] = []
    names = {
        onnx.TensorProto.INT8: "int8",
        onnx.TensorProto.UINT8: "int8",
        onnx.TensorProto.INT4: "int4",
        onnx.TensorProto.FLOAT8E4M3FN: "fp8",
    }
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            kind = names.get(zp.data_type, "int8") if zp is not None else "int8"
            if kind not in kinds:
                kinds.append(kind)
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear") and "int8" not in kinds:
            kinds.append("int8")
    types = {t.data_type for t in model.graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.value_info)}
    if onnx.TensorProto.FLOAT16 in types:
        kinds.append("fp16")
    if onnx.TensorProto.BFLOAT16 in types:
        kinds.append("bf16")
    return "+".join(kinds) or "fp32"
