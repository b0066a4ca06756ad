"""The ONNX Runtime target: a pre-optimized model (``.onnx`` or ``.ort``) plus the session options
it was optimized with, so a CPU (or CUDA) host gets a ready artifact from the same ``build`` command.

ONNX Runtime writes the graph it will actually run through ``SessionOptions.optimized_model_filepath``;
we use that rather than re-implementing its fusions. The optimized graph is then loaded again with
optimizations off and compared with the input model on a random feed (a smoke parity check; the
``validate`` stage does the real one on data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pipeline.errors import InputError, MissingDependencyError, StageError, first_line

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider")}
OPT_LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class OrtBuildOptions:
    provider: str = "cpu"  # cpu | cuda
    opt_level: str = "extended"  # basic | extended | all (all adds layout changes tied to this CPU)
    model_format: str = "onnx"  # onnx | ort
    threads: int | None = None


def _session_options(opts: OrtBuildOptions, optimized_path: Path | None, level: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if opts.threads:
        so.intra_op_num_threads = opts.threads
        so.inter_op_num_threads = 1
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
        if opts.model_format == "ort":
            so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    return so


def _providers(opts: OrtBuildOptions) -> list[str]:
    import onnxruntime as ort

    if opts.provider not in PROVIDERS:
        raise InputError(f"provider {opts.provider!r} is not one of {', '.join(PROVIDERS)}")
    wanted = list(PROVIDERS[opts.provider])
    have = set(ort.get_available_providers())
    if wanted[0] not in have:
        raise MissingDependencyError(
            f"ONNX Runtime provider {wanted[0]} is not available (have: {', '.join(sorted(have))}); "
            "install onnxruntime-gpu and a CUDA driver for --provider cuda, or use --provider cpu"
        )
    return wanted


def _model_bytes(model: onnx.ModelProto, so: Any) -> bytes:
    """Serialized model ready for ORT; custom-op plugins run through onnxruntime-extensions."""
    from plugins.registry import custom_nodes

    if not custom_nodes(model):
        return model.SerializeToString()
    from plugins.ort import PluginRuntimeError, _extensions, for_onnxruntime

    try:
        prepared = for_onnxruntime(model)
        so.register_custom_ops_library(_extensions().get_library_path())
    except PluginRuntimeError as exc:
        raise InputError(str(exc)) from exc
    return prepared.SerializeToString()


def build_ort_model(src: Path, out: Path, opts: OrtBuildOptions) -> dict[str, Any]:
    """Write the optimized model for ``src`` to ``out``; return the record of how (for ``OUT.json``)."""
    import onnxruntime as ort

    from pipeline.artifact import IOSpec, sha256_model_files
    from pipeline.backends.onnxruntime import random_feed
    from pipeline.onnx_io import load_onnx

    if opts.opt_level not in OPT_LEVELS:
        raise InputError(f"ORT optimization level {opts.opt_level!r} is not one of {', '.join(OPT_LEVELS)}")
    model = load_onnx(src)
    providers = _providers(opts)
    so = _session_options(opts, out, opts.opt_level)
    data = _model_bytes(model, so)
    try:
        ort.InferenceSession(data, so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        first = first_line(exc)
        raise InputError(f"{src}: ONNX Runtime cannot load it: {first}") from exc
    if not out.is_file():
        raise StageError(f"ONNX Runtime wrote no optimized model to {out}")
    feed = random_feed(IOSpec.from_onnx(model).inputs, batch=1)
    diff = _parity(model, out, feed, opts, providers)
    return {
        "onnxruntime_version": ort.__version__,
        "providers": providers,
        "format": opts.model_format,
        "session_options": {
            "graph_optimization_level": opts.opt_level,
            "intra_op_num_threads": opts.threads or 0,
            "inter_op_num_threads": 1 if opts.threads else 0,
            "session.load_model_format": "ORT" if opts.model_format == "ort" else "ONNX",
        },
        "custom_ops_library": "onnxruntime-extensions" if _has_custom(model) else None,
        "input_sha256": sha256_model_files(src),
        "output_sha256": sha256_model_files(out),
        "nodes_before": len(model.graph.node),
        "nodes_after": _count_nodes(out, opts.model_format),
        "smoke_max_abs_diff": diff,
        "load_graph_optimization_level": "disable" if opts.opt_level == "all" else "all",
        "note": (
            "load with the same ONNX Runtime version and provider. Below 'all', keep graph optimizations at "
            "'all' when loading so ONNX Runtime adds its CPU-specific layout changes; a model saved at 'all' "
            "already has them (it is then tied to this kind of CPU) and loads with optimizations disabled"
        ),
    }


def _has_custom(model: onnx.ModelProto) -> bool:
    from plugins.registry import custom_nodes

    return bool(custom_nodes(model))


def _count_nodes(path: Path, model_format: str) -> int | None:
    if model_format != "onnx":
        return None
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _parity(
    model: onnx.ModelProto,
    out: Path,
    feed: dict[str, np.ndarray],
    opts: OrtBuildOptions,
    providers: list[str],
) -> float:
    """Max abs difference between the input model and the optimized one on ``feed``."""
    import onnxruntime as ort

    ref_so = _session_options(opts, None, "disable")
    ref = ort.InferenceSession(_model_bytes(model, ref_so), ref_so, providers=providers)
    opt_so = _session_options(opts, None, "disable")
    if opts.model_format == "ort":
        opt_so.add_session_config_entry("session.load_model_format", "ORT")
    if _has_custom(model):
        from plugins.ort import _extensions

        opt_so.register_custom_ops_library(_extensions().get_library_path())
    got = ort.InferenceSession(str(out), opt_so, providers=providers)
    a = ref.run(None, feed)
    b = got.run(None, feed)
    diffs = [
        float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
        for x, y in zip(a, b, strict=True)
    ]
    return max(diffs, default=0.0)
