"""``trtforge bench MODEL.{onnx,engine} [MODEL2 ...]``: latency on ORT CPU or TensorRT, models interleaved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, fail_on_gates, progress_bar
from trtforge.pipeline.commands._options import Flag, data_option, stage_options
from trtforge.pipeline.stages.bench import BenchConfig

#: help and flag names of the bench stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "batches": Flag(
        "Comma-separated batch sizes, e.g. 1,32.",
        decls=("--batch", "--batches"),
        comma=True,
        metavar="N[,N...]",
    ),
    "threads": Flag("ONNX Runtime intra-op threads (0: ONNX Runtime's default, all cores)."),
    "warmup": Flag("Untimed runs per model and batch size."),
    "iters": Flag("Timed runs per model and batch size."),
    "duration": Flag("Seconds of timed runs per batch size (replaces --iters)."),
    "max_latency_ratio": Flag(
        "Exit 1 when a model's p50 latency exceeds this multiple of the first model's."
    ),
    "shapes": Flag(
        "Random inputs: size of a dynamic input, NAME:1x3x640x640 (the syntax of build --shapes; "
        "the batch axis takes --batch).",
        metavar="NAME:SHAPE",
    ),
    "state": Flag(
        "Streaming model with --data: state input IN (fed by output OUT from step to step); a first "
        "step file without it is timed with a zero state.",
        metavar="IN:OUT",
    ),
}


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@data_option(
    "--data",
    "Real inputs (.npy/.npz/directory); default: seeded random inputs, which time most models "
    "fairly but not one that branches on input values (a sample rate, a mode flag).",
)
# use_data picks the pipeline's validation data or random inputs; here giving --data is that choice
@stage_options("bench", BenchConfig, FLAGS, skip=("use_data",))
def command(models: tuple[Path, ...], data: Path | None, config: BenchConfig) -> None:
    """Time MODELS: p50/p90/p99/mean latency and throughput (samples/s).

    ONNX models run on ONNX Runtime CPU; a TensorRT engine (.engine/.plan/.trt, with the .json
    metadata trtforge build writes beside it) runs on its GPU, and its GPU time per run (CUDA
    events, without host copies) is reported beside the wall time. Exit 3 for an engine where
    TensorRT or a GPU is missing.

    Models run interleaved in one process (round-robin each iteration, so machine noise hits
    them alike); ratios are the median latency relative to the first model. Latency does not
    depend on input values, so random inputs are the default.
    """
    from trtforge.pipeline.api import bench

    with progress_bar() as progress:
        result = bench(models, config, data=data, progress=progress)
    out = result.to_dict()
    emit(out, lambda: _print(out))
    fail_on_gates(result)


def _print(out: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    con = console()
    s = out["settings"]
    inputs = "seeded random inputs" if out["random_inputs"] else f"inputs from {out['inputs']}"
    backend = f"ONNX Runtime CPU, {s['threads'] or 'default'} thread(s)"
    if "tensorrt" in s:
        backend += f"; engines on TensorRT {s['tensorrt']}"
    con.print(
        f"{backend}, {inputs}; "
        f"{out['results'][0]['iters']} timed runs per model and batch after {s['warmup']} warm-up runs"
    )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    device = any(r["device"] for r in out["results"])
    cols = ["model", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "samples/s", "vs first"]
    for col in cols + (["GPU p50 ms"] if device else []):
        table.add_column(col, justify="left" if col == "model" else "right", overflow="fold")
    for r in out["results"]:
        table.add_row(
            r["model"],
            str(r["batch"]),
            *(f"{r[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
            f"{r['throughput']:,.0f}",
            f"{r['p50_ratio']:.3f}x",
            *([f"{r['device']['p50_ms']:.3f}" if r["device"] else "-"] if device else []),
        )
    con.print(table)
