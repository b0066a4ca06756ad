"""``trtforge build IN.onnx -o OUT --target tensorrt|onnxruntime``: an engine or a pre-optimized ORT model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import emit, output_options, progress_bar


@click.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file (OUT.engine, OUT.onnx or OUT.ort); its record goes to OUT.json beside it.",
)
@click.option(
    "--target",
    type=click.Choice(["tensorrt", "onnxruntime"]),
    default="tensorrt",
    help="TensorRT engine (needs TensorRT and an NVIDIA GPU) or ONNX Runtime model (any host).",
)
@click.option(
    "--shapes",
    multiple=True,
    metavar="NAME:MIN,OPT,MAX",
    help="TensorRT profile, e.g. x:1x3x224x224,8x3x224x224,32x3x224x224; several inputs "
    "separated by spaces; repeat the flag for more profiles. Default: the model's dim ranges.",
)
@click.option(
    "--workspace", "workspace_mib", type=int, help="TensorRT workspace limit in MiB (default: TensorRT's)."
)
@click.option(
    "--opt-level", type=click.IntRange(0, 5), default=3, help="TensorRT builder optimization level."
)
@click.option(
    "--timing-cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where timing caches live (keyed by GPU and TensorRT version). Default: $TRTFORGE_CACHE_DIR "
    "or ~/.cache/trtforge.",
)
@click.option("--sparse-weights", is_flag=True, help="Let TensorRT use 2:4 sparse weights (Ampere+).")
@click.option(
    "--version-compatible", is_flag=True, help="Engine runs on later TensorRT versions of the same major."
)
@click.option("--hardware-compatible", is_flag=True, help="Engine runs on any Ampere or newer GPU.")
@click.option("--legacy-fp16", is_flag=True, help="TensorRT 10 only: weakly typed FP16 flag (refused on 11).")
@click.option(
    "--legacy-int8-cache",
    "legacy_calibration_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TensorRT 10 only: implicit INT8 from this legacy calibration cache (refused on 11).",
)
@click.option("--device", type=int, default=0, help="CUDA device index.")
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    help="ONNX Runtime execution provider (--target onnxruntime).",
)
@click.option(
    "--ort-format",
    type=click.Choice(["onnx", "ort"]),
    help="ONNX Runtime model format (default: from the -o suffix, else onnx).",
)
@click.option(
    "--ort-opt-level",
    type=click.Choice(["basic", "extended", "all"]),
    default="extended",
    help="ONNX Runtime graph optimizations baked in ('all' adds layouts tied to this CPU).",
)
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads recorded in the session options.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@output_options
def command(model: Path, output: Path, dry_run: bool, **flags: Any) -> None:
    """Build MODEL (ONNX) into a TensorRT engine or a pre-optimized ONNX Runtime model.

    \b
    TensorRT: the network is built strongly typed, so precision comes from the ONNX graph
    (Q/DQ for INT8 from `trtforge quantize`, FP16 tensors). Writes OUT.engine and OUT.engine.json
    (TensorRT version, GPU, precision, profiles, input hash, build time). Engines only run on the
    GPU model and TensorRT version they were built with. Without TensorRT or a GPU: exit 3.
    """
    from pipeline.api import run_single
    from pipeline.config import from_dict, to_dict
    from pipeline.stages.build import BuildConfig

    if flags["ort_format"] is None:
        flags["ort_format"] = "ort" if output.suffix == ".ort" else "onnx"
    raw = {k: v for k, v in flags.items() if v is not None}
    cfg = from_dict(BuildConfig, raw, "build")
    if dry_run:
        emit(
            {"stage": "build", "model": str(model), "output": str(output), **to_dict(cfg)},
            lambda: click.echo(f"build {model} -> {output}: {to_dict(cfg)}"),
        )
        return
    record = output.with_name(output.name + ".json")
    inner = "model.engine" if cfg.target == "tensorrt" else f"model.{cfg.ort_format}"
    with progress_bar() as progress:
        result = run_single(
            "build", cfg, model, output, extra_outputs={inner + ".json": record}, progress=progress
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
