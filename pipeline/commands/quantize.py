"""``trtforge quantize IN.onnx -o OUT.onnx --calibration-data PATH --target T``: INT8 Q/DQ (or FP16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, fail_on_gates, gates_table, progress_bar
from trtforge.pipeline.commands._options import Flag, model_and_output, stage_options
from trtforge.pipeline.stages._fidelity import fidelity_lines
from trtforge.pipeline.stages._latency import latency_lines
from trtforge.pipeline.stages.quantize import QuantizeConfig

#: help and flag names of the quantize stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "precision": Flag("INT8 Q/DQ, or FP16 with FP32 islands."),
    "target": Flag("Who runs the model: Q/DQ placement and types follow it."),
    "method": Flag("Activation range algorithm (weights: per-channel max)."),
    "percentile": Flag("For --method percentile."),
    "calibration": Flag(
        ".npy/.npz/directory, an image directory (needs --preprocess) or package.module:function.",
        decls=("--calibration-data",),
    ),
    "preprocess": Flag(
        "Image preprocessing KEY=VALUE: size=224x224, layout=NCHW, color=RGB, scale=0.00392, "
        "mean=0.485,0.456,0.406, std=0.229,0.224,0.225.",
    ),
    "num_samples": Flag("Calibration samples (default: all; more than the data holds: error)."),
    "batch_size": Flag("Samples per calibration run."),
    "max_latency_ratio": Flag(
        "--target onnxruntime-cpu: largest INT8/FP32 latency ratio accepted (1 thread, a batch of the "
        "calibration data); a slower result is not written (exit 1)."
    ),
    "min_quantized_fraction": Flag(
        "Fewest of the layers with weights that must end up INT8 (0.1 default; 0 accepts an FP32 copy)."
    ),
    "accuracy_budget": Flag(
        "e.g. top1:0.5%, cosine:0.999, iou:0.9, maxabs@OUTPUT:0.05 (comma-separated); layers are kept "
        "in float until it holds. Default: the fidelity floor cosine:0.99,top1:2%,iou:0.95; 'none' "
        "measures without failing."
    ),
    "validation": Flag(
        "Data (with 'labels' for top1) for the accuracy budget.", decls=("--validation-data",)
    ),
    "validation_samples": Flag("Samples of --validation-data the accuracy budget is checked on."),
    "sensitivity": Flag("Per-layer sensitivity analysis: when the budget fails (auto), always, or never."),
    "mixed_range_ratio": Flag(
        "Keep a Concat's output float when its inputs' ranges are more than this many times apart."
    ),
    "trt_version": Flag("TensorRT version in the legacy cache header."),
    "threads": Flag("ONNX Runtime intra-op threads."),
    "reduce_range": Flag("7-bit activations (onnxruntime-cpu on CPUs without VNNI)."),
    "measure_latency": Flag("Time the INT8 model against the FP32 one (ONNX Runtime CPU, 1 thread)."),
    "plot": Flag("Plot the ranges of the worst-fitting tensors (ranges_worst.png; needs matplotlib)."),
    "shapes": Flag(
        "Size of a dynamic input where no data gives it (latency inputs, the post-run check): "
        "NAME:1x3x640x640, the syntax of build --shapes.",
        metavar="NAME:SHAPE",
    ),
    "state": Flag(
        "Streaming model: state input IN fed by output OUT of the previous step (calibration and "
        "validation files are the steps of a sequence; a file holding IN starts from it).",
        metavar="IN:OUT",
    ),
}


@click.command("quantize")
@model_and_output("Quantized .onnx to write.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for calibration_table.json, calibration.cache and ranges_worst.png "
    "(default: beside the output).",
)
@stage_options("quantize", QuantizeConfig, FLAGS)
def command(model: Path, output: Path, cache_dir: Path | None, config: QuantizeConfig) -> None:
    """Quantize MODEL to explicit INT8 Q/DQ for --target (or FP16 with --precision fp16).

    The result is checked against MODEL on the validation (else calibration) data; below the
    accuracy budget (default: the fidelity floor) nothing is written.

    Exit codes: 0 done, 1 the accuracy budget could not be kept, 2 bad input.
    """
    from trtforge.pipeline.api import run_stage

    where = cache_dir or output.parent
    extras = {
        name: where / f"{output.stem}.{name}"
        for name in ("calibration_table.json", "calibration.cache", "ranges_worst.png")
    }
    with progress_bar() as progress:
        result = run_stage("quantize", config, model, output, extra_outputs=extras, progress=progress)
    written = all(result.gates)
    metrics = {**dict(result.metrics), "output": str(output) if written else None}
    emit({**metrics, "gates": gates_table(result)}, lambda: _print(metrics))
    fail_on_gates(result)


def _print(m: dict[str, Any]) -> None:
    con = console()
    if m.get("precision") == "fp16":
        con.print(
            f"FP16 model -> {m['output'] or 'not written (a gate failed)'}; "
            f"FP32 ops: {', '.join(m.get('fp32_ops', [])) or 'none'}"
        )
        for line in fidelity_lines(m):
            con.print(line)
        return
    con.print(
        f"INT8 ({m['target']}, {m['method']}, {m['samples']} calibration samples) -> "
        f"{m['output'] or 'not written (a gate failed)'}"
    )
    for note in m.get("notes", []):
        con.print(f"[yellow]note:[/] {note}")
    if m.get("accuracy"):
        a = m["accuracy"]
        con.print(f"top-1: fp32 {a['fp32_top1']:.4f}, int8 {a['int8_top1']:.4f}")
    if m.get("fell_back"):
        con.print(f"kept in float to hold the budget: {', '.join(m['fell_back'])}")
    if "latency_ratio_int8_vs_fp32" in m:
        con.print(
            f"latency int8/fp32 (ORT CPU, 1 thread, batch {m['latency_batch']}): "
            f"{m['latency_ratio_int8_vs_fp32']:.3f}"
        )
    con.print(f"size: {m['size_fp32_bytes']} -> {m['size_int8_bytes']} bytes")
    for line in [*fidelity_lines(m), *latency_lines(m)]:
        con.print(line)
