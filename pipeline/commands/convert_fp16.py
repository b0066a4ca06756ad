"""``trtforge convert-fp16 IN.onnx -o OUT.onnx``: half precision with FP32 islands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import emit, output_options, progress_bar


@click.command("convert-fp16")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="FP16 .onnx to write.")
@click.option(
    "--calibration-data",
    "calibration",
    help="Data to find values outside the FP16 range (those nodes stay FP32).",
)
@click.option("--num-samples", type=int, default=256, show_default=True)
@click.option("--fp32-node", "fp32_nodes", multiple=True, help="Node name to keep in FP32 (repeatable).")
@click.option(
    "--fp16-io/--fp32-io",
    default=False,
    show_default=True,
    help="Make the model inputs/outputs FP16 too (default: they stay FP32).",
)
@output_options
def command(
    model: Path,
    output: Path,
    calibration: str | None,
    num_samples: int,
    fp32_nodes: tuple[str, ...],
    fp16_io: bool,
) -> None:
    """Convert MODEL to FP16; LayerNorm, Softmax, reductions and exp/log/pow stay FP32."""
    from pipeline.api import run_single
    from pipeline.config import from_dict
    from pipeline.stages.convert_fp16 import Fp16Config

    raw: dict[str, Any] = {
        "calibration": calibration,
        "num_samples": num_samples,
        "fp32_nodes": list(fp32_nodes),
        "keep_io_types": not fp16_io,
    }
    cfg = from_dict(Fp16Config, raw, "convert_fp16")
    with progress_bar() as progress:
        result = run_single("convert_fp16", cfg, model, output, progress=progress)
    metrics = {**dict(result.metrics), "output": str(output)}
    emit(
        metrics,
        f"FP16 model written to {output}; FP32 ops: {', '.join(metrics['fp32_ops']) or 'none'}; "
        f"overflow nodes kept FP32: {len(metrics['overflow_nodes'])}",
    )
