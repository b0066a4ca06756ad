"""The ONNX Runtime target: a pre-optimized model (``.onnx`` or ``.ort``) plus the session options
it was optimized with, so a CPU (or CUDA) host gets a ready artifact from the same ``build`` command.

ONNX Runtime writes the graph it will actually run through ``SessionOptions.optimized_model_filepath``;
we use that rather than re-implementing its fusions. The optimized graph is then loaded again with
optimizations off and compared with the input model on a random feed under the one parity rule of
``pipeline.validation.rule`` (a smoke parity check, the build stage's ``build_parity`` gate; the
``validate`` stage does the real one on data).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from trtforge.common.ort import SessionConfig, create_session
from trtforge.pipeline.errors import InputError, MissingDependencyError, StageError, first_line
from trtforge.pipeline.validation.rule import ParityCheck
from trtforge.pipeline.validation.selfcheck import SelfCheckResult

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider")}
OPT_LEVELS = ("basic", "extended", "all")
#: the smoke parity check of the optimized model: one batch of one seeded random sample
SMOKE_CHECK = ParityCheck(data=(), batches=1, random_batch=1)


@dataclass(frozen=True)
class OrtBuildOptions:
    provider: str = "cpu"  # cpu | cuda
    opt_level: str = "extended"  # basic | extended | all (all adds layout changes tied to this CPU)
    model_format: str = "onnx"  # onnx | ort
    threads: int | None = None
    check: ParityCheck = SMOKE_CHECK


def _config(opts: OrtBuildOptions, level: str, **extra: Any) -> SessionConfig:
    return SessionConfig(
        providers=tuple(_providers(opts)), intra_op_threads=opts.threads, graph_optimization=level, **extra
    )


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


def build_ort_model(
    src: Path, out: Path, opts: OrtBuildOptions, data: Mapping[str, str | Path | None] | None = None
) -> tuple[dict[str, Any], SelfCheckResult]:
    """Write the optimized model for ``src`` to ``out``; return the record of how (for ``OUT.json``)
    and the smoke parity of the optimized model against the input (on ``data`` where the check
    names data sets, e.g. for inputs whose sizes only the data gives)."""
    import onnxruntime as ort

    from trtforge.pipeline.artifact import IOSpec, sha256_model_files
    from trtforge.pipeline.onnx_io import load_onnx

    if opts.opt_level not in OPT_LEVELS:
        raise InputError(f"ORT optimization level {opts.opt_level!r} is not one of {', '.join(OPT_LEVELS)}")
    model = load_onnx(src)
    providers = _providers(opts)
    saving = {"session.save_model_format": "ORT"} if opts.model_format == "ort" else {}
    create_session(
        model,
        _config(opts, opts.opt_level, optimized_model_path=out, config_entries=saving),
        source=str(src),
    )
    if not out.is_file():
        raise StageError(f"ONNX Runtime wrote no optimized model to {out}")
    parity = _parity(model, out, IOSpec.from_onnx(model).inputs, opts, src, data or {})
    record = {
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
        "smoke_max_abs_diff": parity.max_abs,
        "smoke_parity": parity.to_dict(),
        "load_graph_optimization_level": "disable" if opts.opt_level == "all" else "all",
        "note": (
            "load with the same ONNX Runtime version and provider. Below 'all', keep graph optimizations at "
            "'all' when loading so ONNX Runtime adds its CPU-specific layout changes; a model saved at 'all' "
            "already has them (it is then tied to this kind of CPU) and loads with optimizations disabled"
        ),
    }
    return record, parity


def _has_custom(model: onnx.ModelProto) -> bool:
    from trtforge.plugins.registry import custom_nodes

    return bool(custom_nodes(model))


def _count_nodes(path: Path, model_format: str) -> int | None:
    if model_format != "onnx":
        return None
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _parity(
    model: onnx.ModelProto,
    out: Path,
    specs: Any,
    opts: OrtBuildOptions,
    src: Path,
    data: Mapping[str, str | Path | None],
) -> SelfCheckResult:
    """The saved optimized model (loaded unoptimized) against the input model optimized in memory at the
    same level: the artifact must compute what ONNX Runtime computes for its input. (Against the input
    run unoptimized, a Q/DQ model would "fail": ONNX Runtime's fused QLinear kernels round differently
    from the float emulation of Q/DQ, by design.)"""
    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.validation.selfcheck import compare_runners

    ref = OrtRunner(model, _config(opts, opts.opt_level), name="the input model")
    loading = {"session.load_model_format": "ORT"} if opts.model_format == "ort" else {}
    custom = _has_custom(model)  # an .ort file cannot be inspected for plugin nodes: say so
    got = OrtRunner(out, _config(opts, "disable", config_entries=loading, extensions_library=custom))
    source, feeds = opts.check.feeds(specs, data, model=src, source=f"build: {src}")

    def cannot_run(runner: Any, exc: Exception) -> Exception:
        who = str(src) if runner is ref else f"the optimized model of {src}"
        return InputError(f"{who}: ONNX Runtime cannot run it on {source} inputs ({first_line(exc)})")

    return compare_runners(ref.load(), got.load(), feeds, opts.check, source, on_error=cannot_run)
