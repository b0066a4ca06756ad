"""``trtforge convert-fp16 IN.onnx -o OUT.onnx``: half precision with FP32 islands."""

from __future__ import annotations

from pathlib import Path

import click

from trtforge.pipeline.commands._common import emit, progress_bar
from trtforge.pipeline.commands._options import Flag, model_and_output, stage_options
from trtforge.pipeline.stages.convert_fp16 import Fp16Config

#: help and flag names of the convert_fp16 stage's config fields (options generated in _options.py)
FLAGS: dict[str, Flag] = {
    "keep_io_types": Flag(
        "Keep the model inputs/outputs FP32 (--fp16-io: make them FP16 too).",
        decls=("--keep-io-types/--no-keep-io-types", "--fp32-io/--fp16-io"),
    ),
    "fp32_ops": Flag("Op type that stays FP32.", decls=("--fp32-op",), metavar="OP"),
    "fp32_nodes": Flag("Node name to keep in FP32.", decls=("--fp32-node",), metavar="NODE"),
    "calibration": Flag(
        "Data to find values outside the FP16 range (those nodes stay FP32).", decls=("--calibration-data",)
    ),
    "num_samples": Flag("Samples of --calibration-data searched for FP16 overflow."),
    "batch_size": Flag("Samples per ONNX Runtime run of the overflow search."),
    "overflow_margin": Flag("Keep a node FP32 when its |values| exceed this fraction of the FP16 maximum."),
    "shapes": Flag(
        "Size of a dynamic input where no data gives it (the post-run check): NAME:1x3x640x640, "
        "the syntax of build --shapes.",
        metavar="NAME:SHAPE",
    ),
    "state": Flag(
        "Streaming model: state input IN fed by output OUT of the previous step (the calibration "
        "files are the steps of a sequence; a file holding IN starts from it).",
        metavar="IN:OUT",
    ),
}


@click.command("convert-fp16")
@model_and_output("FP16 .onnx to write.")
@stage_options("convert_fp16", Fp16Config, FLAGS)
def command(model: Path, output: Path, config: Fp16Config) -> None:
    """Convert MODEL to FP16; LayerNorm, Softmax, reductions and exp/log/pow stay FP32."""
    from trtforge.pipeline.api import run_stage

    with progress_bar() as progress:
        result = run_stage("convert_fp16", config, model, output, progress=progress)
    metrics = {**dict(result.metrics), "output": str(output)}
    emit(
        metrics,
        f"FP16 model written to {output}; FP32 ops: {', '.join(metrics['fp32_ops']) or 'none'}; "
        f"overflow nodes kept FP32: {len(metrics['overflow_nodes'])}",
    )
