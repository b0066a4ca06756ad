"""``trtforge convert-fp16 IN.onnx -o OUT.onnx``: half precision with FP32 islands."""

from __future__ import annotations

from pathlib import Path

import click

from trtforge.pipeline.commands._common import emit, fail_on_gates, progress_bar
from trtforge.pipeline.commands._options import Flag, data_option, model_and_output, stage_options
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
    "accuracy_budget": Flag(
        "Fidelity floor against MODEL on the validation (else calibration) data, e.g. cosine:0.999, "
        "top1:1%, iou:0.9; default cosine:0.99,top1:2%,iou:0.95; 'none' measures without failing.",
        metavar="SPEC",
    ),
}


@click.command("convert-fp16")
@model_and_output("FP16 .onnx to write.")
@data_option(
    "--validation-data",
    "Inputs the FP16 model is checked on against MODEL (.npy, .npz keyed by input name, or a "
    "directory); default: the --calibration-data.",
)
@stage_options("convert_fp16", Fp16Config, FLAGS)
def command(model: Path, output: Path, validation_data: Path | None, config: Fp16Config) -> None:
    """Convert MODEL to FP16; LayerNorm, Softmax, reductions and exp/log/pow stay FP32.

    \b
    The FP16 model is checked against MODEL on the validation (else calibration) data: exit 1,
    and nothing written, when it falls below --accuracy-budget.
    """
    from trtforge.pipeline.api import run_stage
    from trtforge.pipeline.stage import DataPaths
    from trtforge.pipeline.stages._fidelity import fidelity_lines

    with progress_bar() as progress:
        result = run_stage(
            "convert_fp16",
            config,
            model,
            output,
            data=DataPaths(validation=validation_data),
            progress=progress,
        )
    written = all(result.gates)
    metrics = {**dict(result.metrics), "output": str(output) if written else None}
    head = f"FP16 model written to {output}" if written else f"FP16 model NOT written to {output}"
    emit(
        metrics,
        "\n".join(
            [
                f"{head}; FP32 ops: {', '.join(metrics['fp32_ops']) or 'none'}; "
                f"overflow nodes kept FP32: {len(metrics['overflow_nodes'])}",
                *fidelity_lines(metrics),
                *_island_lines(metrics),
            ]
        ),
    )
    fail_on_gates(result)


def _island_lines(metrics: dict[str, object]) -> list[str]:
    islands = metrics.get("fp32_islands")
    if not isinstance(islands, dict) or not islands.get("tried"):
        return []
    if islands.get("kept_fp32"):
        kept = ", ".join(islands["kept_fp32"])
        return [f"Kept {kept} in FP32 to hold the floor; the full FP16 model missed it: {islands['reason']}"]
    return [f"No single op type kept in FP32 held the floor (tried {', '.join(islands['tried'])})"]
