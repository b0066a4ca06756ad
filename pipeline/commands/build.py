"""``trtforge build IN.onnx -o OUT --target tensorrt|onnxruntime``: an engine or a pre-optimized ORT model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import emit, fail_on_gates, progress_bar
from trtforge.pipeline.commands._options import Flag, data_option, model_and_output, stage_options
from trtforge.pipeline.stages.build import BuildConfig

#: help and flag names of the build stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "target": Flag("TensorRT engine (needs TensorRT and an NVIDIA GPU) or ONNX Runtime model (any host)."),
    "shapes": Flag(
        "TensorRT profile, e.g. x:1x3x224x224,8x3x224x224,32x3x224x224; several inputs "
        "separated by spaces; repeat the flag for more profiles. Default: the model's dim ranges.",
        metavar="NAME:MIN,OPT,MAX",
    ),
    "workspace_mib": Flag("TensorRT workspace limit in MiB (default: TensorRT's).", decls=("--workspace",)),
    "opt_level": Flag("TensorRT builder optimization level, 0..5."),
    "timing_cache_dir": Flag(
        "Where timing caches live (keyed by GPU and TensorRT version). Default: $TRTFORGE_CACHE_DIR "
        "or ~/.cache/trtforge.",
        type=click.Path(file_okay=False, path_type=Path),
    ),
    "sparse_weights": Flag("Let TensorRT use 2:4 sparse weights (Ampere+)."),
    "version_compatible": Flag("Engine runs on later TensorRT versions of the same major."),
    "hardware_compatible": Flag("Engine runs on any Ampere or newer GPU."),
    "legacy_fp16": Flag("TensorRT 10 only: weakly typed FP16 flag (refused on 11)."),
    "legacy_calibration_file": Flag(
        "TensorRT 10 only: implicit INT8 from this legacy calibration cache (refused on 11).",
        decls=("--legacy-int8-cache",),
        type=click.Path(dir_okay=False, path_type=Path),
    ),
    "device": Flag("CUDA device index."),
    "provider": Flag("ONNX Runtime execution provider (--target onnxruntime)."),
    "ort_format": Flag("ONNX Runtime model format (default: from the -o suffix, else onnx).", default=None),
    "ort_opt_level": Flag("ONNX Runtime graph optimizations baked in ('all' adds layouts tied to this CPU)."),
    "threads": Flag("ONNX Runtime intra-op threads recorded in the session options."),
    "atol": Flag("--target onnxruntime: absolute tolerance of the parity check of the optimized model."),
    "rtol": Flag("--target onnxruntime: relative tolerance of that parity check."),
}


def _ort_format_from_suffix(params: dict[str, Any]) -> None:
    if params["ort_format"] is None:
        params["ort_format"] = "ort" if params["output"].suffix == ".ort" else "onnx"


@click.command("build")
@model_and_output("Output file (OUT.engine, OUT.onnx or OUT.ort); its record goes to OUT.json beside it.")
@data_option(
    "--validation-data",
    "--target onnxruntime: inputs for the parity check of the optimized model (.npy, .npz keyed by "
    "input name, or a directory); their shapes size dynamic inputs. Default: one random sample "
    "where every size is fixed or given by --shapes.",
)
@stage_options("build", BuildConfig, FLAGS, resolve=_ort_format_from_suffix)
def command(model: Path, output: Path, validation_data: Path | None, config: BuildConfig) -> None:
    """Build MODEL (ONNX) into a TensorRT engine or a pre-optimized ONNX Runtime model.

    \b
    TensorRT: the network is built strongly typed, so precision comes from the ONNX graph
    (Q/DQ for INT8 from `trtforge quantize`, FP16 tensors). Writes OUT.engine and OUT.engine.json
    (TensorRT version, GPU, precision, profiles, input hash, build time). Engines only run on the
    GPU model and TensorRT version they were built with. Without TensorRT or a GPU: exit 3.
    ONNX Runtime: exit 1 when the optimized model differs from MODEL beyond --atol/--rtol.
    """
    from trtforge.pipeline.api import run_stage
    from trtforge.pipeline.stage import DataPaths

    record = output.with_name(output.name + ".json")
    inner = "model.engine" if config.target == "tensorrt" else f"model.{config.ort_format}"
    with progress_bar() as progress:
        result = run_stage(
            "build",
            config,
            model,
            output,
            data=DataPaths(validation=validation_data),
            extra_outputs={inner + ".json": record},
            progress=progress,
        )
    info = {
        "output": str(result.artifact.path),
        "record": str(record),
        "kind": result.artifact.kind,
        **dict(result.metrics),
    }
    emit(
        info,
        lambda: click.echo(
            f"wrote {result.artifact.path} ({result.artifact.kind}) and {record.name}: "
            + ", ".join(f"{k}={v}" for k, v in result.metrics.items())
        ),
    )
    fail_on_gates(result)
